// Whole-model checks on synthetic checkpoints: engine vs scalar reference, exact vs off,
// batched vs alone, chunked prefill, input validation.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "tests/reference/reference.h"
#include "tests/reference/test_models.h"

namespace sparsed {
namespace {

using testing::GreedyBatch;

struct ModelCase {
  std::string name, model_type, activation;
  DType dtype;
  std::optional<DType> weights = {};  // converted at load (--weights)
};

class WholeModel : public ::testing::TestWithParam<ModelCase> {
 protected:
  void SetUp() override {
    SyntheticModelSpec s;
    s.preset = "tiny";
    s.model_type = GetParam().model_type;
    s.activation = GetParam().activation;
    s.dtype = GetParam().dtype;
    s.active_ratio = 0.15;
    s.skew = 1.0;
    dir_ = testing::MakeModel(s);
  }
  std::unique_ptr<testing::TempDir> dir_;
};

std::vector<std::vector<int32_t>> Prompts() {
  return {{1, 17, 300, 5, 99},
          {1, 900, 3},
          {1, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60},
          {1, 2, 3, 4}};
}

TEST_P(WholeModel, MatchesScalarReference) {
  auto engine = testing::LoadEngine(dir_->path(), "", 256, GetParam().weights);
  ASSERT_NE(engine, nullptr);
  const int V = static_cast<int>(engine->config().vocab_size);
  for (const auto& prompt : Prompts()) {
    auto r = GreedyBatch(*engine, {prompt}, 1);
    ASSERT_EQ(r.first_logits.size(), 1u);
    const std::vector<float> all = ref::ModelLogits(engine->config(), engine->weights(), prompt);
    const std::vector<float> last(all.end() - V, all.end());
    // Quantized weights meet activations rounded to 8 bits per token: a last-bit difference in
    // an activation (float here, double in the reference) can move its code by one, so the
    // bound is the code step's, not float rounding's (the kernels themselves are held to 2e-5
    // against the same reference in cpu_ops_test).
    EXPECT_LT(ref::RelMaxError(r.first_logits[0], last), GetParam().weights ? 1e-2 : 1e-4);
  }
}

TEST_P(WholeModel, ExactAndOffAgree) {
  auto exact = testing::LoadEngine(dir_->path(), "exact", 256, GetParam().weights);
  auto off = testing::LoadEngine(dir_->path(), "off", 256, GetParam().weights);
  ASSERT_TRUE(exact && off);
  for (const auto& prompt : Prompts()) {
    auto a = GreedyBatch(*exact, {prompt}, 12);
    auto b = GreedyBatch(*off, {prompt}, 12);
    EXPECT_EQ(a.tokens, b.tokens);
    EXPECT_LT(ref::RelMaxError(a.first_logits[0], b.first_logits[0]), 1e-4);
  }
}

TEST_P(WholeModel, SequenceAloneEqualsSequenceInBatch) {
  auto engine = testing::LoadEngine(dir_->path(), "", 256, GetParam().weights);
  ASSERT_NE(engine, nullptr);
  const auto prompts = Prompts();
  auto batched = GreedyBatch(*engine, prompts, 10);
  for (size_t s = 0; s < prompts.size(); ++s) {
    auto alone = GreedyBatch(*engine, {prompts[s]}, 10, /*first_block=*/100);
    EXPECT_EQ(alone.tokens[0], batched.tokens[s]) << "prompt " << s;
    EXPECT_EQ(alone.first_logits[0], batched.first_logits[s])
        << "prompt " << s << " logits differ bitwise";
  }
}

TEST_P(WholeModel, ChunkedPrefillEqualsOneShot) {
  auto engine = testing::LoadEngine(dir_->path(), "", 256, GetParam().weights);
  ASSERT_NE(engine, nullptr);
  const auto prompt = Prompts()[2];
  auto one = GreedyBatch(*engine, {prompt}, 1);
  // Prefill in chunks of 5 tokens, logits only on the last chunk.
  Batch b;
  std::vector<int32_t> table = {200, 201};
  std::vector<float> logits;
  for (size_t start = 0; start < prompt.size(); start += 5) {
    const size_t n = std::min<size_t>(5, prompt.size() - start);
    Batch chunk;
    chunk.token_ids.assign(prompt.begin() + start, prompt.begin() + start + n);
    chunk.sequences.push_back(
        {table, static_cast<int32_t>(start), static_cast<int32_t>(n), start + n == prompt.size()});
    auto out = engine->Step(chunk);
    ASSERT_TRUE(out.ok()) << out.status();
    if (!out->logits.empty()) logits = out->logits;
  }
  EXPECT_LT(ref::RelMaxError(logits, one.first_logits[0]), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(
    Activations, WholeModel,
    ::testing::Values(
        ModelCase{"llama_relu_bf16", "llama", "relu", DType::kBF16},
        ModelCase{"llama_relu2_f32", "llama", "relu2", DType::kF32},
        ModelCase{"sparsellama_fatrelu_bf16", "sparsellama", "fatrelu", DType::kBF16},
        ModelCase{"llama_silu_f16", "llama", "silu", DType::kF16},
        ModelCase{"minicpm_fatrelu_bf16", "minicpm", "fatrelu", DType::kBF16},
        ModelCase{"mistral_gelu_bf16", "mistral", "gelu", DType::kBF16},
        ModelCase{"llama_relu_bf16_as_q8_0", "llama", "relu", DType::kBF16, DType::kQ8_0},
        ModelCase{"sparsellama_fatrelu_bf16_as_q4_0", "sparsellama", "fatrelu", DType::kBF16,
                  DType::kQ4_0},
        ModelCase{"minicpm_relu2_f32_as_q4_0", "minicpm", "relu2", DType::kF32, DType::kQ4_0},
        ModelCase{"llama_silu_f16_as_q8_0", "llama", "silu", DType::kF16, DType::kQ8_0}),
    [](const auto& info) { return info.param.name; });

TEST(Engine, DefaultsToExactForReluFamilyOnly) {
  SyntheticModelSpec s;
  s.activation = "silu";
  auto silu = testing::MakeModel(s);
  s.activation = "relu2";
  auto relu2 = testing::MakeModel(s);
  EXPECT_EQ(testing::LoadEngine(silu->path(), "")->sparsity_mode(), SparsityMode::kOff);
  EXPECT_EQ(testing::LoadEngine(relu2->path(), "")->sparsity_mode(), SparsityMode::kExact);
}

TEST(Engine, ThresholdModeNeedsCalibration) {
  SyntheticModelSpec s;
  auto dir = testing::MakeModel(s);
  EngineOptions o;
  o.model_dir = dir->path();
  o.sparsity_mode = "threshold";
  auto e = Engine::Load(o);
  EXPECT_EQ(e.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(e.status().message()), ::testing::HasSubstr("sparsity.json"));
  o.sparsity_mode = "fuzzy";
  EXPECT_THAT(std::string(Engine::Load(o).status().message()),
              ::testing::HasSubstr("off, exact, threshold"));
}

TEST(Engine, KvCacheFractionAndDeviceOptions) {
  SyntheticModelSpec s;
  auto dir = testing::MakeModel(s);
  EngineOptions o;
  o.model_dir = dir->path();
  o.load_tokenizer = false;
  for (double bad : {1.5, 1.0, -0.5}) {
    o.kv_cache_fraction = bad;
    EXPECT_EQ(Engine::Load(o).status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  // A host-memory backend has no "free device memory": the byte budget applies.
  o.kv_cache_fraction = 0.5;
  o.kv_cache_bytes = 8ll << 20;
  auto e = Engine::Load(o);
  ASSERT_TRUE(e.ok()) << e.status();
  KvCacheShape shape;
  shape.layers = static_cast<int>((*e)->config().num_layers);
  shape.kv_heads = static_cast<int>((*e)->config().num_kv_heads);
  shape.head_dim = static_cast<int>((*e)->config().head_dim);
  shape.block_size = (*e)->kv_block_size();
  EXPECT_EQ((*e)->kv_blocks(), static_cast<int>(o.kv_cache_bytes / shape.BytesPerBlock()));
  o.kv_cache_fraction = 0;
  o.device = "tpu";
  EXPECT_EQ(Engine::Load(o).status().code(), absl::StatusCode::kInvalidArgument);
}

// A bf16 KV cache holds twice the blocks in the same bytes; logits stay within bf16 rounding of
// the fp32 cache's (and differ from them: the cache really is bf16); a sequence alone and in a
// batch stay bitwise equal; an unknown element type is refused naming the option.
TEST(Engine, Bf16KvCache) {
  SyntheticModelSpec s;
  s.activation = "relu";
  s.active_ratio = 0.15;
  auto dir = testing::MakeModel(s);
  auto load = [&](const std::string& dtype) {
    EngineOptions o;
    o.model_dir = dir->path();
    o.load_tokenizer = false;
    o.kv_cache_bytes = 8ll << 20;
    o.kv_cache_dtype = dtype;
    return Engine::Load(o);
  };
  auto f32 = load("fp32");
  auto b16 = load("bf16");
  ASSERT_TRUE(f32.ok() && b16.ok()) << f32.status() << " / " << b16.status();
  EXPECT_EQ((*b16)->kv_blocks(), 2 * (*f32)->kv_blocks());
  double max_err = 0;
  for (const auto& prompt : Prompts()) {
    auto a = GreedyBatch(**f32, {prompt}, 8);
    auto b = GreedyBatch(**b16, {prompt}, 8);
    const double err = ref::RelMaxError(b.first_logits[0], a.first_logits[0]);
    EXPECT_LT(err, 2e-3) << "prompt of " << prompt.size() << " tokens";
    max_err = std::max(max_err, err);
  }
  std::printf("bf16 vs fp32 KV cache: max relative logit difference %.3g\n", max_err);
  EXPECT_GT(max_err, 0) << "bf16 and fp32 caches gave identical logits";
  const auto prompts = Prompts();
  auto batched = GreedyBatch(**b16, prompts, 10);
  for (size_t p = 0; p < prompts.size(); ++p) {
    auto alone = GreedyBatch(**b16, {prompts[p]}, 10, /*first_block=*/100);
    EXPECT_EQ(alone.tokens[0], batched.tokens[p]) << "prompt " << p;
    EXPECT_EQ(alone.first_logits[0], batched.first_logits[p]) << "prompt " << p;
  }
  const auto bad = load("fp8");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.status().message()), ::testing::HasSubstr("kv_cache_dtype"));
}

TEST(Engine, RejectsBadBatches) {
  SyntheticModelSpec s;
  auto dir = testing::MakeModel(s);
  auto engine = testing::LoadEngine(dir->path(), "", /*kv_blocks=*/8);
  ASSERT_NE(engine, nullptr);
  auto msg = [&](const Batch& b) {
    auto r = engine->Step(b);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    return std::string(r.status().message());
  };
  Batch b;
  b.token_ids = {1, 5000};
  b.sequences.push_back({{0}, 0, 2, true});
  EXPECT_THAT(msg(b), ::testing::HasSubstr("token id 5000"));
  b.token_ids = {1, 5};
  b.sequences[0].block_table = {8};
  EXPECT_THAT(msg(b), ::testing::HasSubstr("block id 8"));
  b.sequences[0].block_table = {0};
  b.sequences[0].start_position = 15;
  EXPECT_THAT(msg(b), ::testing::HasSubstr("does not cover position 16"));
  b.sequences[0].start_position = 0;
  b.sequences[0].num_tokens = 3;
  EXPECT_THAT(msg(b), ::testing::HasSubstr("sequences count 3"));
  EXPECT_THAT(msg(Batch{}), ::testing::HasSubstr("no tokens"));
}

int64_t ResidentKb() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6));
  }
  return -1;
}

