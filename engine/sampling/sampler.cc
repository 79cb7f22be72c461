#include "engine/sampling/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <unordered_set>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace sparsed {

absl::Status ValidateSamplingParams(const SamplingParams& p) {
  auto bad = [](absl::string_view field, absl::string_view range, double v) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling.", field, " is ", v, "; allowed: ", range));
  };
  if (!(p.temperature >= 0.f) || p.temperature > 100.f)
    return bad("temperature", "[0, 100]", p.temperature);
  if (p.top_k < 0) return bad("top_k", "0 (off) or a positive count", p.top_k);
  if (!(p.top_p > 0.f) || p.top_p > 1.f) return bad("top_p", "(0, 1]", p.top_p);
  if (!(p.min_p >= 0.f) || p.min_p > 1.f) return bad("min_p", "[0, 1]", p.min_p);
  if (!(p.repetition_penalty > 0.f) || p.repetition_penalty > 10.f)
    return bad("repetition_penalty", "(0, 10]", p.repetition_penalty);
  if (!(p.presence_penalty >= -2.f && p.presence_penalty <= 2.f))
    return bad("presence_penalty", "[-2, 2]", p.presence_penalty);
  if (!(p.frequency_penalty >= -2.f && p.frequency_penalty <= 2.f))
    return bad("frequency_penalty", "[-2, 2]", p.frequency_penalty);
  if (p.top_logprobs < 0 || p.top_logprobs > 20)
    return bad("top_logprobs", "[0, 20]", p.top_logprobs);
  return absl::OkStatus();
}

Sampler::Sampler(const SamplingParams& params, uint64_t fallback_seed)
    : p_(params), rng_(params.has_seed ? params.seed : fallback_seed) {}

SampledToken Sampler::Sample(const float* logits, int vocab, const std::vector<int32_t>& prompt,
                             const std::vector<int32_t>& generated) {
  SampledToken out;
  // Log-softmax of the raw logits, for reporting.
  float mx = -INFINITY;
  for (int i = 0; i < vocab; ++i) mx = std::max(mx, logits[i]);
  double z = 0;
  for (int i = 0; i < vocab; ++i) z += std::exp(static_cast<double>(logits[i]) - mx);
  const float log_z = mx + static_cast<float>(std::log(z));

  work_.assign(logits, logits + vocab);
  if (p_.repetition_penalty != 1.f) {
    std::unordered_set<int32_t> seen(prompt.begin(), prompt.end());
    seen.insert(generated.begin(), generated.end());
    for (int32_t t : seen) {
      if (t < 0 || t >= vocab) continue;
      work_[t] = work_[t] > 0 ? work_[t] / p_.repetition_penalty : work_[t] * p_.repetition_penalty;
    }
  }
  if (p_.presence_penalty != 0.f || p_.frequency_penalty != 0.f) {
    std::unordered_map<int32_t, int> counts;
    for (int32_t t : generated) ++counts[t];
    for (auto [t, n] : counts) {
      if (t < 0 || t >= vocab) continue;
      work_[t] -= p_.presence_penalty + p_.frequency_penalty * static_cast<float>(n);
    }
  }

  if (p_.temperature == 0.f) {
    out.token = static_cast<int32_t>(std::max_element(work_.begin(), work_.end()) - work_.begin());
  } else {
    // Candidates sorted by adjusted logit (ties by id, so the order is deterministic).
    order_.resize(vocab);
    std::iota(order_.begin(), order_.end(), 0);
    auto better = [&](int32_t a, int32_t b) {
      return work_[a] > work_[b] || (work_[a] == work_[b] && a < b);
    };
    int n = vocab;
    if (p_.top_k > 0 && p_.top_k < vocab) {
      std::partial_sort(order_.begin(), order_.begin() + p_.top_k, order_.end(), better);
      n = p_.top_k;
    } else {
      std::sort(order_.begin(), order_.end(), better);
    }
    std::vector<double> probs(n);
    const double top = work_[order_[0]] / p_.temperature;
    double sum = 0;
    for (int i = 0; i < n; ++i) {
      probs[i] = std::exp(work_[order_[i]] / p_.temperature - top);
      sum += probs[i];
    }
    for (double& pr : probs) pr /= sum;
    int keep = n;
    if (p_.top_p < 1.f) {
      double cum = 0;
      for (int i = 0; i < n; ++i) {
        cum += probs[i];
        if (cum >= p_.top_p) {
          keep = i + 1;
          break;
        }
      }
    }
    if (p_.min_p > 0.f) {
      const double floor = p_.min_p * probs[0];
      int k = 1;
      while (k < keep && probs[k] >= floor) ++k;
      keep = k;
    }
    double mass = 0;
    for (int i = 0; i < keep; ++i) mass += probs[i];
    const double u = std::uniform_real_distribution<double>(0.0, mass)(rng_);
    double cum = 0;
    out.token = order_[keep - 1];
    for (int i = 0; i < keep; ++i) {
      cum += probs[i];
      if (u < cum) {
        out.token = order_[i];
        break;
      }
    }
  }
  out.logprob = logits[out.token] - log_z;
  if (p_.top_logprobs > 0) {
    std::vector<int32_t> ids(vocab);
    std::iota(ids.begin(), ids.end(), 0);
    const int k = std::min(p_.top_logprobs, vocab);
    std::partial_sort(ids.begin(), ids.begin() + k, ids.end(), [&](int32_t a, int32_t b) {
      return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
    });
    for (int i = 0; i < k; ++i) out.top.emplace_back(ids[i], logits[ids[i]] - log_z);
  }
  return out;
}

}  // namespace sparsed
