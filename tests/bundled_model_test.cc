// The bundled models against their PyTorch reference (tools/train/reference_logits.py), an
// implementation that shares no code with the engine: tokenizer ids, logits at every position
// (token by token through the paged KV cache, and in one prefill), and greedy continuations, in
// each sparsity mode the model supports.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "engine/model/safetensors.h"
#include "nlohmann/json.hpp"
#include "tests/reference/test_models.h"

namespace sparsed {
namespace {

// bf16 weights widened to fp32 on both sides; only the order of fp32 sums differs.
constexpr float kLogitTolerance = 2e-4f;  // measured: 1.4e-5

struct ReferencePrompt {
  std::string text;
  std::vector<int32_t> ids;
  std::vector<int32_t> greedy;
  std::vector<float> logits;  // [ids.size() × vocab]
};

struct Case {
  std::string model;  // directory under models/
  std::string mode;
};

std::string ModelDir(const std::string& name) {
  return std::string(SPARSED_SOURCE_DIR) + "/models/" + name;
}

std::vector<ReferencePrompt> LoadReference(const std::string& model, int vocab) {
  const std::string base = std::string(SPARSED_SOURCE_DIR) + "/tests/data/" + model + "-reference";
  std::ifstream in(base + ".json");
  EXPECT_TRUE(in.good()) << base << ".json";
  const nlohmann::json doc = nlohmann::json::parse(in);
  auto file = SafetensorsFile::Open(base + ".safetensors");
  EXPECT_TRUE(file.ok()) << file.status();
  std::vector<ReferencePrompt> out;
  for (size_t i = 0; i < doc["prompts"].size(); ++i) {
    const auto& p = doc["prompts"][i];
    ReferencePrompt r;
    r.text = p["prompt"].get<std::string>();
    r.ids = p["ids"].get<std::vector<int32_t>>();
    r.greedy = p["greedy"].get<std::vector<int32_t>>();
    auto t = (*file)->Get("logits." + std::to_string(i));
    EXPECT_TRUE(t.ok()) << t.status();
    EXPECT_EQ(t->dtype, DType::kF32);
    EXPECT_EQ(t->shape, (std::vector<int64_t>{static_cast<int64_t>(r.ids.size()), vocab}));
    const float* f = static_cast<const float*>(t->data);
    r.logits.assign(f, f + t->numel());
    out.push_back(std::move(r));
  }
  return out;
}

float MaxAbsDiff(const float* a, const float* b, int n) {
  float m = 0;
  for (int i = 0; i < n; ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

class BundledModelTest : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    engine_ = testing::LoadEngine(ModelDir(GetParam().model), GetParam().mode);
    ASSERT_NE(engine_, nullptr);
    vocab_ = static_cast<int>(engine_->config().vocab_size);
    prompts_ = LoadReference(GetParam().model, vocab_);
    ASSERT_FALSE(prompts_.empty());
  }

  std::unique_ptr<Engine> engine_;
  int vocab_ = 0;
  std::vector<ReferencePrompt> prompts_;
};

TEST_P(BundledModelTest, TokenizerMatchesReferenceIds) {
  for (const auto& p : prompts_) {
    auto ids = engine_->tokenizer()->Encode(p.text);
    ASSERT_TRUE(ids.ok()) << ids.status();
    std::vector<int32_t> with_bos = {static_cast<int32_t>(engine_->config().bos_token_id)};
    with_bos.insert(with_bos.end(), ids->begin(), ids->end());
    EXPECT_EQ(with_bos, p.ids) << p.text;
  }
}

// Every prompt fed one token per step, all prompts in the same batch: the logits at every
// position come through the paged KV cache.
TEST_P(BundledModelTest, LogitsAtEveryPositionMatchReference) {
  const int bs = engine_->kv_block_size();
  size_t longest = 0;
  for (const auto& p : prompts_) longest = std::max(longest, p.ids.size());
  std::vector<std::vector<int32_t>> tables(prompts_.size());
  int next = 0;
  for (auto& t : tables) {
    for (size_t b = 0; b < (longest + bs - 1) / bs; ++b) t.push_back(next++);
  }
  float worst = 0;
  for (size_t pos = 0; pos < longest; ++pos) {
    Batch batch;
    std::vector<size_t> which;
    for (size_t s = 0; s < prompts_.size(); ++s) {
      if (pos >= prompts_[s].ids.size()) continue;
      BatchSequence q;
      q.block_table = tables[s];
      q.start_position = static_cast<int32_t>(pos);
      q.num_tokens = 1;
      q.need_logits = true;
      batch.token_ids.push_back(prompts_[s].ids[pos]);
      batch.sequences.push_back(q);
      which.push_back(s);
    }
    auto out = engine_->Step(batch);
    ASSERT_TRUE(out.ok()) << out.status();
    for (size_t i = 0; i < which.size(); ++i) {
      const float* ref = prompts_[which[i]].logits.data() + pos * vocab_;
      const float d = MaxAbsDiff(out->logits.data() + i * vocab_, ref, vocab_);
      worst = std::max(worst, d);
      EXPECT_LE(d, kLogitTolerance) << "prompt " << which[i] << " position " << pos;
    }
  }
  RecordProperty("max_abs_logit_diff", std::to_string(worst));
  std::printf("max |logit - reference| over all positions: %.3g\n", worst);
}

// Each prompt prefilled in one step, then greedy decoding together: the first logits match the
// reference's last row and the continuation matches PyTorch's greedy tokens.
TEST_P(BundledModelTest, PrefillAndGreedyContinuationMatchReference) {
  std::vector<std::vector<int32_t>> ids;
  for (const auto& p : prompts_) ids.push_back(p.ids);
  const int n = static_cast<int>(prompts_[0].greedy.size());
  const auto r = testing::GreedyBatch(*engine_, ids, n);
  ASSERT_EQ(r.first_logits.size(), prompts_.size());
  for (size_t s = 0; s < prompts_.size(); ++s) {
    const auto& p = prompts_[s];
    const float* ref_last = p.logits.data() + (p.ids.size() - 1) * vocab_;
    EXPECT_LE(MaxAbsDiff(r.first_logits[s].data(), ref_last, vocab_), kLogitTolerance)
        << "prompt " << s;
    EXPECT_EQ(r.tokens[s], p.greedy) << "prompt " << s << ": " << p.text;
    auto text = engine_->tokenizer()->Decode(r.tokens[s]);
    ASSERT_TRUE(text.ok());
    std::printf("%s|%s\n", p.text.c_str(), text->c_str());
  }
}

std::string CaseName(const ::testing::TestParamInfo<Case>& info) {
  std::string n = info.param.model + "_" + info.param.mode;
  std::replace_if(
      n.begin(), n.end(), [](char c) { return !std::isalnum(c); }, '_');
  return n;
}

INSTANTIATE_TEST_SUITE_P(Models, BundledModelTest,
                         ::testing::Values(Case{"sparsed-tiny", "exact"},
                                           Case{"sparsed-tiny", "off"},
                                           Case{"sparsed-tiny-swiglu", "off"},
                                           Case{"sparsed-tiny-prosparse", "exact"},
                                           Case{"sparsed-tiny-prosparse", "off"}),
                         CaseName);

}  // namespace
}  // namespace sparsed
