// Neuron orders and the permuted checkpoint: orders are permutations with the promised
// structure, and a model with its FFN neurons renumbered computes the same logits (up to the
// order of the down projection's fp32 sum) and the same greedy tokens, in exact and threshold
// mode.
#include "tools/neuron_order.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "tests/reference/test_models.h"

namespace sparsed {
namespace {

constexpr float kLogitTolerance = 2e-4f;  // as the bundled models' reference test

std::vector<int64_t> AllTokens(const LayerMasks& m) {
  std::vector<int64_t> t(static_cast<size_t>(m.tokens()));
  std::iota(t.begin(), t.end(), 0);
  return t;
}

TEST(NeuronOrderTest, FrequencyOrderPutsTheMostActiveFirst) {
  const int F = 40;
  LayerMasks m(F);
  std::vector<uint8_t> a(F);
  for (int t = 0; t < 50; ++t) {
    for (int i = 0; i < F; ++i) a[i] = t < i;  // neuron i is active for i tokens
    m.Add(0, a.data());
  }
  const auto perm = NeuronOrder(m, AllTokens(m), NeuronOrderKind::kFrequency, 8);
  ASSERT_TRUE(IsPermutation(perm, F));
  for (int j = 0; j < F; ++j) EXPECT_EQ(perm[j], F - 1 - j);
}

// Two families of neurons, each firing together on its own tokens, interleaved in id order: the
// co-activation order puts each family in a block of its own.
TEST(NeuronOrderTest, CoActivationOrderGroupsNeuronsThatFireTogether) {
  const int F = 16;
  LayerMasks m(F);
  std::vector<uint8_t> a(F);
  for (int t = 0; t < 20; ++t) {
    for (int i = 0; i < F; ++i) a[i] = (i % 2) == (t < 10 ? 0 : 1);
    m.Add(t % 3, a.data());
  }
  const auto perm = NeuronOrder(m, AllTokens(m), NeuronOrderKind::kCoActivation, 8);
  ASSERT_TRUE(IsPermutation(perm, F));
  for (int j = 0; j < F; ++j) EXPECT_EQ(perm[j] % 2, perm[j / 8 * 8] % 2) << "position " << j;
  // Only these tokens were used to learn it: with none, every neuron counts zero, ids in order.
  const auto none = NeuronOrder(m, {}, NeuronOrderKind::kCoActivation, 8);
  ASSERT_TRUE(IsPermutation(none, F));
}

TEST(NeuronOrderTest, PermuteNeuronsRenumbersEveryMask) {
  LayerMasks m(70);
  std::vector<uint8_t> a(70, 0);
  a[3] = a[69] = 1;
  m.Add(0, a.data());
  std::fill(a.begin(), a.end(), 0);
  a[64] = 1;
  m.Add(1, a.data());
  std::vector<int32_t> perm(70);
  for (int j = 0; j < 70; ++j) perm[j] = 69 - j;  // reversed
  const LayerMasks p = PermuteNeurons(m, perm);
  ASSERT_EQ(p.tokens(), 2);
  EXPECT_EQ(p.sequences().size(), 2u);
  EXPECT_DOUBLE_EQ(p.UnionRatio({0}), m.UnionRatio({0}));
  EXPECT_EQ((p.Bits(0)[66 / 64] >> (66 % 64)) & 1, 1u);  // old 3 is new 66
  EXPECT_EQ(p.Bits(0)[0] & 1, 1u);                       // old 69 is new 0
  EXPECT_EQ((p.Bits(1)[0] >> 5) & 1, 1u);                // old 64 is new 5
  EXPECT_FALSE(IsPermutation({0, 0, 1}, 3));
  EXPECT_FALSE(IsPermutation({0, 1}, 3));
  EXPECT_FALSE(IsPermutation({0, 1, 3}, 3));
}

struct Case {
  std::string model, mode;
};

class PermutedCheckpointTest : public ::testing::TestWithParam<Case> {};

TEST_P(PermutedCheckpointTest, SameLogitsAndGreedyTokens) {
  const std::string dir = std::string(SPARSED_SOURCE_DIR) + "/models/" + GetParam().model;
  auto src = Checkpoint::Open(dir);
  ASSERT_TRUE(src.ok()) << src.status();
  const ModelConfig& c = (*src)->config();
  std::mt19937 rng(17);
  std::vector<std::vector<int32_t>> perms(c.num_layers);
  for (auto& p : perms) {
    p.resize(c.intermediate_size);
    std::iota(p.begin(), p.end(), 0);
    std::shuffle(p.begin(), p.end(), rng);
  }
  testing::TempDir out;
  ASSERT_TRUE(WritePermutedCheckpoint(**src, perms, out.path()).ok());
  auto original = testing::LoadEngine(dir, GetParam().mode);
  auto permuted = testing::LoadEngine(out.path(), GetParam().mode);  // sparsity.json re-stamped
  ASSERT_NE(original, nullptr);
  ASSERT_NE(permuted, nullptr);
  const std::vector<std::vector<int32_t>> prompts = {
      {1, 450, 1855, 310, 278, 3186, 338, 2987},
      {1, 13, 2871, 30, 2000, 17, 99, 512, 1024, 7, 4000}};
  const auto a = testing::GreedyBatch(*original, prompts, 24);
  const auto b = testing::GreedyBatch(*permuted, prompts, 24);
  const int vocab = static_cast<int>(c.vocab_size);
  for (size_t s = 0; s < prompts.size(); ++s) {
    float diff = 0;
    for (int i = 0; i < vocab; ++i)
      diff = std::max(diff, std::fabs(a.first_logits[s][i] - b.first_logits[s][i]));
    EXPECT_LE(diff, kLogitTolerance) << "prompt " << s;
    EXPECT_EQ(a.tokens[s], b.tokens[s]) << "prompt " << s;
  }
  // A permutation that is not one, or one order too few: refused before anything is written.
  auto bad = perms;
  bad[0][0] = bad[0][1];
  EXPECT_EQ(WritePermutedCheckpoint(**src, bad, out.path()).code(),
            absl::StatusCode::kInvalidArgument);
  bad = perms;
  bad.pop_back();
  EXPECT_EQ(WritePermutedCheckpoint(**src, bad, out.path()).code(),
            absl::StatusCode::kInvalidArgument);
}

INSTANTIATE_TEST_SUITE_P(BundledModels, PermutedCheckpointTest,
                         ::testing::Values(Case{"sparsed-tiny", "exact"},
                                           Case{"sparsed-tiny-swiglu", "threshold"}),
                         [](const auto& info) {
                           std::string n = info.param.model + "_" + info.param.mode;
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

}  // namespace
}  // namespace sparsed
