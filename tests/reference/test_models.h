// Test helpers: temporary directories, synthetic models, greedy generation through the engine.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "tools/synthetic.h"

namespace sparsed::testing {

// A fresh directory under $TMPDIR, removed with its contents on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Writes a synthetic model into a new TempDir (aborts the test on failure).
std::unique_ptr<TempDir> MakeModel(const SyntheticModelSpec& spec);

// Loads an engine on `dir` with a small KV cache.
std::unique_ptr<Engine> LoadEngine(const std::string& dir, const std::string& mode,
                                   int kv_blocks = 256, std::optional<DType> weights = {});

struct GreedyResult {
  std::vector<std::vector<int32_t>> tokens;      // generated ids per prompt
  std::vector<std::vector<float>> first_logits;  // logits after each prompt's prefill
};

// Greedy decoding of every prompt together (one batch per step: the prompts prefill in one
// step, then decode together), with KV blocks assigned from `first_block`.
GreedyResult GreedyBatch(Engine& engine, const std::vector<std::vector<int32_t>>& prompts,
                         int new_tokens, int first_block = 0);

}  // namespace sparsed::testing
