// The CUDA backend against the CPU backend on whole bundled models (logits at every position,
// greedy tokens) in each sparsity mode; bitwise batch invariance of whole decode steps on CUDA;
// step graphs; the prefix cache bitwise equal to recomputation through the engine loop on CUDA.
// Its operations one by one: cuda_ops_test.cc (linked into the same binary, whose main() is
// here). Exits 77 (CTest: Skipped) without a CUDA device.
//
// Both backends read the same bf16 weights and compute in fp32; only summation orders differ,
// so the tolerances are fp32-sized (the cuBLAS path, bf16 activations, gets a bf16-sized one).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <mutex>
#include <numeric>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "engine/backend/cpu/cpu_backend.h"
#include "engine/backend/device.h"
#include "engine/engine.h"
#include "nlohmann/json.hpp"
#include "scheduler/engine_loop.h"
#include "tests/gpu/cuda_test_util.h"
#include "tests/reference/reference.h"
#include "tests/reference/test_models.h"
#include "tools/ffn_fixture.h"

namespace sparsed {
namespace {

std::string SourceDir() {
  const char* env = std::getenv("SPARSED_SOURCE_DIR");
  return env ? env : SPARSED_SOURCE_DIR;
}

// ---------------------------------------------------------------------------------------------
// Whole models.

struct Prompts {
  std::vector<std::vector<int32_t>> ids;
};

Prompts LoadPrompts(const std::string& model) {
  std::ifstream in(SourceDir() + "/tests/data/" + model + "-reference.json");
  EXPECT_TRUE(in.good()) << model;
  Prompts p;
  if (!in.good()) return p;
  const nlohmann::json doc = nlohmann::json::parse(in);
  for (const auto& q : doc["prompts"]) p.ids.push_back(q["ids"].get<std::vector<int32_t>>());
  return p;
}

std::unique_ptr<Engine> Load(const std::string& model, const std::string& mode,
                             const std::string& device, int cublas_min_tokens = 0,
                             bool cuda_graphs = false, const std::string& kv_dtype = "fp32") {
  EngineOptions o;
  o.model_dir = SourceDir() + "/models/" + model;
  o.sparsity_mode = mode;
  o.device = device;
  o.kv_blocks = 256;
  o.load_tokenizer = false;
  o.backend.cublas_min_tokens = cublas_min_tokens;
  o.backend.cuda_graphs = cuda_graphs;
  o.kv_cache_dtype = kv_dtype;
  auto e = Engine::Load(o);
  EXPECT_TRUE(e.ok()) << model << " on " << device << ": " << e.status();
  return e.ok() ? std::move(*e) : nullptr;
}

// Logits of every position of `ids`, in one prefill step.
std::vector<float> AllLogits(Engine& e, const std::vector<int32_t>& ids) {
  Batch b;
  b.token_ids = ids;
  BatchSequence s;
  for (int i = 0; i * e.kv_block_size() < static_cast<int>(ids.size()) + 1; ++i)
    s.block_table.push_back(i);
  s.num_tokens = static_cast<int32_t>(ids.size());
  s.all_logits = true;
  b.sequences.push_back(s);
  auto out = e.Step(b);
  EXPECT_TRUE(out.ok()) << out.status();
  return out.ok() ? out->logits : std::vector<float>{};
}

struct ModelCase {
  std::string model, mode;
  int cublas_min_tokens = 0;
  double tolerance = 1e-4;
  bool same_tokens = true;
  std::string kv_dtype = "fp32";
};

class CudaModel : public ::testing::TestWithParam<ModelCase> {};

TEST_P(CudaModel, MatchesCpuLogitsAndGreedyTokens) {
  const ModelCase& c = GetParam();
  auto cpu = Load(c.model, c.mode, "cpu", 0, false, c.kv_dtype);
  auto gpu = Load(c.model, c.mode, "cuda", c.cublas_min_tokens, false, c.kv_dtype);
  ASSERT_TRUE(cpu && gpu);
  const Prompts p = LoadPrompts(c.model);
  ASSERT_FALSE(p.ids.empty());
  for (size_t i = 0; i < p.ids.size(); ++i) {
    const double err = ref::RelMaxError(AllLogits(*gpu, p.ids[i]), AllLogits(*cpu, p.ids[i]));
    std::printf("%s %s prompt %zu: relative logit error %.3g\n", c.model.c_str(), c.mode.c_str(), i,
                err);
    EXPECT_LT(err, c.tolerance) << "prompt " << i;
  }
  const auto a = testing::GreedyBatch(*gpu, p.ids, 16);
  const auto b = testing::GreedyBatch(*cpu, p.ids, 16);
  if (c.same_tokens) {
    EXPECT_EQ(a.tokens, b.tokens);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Bundled, CudaModel,
    ::testing::Values(ModelCase{"sparsed-tiny", "exact"}, ModelCase{"sparsed-tiny", "off"},
                      ModelCase{"sparsed-tiny-swiglu", "off"},
                      // thresholds compare products with rounding-sized differences
                      ModelCase{"sparsed-tiny-swiglu", "threshold", 0, 1e-2, true},
                      // dense cuBLAS FFN: bf16 activations
                      ModelCase{"sparsed-tiny", "off", 1, 5e-2, false},
                      // bf16 KV cache on both: the same rounding of K and V
                      ModelCase{"sparsed-tiny", "exact", 0, 1e-4, true, "bf16"}),
    [](const auto& info) {
      std::string n = info.param.model + "_" + info.param.mode +
                      (info.param.cublas_min_tokens ? "_cublas" : "") +
                      (info.param.kv_dtype != "fp32" ? "_kv_" + info.param.kv_dtype : "");
      std::replace(n.begin(), n.end(), '-', '_');
      return n;
    });

// A sequence's logits on CUDA, step by step, are bitwise the same alone and in a batch whose
// other sequences prefill and decode around it.
TEST(CudaModelBatch, DecodeIsBitwiseBatchInvariant) {
  for (const char* mode : {"exact", "off"}) {
    auto e = Load("sparsed-tiny", mode, "cuda");
    ASSERT_NE(e, nullptr);
    const Prompts p = LoadPrompts("sparsed-tiny");
    ASSERT_GE(p.ids.size(), 2u);
    const int vocab = static_cast<int>(e->config().vocab_size), steps = 8;
    const std::vector<int32_t> others_prompt(37, 11);
    auto run = [&](int mates) {
      std::vector<std::vector<float>> logits;
      std::vector<std::vector<int32_t>> tables(1 + mates);
      for (int s = 0; s <= mates; ++s)
        for (int b = 0; b < 8; ++b) tables[s].push_back(s * 8 + b);
      int pos = 0;
      std::vector<int32_t> tokens = p.ids[0];
      for (int step = 0; step < steps; ++step) {
        Batch b;
        const int n = step == 0 ? static_cast<int>(tokens.size()) : 1;
        b.token_ids.assign(tokens.end() - n, tokens.end());
        b.sequences.push_back({tables[0], pos, n, true});
        for (int m = 1; m <= mates; ++m) {
          // Mate m prefills its prompt at step m, then decodes.
          if (step < m) continue;
          const int start = step == m ? 0 : static_cast<int>(others_prompt.size()) + step - m - 1;
          const int k = step == m ? static_cast<int>(others_prompt.size()) : 1;
          for (int j = 0; j < k; ++j) b.token_ids.push_back(others_prompt[j] + m);
          b.sequences.push_back({tables[m], start, k, true});
        }
        auto out = e->Step(b);
        EXPECT_TRUE(out.ok()) << out.status();
        if (!out.ok()) return logits;
        logits.emplace_back(out->logits.begin(), out->logits.begin() + vocab);
        tokens.push_back(static_cast<int32_t>(
            std::max_element(logits.back().begin(), logits.back().end()) - logits.back().begin()));
        pos += n;
      }
      return logits;
    };
    const auto alone = run(0);
    const auto batched = run(3);
    ASSERT_EQ(alone.size(), batched.size());
    for (size_t s = 0; s < alone.size(); ++s) {
      EXPECT_EQ(0, std::memcmp(alone[s].data(), batched[s].data(), vocab * sizeof(float)))
          << mode << " step " << s;
    }
  }
}

// Thresholds set after the first steps reach the device (its copies of the old ones are
// dropped), on CUDA as on the CPU.
TEST(CudaModelBatch, NewThresholdsReachTheDevice) {
  auto cpu = Load("sparsed-tiny-swiglu", "threshold", "cpu");
  auto gpu = Load("sparsed-tiny-swiglu", "threshold", "cuda");
  ASSERT_TRUE(cpu && gpu);
  const Prompts p = LoadPrompts("sparsed-tiny-swiglu");
  ASSERT_FALSE(p.ids.empty());
  const std::vector<float> before = AllLogits(*cpu, p.ids[0]);
  EXPECT_LT(ref::RelMaxError(AllLogits(*gpu, p.ids[0]), before), 1e-2);
  ASSERT_TRUE(cpu->sparsity_profile().has_value());
  std::vector<double> eps;
  for (const SparsityLayer& l : cpu->sparsity_profile()->layers) eps.push_back(4 * l.epsilon);
  ASSERT_TRUE(cpu->SetThresholds(eps).ok());
  ASSERT_TRUE(gpu->SetThresholds(eps).ok());
  const std::vector<float> after = AllLogits(*cpu, p.ids[0]);
  EXPECT_GT(ref::RelMaxError(after, before), 1e-3) << "the new thresholds change the logits";
  EXPECT_LT(ref::RelMaxError(AllLogits(*gpu, p.ids[0]), after), 1e-2);
}

// Per-layer statistics and the FFN observer work on CUDA as on the CPU.
TEST(CudaModelBatch, StatsAndObserverMatchCpu) {
  auto cpu = Load("sparsed-tiny", "exact", "cpu");
  auto gpu = Load("sparsed-tiny", "exact", "cuda");
  ASSERT_TRUE(cpu && gpu);
  const Prompts p = LoadPrompts("sparsed-tiny");
  std::vector<std::vector<float>> seen_cpu, seen_gpu;
  cpu->set_ffn_observer([&](int, const float* x, int T) {
    seen_cpu.emplace_back(x, x + T * cpu->config().hidden_size);
  });
  gpu->set_ffn_observer([&](int, const float* x, int T) {
    seen_gpu.emplace_back(x, x + T * gpu->config().hidden_size);
  });
  Batch b;
  b.token_ids = p.ids[0];
  b.sequences.push_back({{0, 1, 2, 3}, 0, static_cast<int32_t>(p.ids[0].size()), true});
  auto a = gpu->Step(b);
  auto c = cpu->Step(b);
  ASSERT_TRUE(a.ok() && c.ok());
  ASSERT_EQ(seen_gpu.size(), seen_cpu.size());
  for (size_t l = 0; l < seen_cpu.size(); ++l)
    EXPECT_LT(ref::RelMaxError(seen_gpu[l], seen_cpu[l]), 1e-4);
  ASSERT_EQ(a->layer_stats.size(), c->layer_stats.size());
  for (size_t l = 0; l < a->layer_stats.size(); ++l) {
    EXPECT_EQ(a->layer_stats[l].tokens, c->layer_stats[l].tokens);
    EXPECT_NEAR(a->layer_stats[l].active_ratio(), c->layer_stats[l].active_ratio(), 0.005)
        << "layer " << l;
    EXPECT_GT(a->layer_stats[l].union_size, 0);
  }
}

// Step graphs give bitwise the logits and statistics of plain launches, step after step: decode
// across KV-block and 128-position attention-split boundaries, batch-size changes (a prefill
// joining, a sequence leaving), steps synchronised midway by an FFN observer, and thresholds
// replaced between steps — while graphs are captured and replayed (the backend counts both).
TEST(CudaGraphs, StepGraphsGiveTheBitsOfPlainLaunches) {
  for (const char* model : {"sparsed-tiny", "sparsed-tiny-swiglu"}) {
    const std::string mode = std::string(model) == "sparsed-tiny" ? "exact" : "threshold";
    auto plain = Load(model, mode, "cuda");
    auto graphs = Load(model, mode, "cuda", 0, /*cuda_graphs=*/true);
    ASSERT_TRUE(plain && graphs);
    const Prompts p = LoadPrompts(model);
    ASSERT_GE(p.ids.size(), 2u);
    const int vocab = static_cast<int>(plain->config().vocab_size);
    std::vector<std::vector<int32_t>> tables(2);
    for (int s = 0; s < 2; ++s)
      for (int b = 0; b < 16; ++b) tables[s].push_back(s * 16 + b);
    std::vector<int32_t> tokens[2] = {p.ids[0], p.ids[1]};
    int pos[2] = {0, 0};
    const int kSteps = 160;  // sequence 0 passes 128 positions
    for (int step = 0; step < kSteps; ++step) {
      // Sequence 1 prefills at step 40, decodes until step 90, then leaves.
      const bool with1 = step >= 40 && step < 90;
      if (step == 60 || step == 63) {
        for (Engine* e : {plain.get(), graphs.get()})
          e->set_ffn_observer([](int, const float*, int) {});
      }
      if (step == 61 || step == 64) {
        for (Engine* e : {plain.get(), graphs.get()}) e->set_ffn_observer(nullptr);
      }
      if (step == 100 && mode == "threshold") {
        std::vector<double> eps;
        for (const SparsityLayer& l : plain->sparsity_profile()->layers)
          eps.push_back(2 * l.epsilon);
        ASSERT_TRUE(plain->SetThresholds(eps).ok());
        ASSERT_TRUE(graphs->SetThresholds(eps).ok());
      }
      Batch b;
      for (int s = 0; s < 2; ++s) {
        if (s == 1 && !with1) continue;
        const int n = pos[s] == 0 ? static_cast<int>(tokens[s].size()) : 1;
        b.token_ids.insert(b.token_ids.end(), tokens[s].end() - n, tokens[s].end());
        b.sequences.push_back({tables[s], pos[s], n, true});
      }
      auto a = plain->Step(b);
      auto g = graphs->Step(b);
      ASSERT_TRUE(a.ok() && g.ok()) << a.status() << " / " << g.status();
      ASSERT_EQ(a->logits.size(), g->logits.size());
      ASSERT_EQ(0, std::memcmp(a->logits.data(), g->logits.data(), a->logits.size() * 4))
          << model << " step " << step << ": graph and plain logits differ";
      for (size_t l = 0; l < a->layer_stats.size(); ++l) {
        EXPECT_EQ(a->layer_stats[l].active_sum, g->layer_stats[l].active_sum)
            << model << " step " << step << " layer " << l;
        EXPECT_EQ(a->layer_stats[l].union_size, g->layer_stats[l].union_size)
            << model << " step " << step << " layer " << l;
      }
      int row = 0;
      for (int s = 0; s < 2; ++s) {
        if (s == 1 && !with1) continue;
        pos[s] += pos[s] == 0 ? static_cast<int>(tokens[s].size()) : 1;
        const float* l = a->logits.data() + static_cast<size_t>(row++) * vocab;
        tokens[s].push_back(static_cast<int32_t>(std::max_element(l, l + vocab) - l));
      }
    }
    const std::string d = graphs->backend().Describe();
    std::printf("%s: %s\n", model, d.c_str());
    EXPECT_EQ(d.find("turned off"), std::string::npos) << d;
    int captured = 0, replayed = 0;
    ASSERT_EQ(std::sscanf(d.substr(d.find("step graphs: ")).c_str(),
                          "step graphs: %d captured, %d replayed", &captured, &replayed),
              2)
        << d;
    EXPECT_GE(captured, 3) << d;    // batch 1, batch 2, after the split boundary, ...
    EXPECT_GE(replayed, 100) << d;  // most steps
  }
}

// Collects a request's tokens and log-probabilities; Wait() blocks until it ends.
class OutcomeSink : public TokenSink {
 public:
  void OnTokens(const TokenEvent& e) override {
    std::lock_guard<std::mutex> l(mu_);
    ids.insert(ids.end(), e.token_ids.begin(), e.token_ids.end());
    logprobs.insert(logprobs.end(), e.logprobs.begin(), e.logprobs.end());
  }
  void OnFinish(FinishReason r, const absl::Status&, const RequestStats& st) override {
    std::lock_guard<std::mutex> l(mu_);
    reason = r;
    cached = st.cached_prompt_tokens;
    done = true;
    cv_.notify_all();
  }
  void Wait() {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait(l, [this] { return done; });
  }
  std::vector<int32_t> ids;
  std::vector<float> logprobs;
  int64_t cached = 0;
  FinishReason reason = FinishReason::kError;
  bool done = false;

 private:
  std::mutex mu_;
  std::condition_variable cv_;
};

// Requests sharing a 48-token prefix, greedy and seeded, through an engine loop on CUDA with the
// prefix cache off (each alone) and on (one after another, then all at once): the same tokens
// and log-probabilities, to the bit.
TEST(CudaPrefixCache, CachedPrefixGivesTheBitsOfRecomputation) {
  auto requests = [](int i) {
    Request r;
    r.prompt = {1};
    for (int k = 1; k < 48; ++k) r.prompt.push_back(3 + (k * 37) % 900);
    for (int k = 0; k < 1 + (i * 5) % 19; ++k) r.prompt.push_back(3 + (i * 131 + k * 17) % 900);
    r.stopping.max_new_tokens = 8;
    r.stopping.ignore_eos = true;
    r.sampling.temperature = i % 2 ? 0.9f : 0.f;
    r.sampling.seed = 700 + i;
    r.sampling.has_seed = true;
    return r;
  };
  auto run = [&](bool cache, bool concurrent) {
    EngineLoopOptions o;
    o.prefix_cache.enabled = cache;
    EngineLoop loop(Load("sparsed-tiny", "exact", "cuda"), o);
    std::vector<std::shared_ptr<OutcomeSink>> sinks;
    for (int round = 0; round < (cache ? 2 : 1); ++round) {
      for (int i = 0; i < 8; ++i) {
        sinks.push_back(std::make_shared<OutcomeSink>());
        Request r = requests(i);
        r.sink = sinks.back();
        EXPECT_TRUE(loop.Submit(std::move(r)).ok());
        if (!concurrent || round == 0) sinks.back()->Wait();
      }
    }
    for (auto& s : sinks) s->Wait();
    return sinks;
  };
  const auto ref = run(false, false);
  const auto got = run(true, true);
  ASSERT_EQ(got.size(), 2 * ref.size());
  for (size_t i = 0; i < got.size(); ++i) {
    const OutcomeSink& a = *got[i];
    const OutcomeSink& b = *ref[i % ref.size()];
    EXPECT_EQ(a.reason, FinishReason::kLength) << "request " << i;
    EXPECT_EQ(a.ids, b.ids) << "request " << i;
    EXPECT_EQ(a.logprobs, b.logprobs) << "request " << i;
    if (i > 0) {
      EXPECT_GE(a.cached, 48) << "request " << i;
    }
  }
}

}  // namespace
}  // namespace sparsed

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  const auto d = sparsed::ResolveDevice("cuda");
  if (!d.ok()) {
    std::printf("SKIPPED: no CUDA device (%s)\n", std::string(d.status().message()).c_str());
    return 77;
  }
  std::printf("device: %s\n", d->reason.c_str());
  return RUN_ALL_TESTS();
}
