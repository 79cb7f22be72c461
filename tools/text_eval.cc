#include "tools/text_eval.h"

#include <algorithm>
#include <cmath>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "engine/common/status_macros.h"

namespace sparsed {

double PerplexityResult::perplexity() const { return std::exp(nll); }

absl::StatusOr<StepOutput> StepWindow(Engine& engine, const std::vector<int32_t>& window,
                                      bool all_logits) {
  const int bs = engine.kv_block_size();
  Batch b;
  BatchSequence q;
  q.num_tokens = static_cast<int32_t>(window.size());
  q.all_logits = all_logits;
  for (int k = 0; k < (q.num_tokens + bs - 1) / bs; ++k) q.block_table.push_back(k);
  b.token_ids = window;
  b.sequences.push_back(std::move(q));
  return engine.Step(b);
}

absl::StatusOr<std::vector<std::vector<int32_t>>> TokenWindows(const Engine& engine,
                                                               const std::string& path, int window,
                                                               int64_t max_tokens) {
  if (window < 2) return absl::InvalidArgumentError("window must be at least 2 tokens");
  const Tokenizer* tok = engine.tokenizer();
  if (tok == nullptr) return absl::FailedPreconditionError("the engine has no tokenizer");
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read text file ", path));
  std::vector<int32_t> stream;
  std::string line;
  while (std::getline(in, line) && static_cast<int64_t>(stream.size()) < max_tokens) {
    if (line.empty()) continue;
    ASSIGN_OR_RETURN(std::vector<int32_t> ids, tok->Encode(line));
    stream.push_back(tok->bos_id());
    stream.insert(stream.end(), ids.begin(), ids.end());
    stream.push_back(tok->eos_id());
  }
  if (static_cast<int64_t>(stream.size()) > max_tokens) stream.resize(max_tokens);
  std::vector<std::vector<int32_t>> windows;
  for (size_t i = 0; i + 1 < stream.size(); i += window) {
    const size_t end = std::min(stream.size(), i + window);
    if (end - i >= 2) windows.emplace_back(stream.begin() + i, stream.begin() + end);
  }
  if (windows.empty()) return absl::InvalidArgumentError(absl::StrCat(path, " has no text"));
  return windows;
}

absl::StatusOr<PerplexityResult> Perplexity(Engine& engine,
                                            const std::vector<std::vector<int32_t>>& windows,
                                            int batch) {
  const int bs = engine.kv_block_size();
  const int V = static_cast<int>(engine.config().vocab_size);
  PerplexityResult r;
  double total = 0;
  for (size_t first = 0; first < windows.size(); first += batch) {
    const size_t last = std::min(windows.size(), first + batch);
    Batch b;
    int next_block = 0;
    for (size_t w = first; w < last; ++w) {
      BatchSequence q;
      q.num_tokens = static_cast<int32_t>(windows[w].size());
      q.all_logits = true;
      for (int k = 0; k < (q.num_tokens + bs - 1) / bs; ++k) q.block_table.push_back(next_block++);
      b.token_ids.insert(b.token_ids.end(), windows[w].begin(), windows[w].end());
      b.sequences.push_back(std::move(q));
    }
    ASSIGN_OR_RETURN(StepOutput out, engine.Step(b));
    size_t row = 0;
    for (size_t w = first; w < last; ++w) {
      const auto& ids = windows[w];
      for (size_t j = 0; j < ids.size(); ++j, ++row) {
        if (j + 1 == ids.size()) continue;  // the last token predicts nothing inside the window
        const float* l = out.logits.data() + row * V;
        const float m = *std::max_element(l, l + V);
        double z = 0;
        for (int v = 0; v < V; ++v) z += std::exp(double(l[v]) - m);
        total += std::log(z) + m - l[ids[j + 1]];
        ++r.predictions;
      }
    }
  }
  r.nll = r.predictions ? total / r.predictions : 0;
  return r;
}

}  // namespace sparsed
