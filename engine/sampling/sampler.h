// Token sampling from logits: penalties, temperature, top-k, top-p, min-p, seeded randomness.
#pragma once

#include <cstdint>
#include <random>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/status/status.h"

namespace sparsed {

struct SamplingParams {
  float temperature = 1.0f;         // 0 = greedy
  int32_t top_k = 0;                // 0 = off
  float top_p = 1.0f;               // 1 = off
  float min_p = 0.0f;               // 0 = off
  float repetition_penalty = 1.0f;  // > 0; applies to prompt and generated tokens
  float presence_penalty = 0.0f;    // [-2, 2]; generated tokens
  float frequency_penalty = 0.0f;   // [-2, 2]; generated tokens
  uint64_t seed = 0;
  bool has_seed = false;
  int32_t top_logprobs = 0;  // number of top alternatives to report, [0, 20]
};

// INVALID_ARGUMENT naming the field and its allowed range.
absl::Status ValidateSamplingParams(const SamplingParams& p);

struct SampledToken {
  int32_t token = 0;
  float logprob = 0.f;                         // log-softmax of the model's raw logits
  std::vector<std::pair<int32_t, float>> top;  // top_logprobs best (token, logprob), best first
};

// One sequence's sampler. Thread-safety: not thread-safe; one per sequence.
class Sampler {
 public:
  // `fallback_seed` seeds the generator when the request gives no seed.
  Sampler(const SamplingParams& params, uint64_t fallback_seed);

  // Samples from logits[vocab]. `prompt` and `generated` are the sequence's tokens so far.
  SampledToken Sample(const float* logits, int vocab, const std::vector<int32_t>& prompt,
                      const std::vector<int32_t>& generated);

 private:
  SamplingParams p_;
  std::mt19937_64 rng_;
  std::vector<float> work_;
  std::vector<int32_t> order_;
};

}  // namespace sparsed
