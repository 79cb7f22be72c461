// Threshold mode and CETT calibration on the bundled SwiGLU model: zero thresholds reproduce the
// dense logits, the CETT-PPL-p% search lands on the requested increase, and an engine loading the
// written sparsity.json reproduces the perplexity calibration predicted.
#include "tools/calibration.h"

#include <gtest/gtest.h>

#include <cmath>

#include "tests/reference/test_models.h"
#include "tools/text_eval.h"

namespace sparsed {
namespace {

const std::string kModel = std::string(SPARSED_SOURCE_DIR) + "/models/sparsed-tiny-swiglu";
const std::string kText = std::string(SPARSED_SOURCE_DIR) + "/models/corpus/heldout.txt";
#ifdef SPARSED_SANITIZED
// Sanitizer runtimes slow the forward pass 10–30×: a smaller text keeps the search under a minute.
constexpr int kCalibrationTokens = 512, kEvalTokens = 1024;
#else
constexpr int kCalibrationTokens = 2048, kEvalTokens = 4096;
#endif

std::unique_ptr<Engine> Load(const std::string& mode, const std::string& file = "") {
  EngineOptions o;
  o.model_dir = kModel;
  o.sparsity_mode = mode;
  o.sparsity_file = file;
  o.kv_blocks = 8 * 8;
  o.backend.threads = 2;
  auto e = Engine::Load(o);
  EXPECT_TRUE(e.ok()) << e.status();
  return e.ok() ? *std::move(e) : nullptr;
}

TEST(CalibrationTest, ZeroThresholdsGiveDenseLogits) {
  auto e = Load("off");
  ASSERT_NE(e, nullptr);
  auto windows = TokenWindows(*e, kText, 64, 256);
  ASSERT_TRUE(windows.ok()) << windows.status();
  std::vector<std::vector<int32_t>> prompts(windows->begin(), windows->begin() + 3);
  const auto dense = testing::GreedyBatch(*e, prompts, 4);
  ASSERT_TRUE(e->SetThresholds(std::vector<double>(e->config().num_layers, 0.0)).ok());
  ASSERT_TRUE(e->SetSparsityMode(SparsityMode::kThreshold).ok());
  const auto thr = testing::GreedyBatch(*e, prompts, 4, /*first_block=*/32);
  ASSERT_EQ(dense.first_logits.size(), thr.first_logits.size());
  for (size_t s = 0; s < dense.first_logits.size(); ++s) {
    EXPECT_EQ(dense.first_logits[s], thr.first_logits[s]) << "prompt " << s;
    EXPECT_EQ(dense.tokens[s], thr.tokens[s]);
  }
}

TEST(CalibrationTest, PplIncreaseSearchLandsOnTargetAndFileReproducesIt) {
  auto e = Load("off");
  ASSERT_NE(e, nullptr);
  auto calib = TokenWindows(*e, kText, 128, kCalibrationTokens);
  auto eval = TokenWindows(*e, kText, 128, kEvalTokens);
  ASSERT_TRUE(calib.ok() && eval.ok());
  auto layers = CollectCalibration(*e, *calib, 128, nullptr);
  ASSERT_TRUE(layers.ok()) << layers.status();
  CalibrationOptions o;
  o.ppl_increase_percent = 1.0;
  auto r = Calibrate(*e, *layers, *eval, o, nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  std::printf("CETT %.4f: perplexity %.4f -> %.4f (%+.3f%%), %d evaluations\n", r->cett,
              r->dense_ppl, r->sparse_ppl, r->increase_percent(), r->evaluations);
  EXPECT_LE(r->increase_percent(), 1.0);
  EXPECT_GT(r->increase_percent(), 0.75);
  EXPECT_GT(r->cett, 0.0);
  double mean_active = 0;
  for (double a : r->active_ratios) mean_active += a / r->active_ratios.size();
  EXPECT_LT(mean_active, 1.0);
  std::printf("mean active ratio %.3f\n", mean_active);

  // Written, then loaded by a fresh engine: the same perplexity on the same text.
  testing::TempDir dir;
  SparsityProfile p;
  p.fingerprint = e->fingerprint();
  p.num_layers = static_cast<int>(e->config().num_layers);
  p.intermediate_size = static_cast<int>(e->config().intermediate_size);
  p.cett = r->cett;
  for (size_t l = 0; l < r->epsilons.size(); ++l) {
    p.layers.push_back({r->epsilons[l], r->active_ratios[l]});
  }
  ASSERT_TRUE(WriteSparsityProfile(p, dir.File("sparsity.json")).ok());
  auto loaded = Load("threshold", dir.File("sparsity.json"));
  ASSERT_NE(loaded, nullptr);
  auto ppl = Perplexity(*loaded, *eval, 8);
  ASSERT_TRUE(ppl.ok()) << ppl.status();
  EXPECT_NEAR(ppl->perplexity(), r->sparse_ppl, 1e-6 * r->sparse_ppl);
}

// The search returns the bracket's lower end: with any budget of evaluations, the CETT returned
// raises perplexity by at most the target (CETT 0 when no evaluated point is within it: one
// evaluation tries CETT 0.5, far past 1%), and a larger budget only moves it up.
TEST(CalibrationTest, PplIncreaseSearchNeverReturnsACettAboveTheTarget) {
  auto e = Load("off");
  ASSERT_NE(e, nullptr);
  auto calib = TokenWindows(*e, kText, 128, kCalibrationTokens);
  auto eval = TokenWindows(*e, kText, 128, kEvalTokens / 2);
  ASSERT_TRUE(calib.ok() && eval.ok());
  auto layers = CollectCalibration(*e, *calib, 128, nullptr);
  ASSERT_TRUE(layers.ok()) << layers.status();
  double previous = -1;
  for (int budget : {1, 3, 6}) {
    CalibrationOptions o;
    o.ppl_increase_percent = 1.0;
    o.tolerance_pp = 0;  // run the whole budget
    o.max_evaluations = budget;
    auto r = Calibrate(*e, *layers, *eval, o, nullptr);
    ASSERT_TRUE(r.ok()) << r.status();
    std::printf("%d evaluations: CETT %.4f, %+.3f%%\n", budget, r->cett, r->increase_percent());
    EXPECT_EQ(r->evaluations, budget);
    EXPECT_LE(r->increase_percent(), 1.0) << budget << " evaluations";
    EXPECT_GE(r->cett, previous) << budget << " evaluations";
    if (budget == 1) {
      EXPECT_EQ(r->cett, 0.0);
      EXPECT_EQ(r->sparse_ppl, r->dense_ppl);
    }
    // The engine is left at the returned CETT: its perplexity is the one reported.
    auto ppl = Perplexity(*e, *eval, 8);
    ASSERT_TRUE(ppl.ok()) << ppl.status();
    EXPECT_NEAR(ppl->perplexity(), r->sparse_ppl, 1e-6 * r->sparse_ppl);
    previous = r->cett;
  }
  EXPECT_GT(previous, 0.0);
}

}  // namespace
}  // namespace sparsed
