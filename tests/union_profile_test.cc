// The union-ratio profile on masks with known answers.
#include "tools/union_profile.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

namespace sparsed {
namespace {

TEST(UnionProfileTest, UnionOfHandMadeMasks) {
  LayerMasks m(130);  // spans three 64-bit words
  std::vector<uint8_t> a(130, 0), b(130, 0);
  a[0] = a[64] = a[129] = 1;
  b[0] = b[1] = 1;
  m.Add(0, a.data());
  m.Add(1, b.data());
  EXPECT_EQ(m.tokens(), 2);
  EXPECT_DOUBLE_EQ(m.ActiveRatio(), 5.0 / 260);
  EXPECT_DOUBLE_EQ(m.UnionRatio({0}), 3.0 / 130);
  EXPECT_DOUBLE_EQ(m.UnionRatio({0, 1}), 4.0 / 130);
  EXPECT_EQ(m.sequences().size(), 2u);
}

// Independent Bernoulli masks follow 1 − (1 − a)^B; identical masks inside a sequence keep the
// consecutive union at a.
TEST(UnionProfileTest, CurvesMatchTheirClosedForms) {
  const int F = 2048;
  LayerMasks m(F);
  std::mt19937_64 rng(7);
  std::bernoulli_distribution on(0.1);
  std::vector<uint8_t> mask(F);
  for (int seq = 0; seq < 80; ++seq) {
    for (auto& x : mask) x = on(rng);
    for (int t = 0; t < 70; ++t) m.Add(seq, mask.data());  // one mask repeated per sequence
  }
  const auto curve = UnionCurve(m, {1, 2, 8, 64, 128}, 200, 3);
  ASSERT_EQ(curve.size(), 5u);
  for (const UnionPoint& p : curve) {
    if (p.batch <= 64) {
      EXPECT_NEAR(p.across, p.independent, 0.02) << "B=" << p.batch;
      EXPECT_NEAR(p.consecutive, p.active, 0.01) << "B=" << p.batch;
    }
    EXPECT_NEAR(p.independent, 1 - std::pow(1 - p.active, p.batch), 1e-12);
  }
  EXPECT_TRUE(std::isnan(curve[4].across));       // only 80 sequences
  EXPECT_TRUE(std::isnan(curve[4].consecutive));  // sequences of 70 tokens
  EXPECT_NEAR(curve[0].active, 0.1, 0.01);
}

}  // namespace
}  // namespace sparsed
