#include "tests/reference/test_models.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <filesystem>

namespace sparsed::testing {

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = std::string(base && *base ? base : "/tmp") + "/sparsed_test_XXXXXX";
  char* p = mkdtemp(tmpl.data());
  if (p == nullptr) std::abort();
  path_ = p;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::unique_ptr<TempDir> MakeModel(const SyntheticModelSpec& spec) {
  auto dir = std::make_unique<TempDir>();
  const absl::Status s = MakeSyntheticModel(spec, dir->path());
  EXPECT_TRUE(s.ok()) << s;
  return dir;
}

std::unique_ptr<Engine> LoadEngine(const std::string& dir, const std::string& mode, int kv_blocks,
                                   std::optional<DType> weights) {
  EngineOptions o;
  o.model_dir = dir;
  o.weights = weights;
  o.sparsity_mode = mode;
  o.kv_blocks = kv_blocks;
  o.backend.threads = 2;
  auto e = Engine::Load(o);
  EXPECT_TRUE(e.ok()) << e.status();
  return e.ok() ? *std::move(e) : nullptr;
}

GreedyResult GreedyBatch(Engine& engine, const std::vector<std::vector<int32_t>>& prompts,
                         int new_tokens, int first_block) {
  const int bs = engine.kv_block_size();
  GreedyResult r;
  r.tokens.resize(prompts.size());
  std::vector<std::vector<int32_t>> tables(prompts.size());
  int next_block = first_block;
  for (size_t s = 0; s < prompts.size(); ++s) {
    const int blocks = static_cast<int>((prompts[s].size() + new_tokens + bs - 1) / bs);
    for (int b = 0; b < blocks; ++b) tables[s].push_back(next_block++);
  }
  const int V = static_cast<int>(engine.config().vocab_size);
  for (int step = 0; step <= new_tokens; ++step) {
    Batch batch;
    for (size_t s = 0; s < prompts.size(); ++s) {
      BatchSequence q;
      q.block_table = tables[s];
      q.need_logits = true;
      if (step == 0) {
        q.start_position = 0;
        q.num_tokens = static_cast<int>(prompts[s].size());
        batch.token_ids.insert(batch.token_ids.end(), prompts[s].begin(), prompts[s].end());
      } else {
        q.start_position = static_cast<int>(prompts[s].size()) + step - 1;
        q.num_tokens = 1;
        batch.token_ids.push_back(r.tokens[s].back());
      }
      batch.sequences.push_back(std::move(q));
    }
    if (step == new_tokens) break;
    auto out = engine.Step(batch);
    EXPECT_TRUE(out.ok()) << out.status();
    if (!out.ok()) return r;
    for (size_t s = 0; s < prompts.size(); ++s) {
      const float* l = out->logits.data() + s * V;
      if (step == 0) r.first_logits.emplace_back(l, l + V);
      r.tokens[s].push_back(static_cast<int32_t>(std::max_element(l, l + V) - l));
    }
  }
  return r;
}

}  // namespace sparsed::testing
