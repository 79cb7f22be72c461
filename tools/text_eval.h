// Held-out text as token windows, and perplexity through the engine (calibration, profiling).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/engine.h"

namespace sparsed {

// Each non-empty line of `path` is a document: <s>, its pieces, </s>; documents are concatenated
// and cut into windows of `window` tokens (the last one may be shorter, at least 2 tokens), at
// most `max_tokens` tokens in all.
absl::StatusOr<std::vector<std::vector<int32_t>>> TokenWindows(const Engine& engine,
                                                               const std::string& path, int window,
                                                               int64_t max_tokens);

// One step with `window` as its only sequence, its KV in blocks 0, 1, … (the engine's cache must
// hold the window); `all_logits`: every position's logits, else the last one's.
absl::StatusOr<StepOutput> StepWindow(Engine& engine, const std::vector<int32_t>& window,
                                      bool all_logits = false);

struct PerplexityResult {
  double nll = 0;           // mean next-token negative log-likelihood (nats)
  int64_t predictions = 0;  // tokens predicted (window length − 1 per window)
  double perplexity() const;
};

// Runs every window through the engine in its current sparsity mode, `batch` windows per step
// (the engine's KV cache must hold batch × window tokens), and scores each next token.
absl::StatusOr<PerplexityResult> Perplexity(Engine& engine,
                                            const std::vector<std::vector<int32_t>>& windows,
                                            int batch);

}  // namespace sparsed