TEST(Engine, ResidentMemoryStaysNearFileSize) {
#ifdef SPARSED_SANITIZED
  GTEST_SKIP() << "sanitizer shadow memory inflates the resident set";
#endif
  SyntheticModelSpec s;
  s.preset = "small";
  s.hidden = 512;
  s.intermediate = 2048;
  s.layers = 4;
  s.vocab = 4096;
  s.tokenizer = false;
  auto dir = testing::MakeModel(s);
  const int64_t file_kb =
      static_cast<int64_t>(std::filesystem::file_size(dir->File("model.safetensors")) / 1024);
  const int64_t before = ResidentKb();
  EngineOptions o;
  o.model_dir = dir->path();
  o.kv_blocks = 4;
  o.load_tokenizer = false;
  o.backend.threads = 1;
  auto e = Engine::Load(o);
  ASSERT_TRUE(e.ok()) << e.status();
  Batch b;
  b.token_ids = {1, 2, 3};
  b.sequences.push_back({{0}, 0, 3, true});
  ASSERT_TRUE((*e)->Step(b).ok());
  const int64_t grown = ResidentKb() - before;
  // bf16 weights stay bf16: nothing widened to fp32 (which would double the size).
  EXPECT_LT(grown, file_kb * 13 / 10 + 4096)
      << "file " << file_kb << " KiB, resident growth " << grown << " KiB";
}

}  // namespace
}  // namespace sparsed
