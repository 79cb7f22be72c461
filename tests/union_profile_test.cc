// The union-ratio profile on masks with known answers.
#include "tools/union_profile.h"

#include <gtest/gtest.h>

#include <algorithm>
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

TEST(UnionProfileTest, BlockUnionCountsWholeAlignedBlocks) {
  LayerMasks m(100);  // blocks of 16: six full blocks and one of four neurons
  std::vector<uint8_t> a(100, 0), b(100, 0);
  a[0] = a[15] = 1;   // block 0 of 16, blocks 0 and 1 of 8
  a[99] = 1;          // the last, partial block
  b[16] = b[70] = 1;  // blocks 1 and 4 of 16 (70 lies in the second word)
  m.Add(0, a.data());
  m.Add(1, b.data());
  EXPECT_DOUBLE_EQ(m.BlockUnionRatio({0}, 1), m.UnionRatio({0}));
  EXPECT_DOUBLE_EQ(m.BlockUnionRatio({0}, 16), 2.0 / 7);
  EXPECT_DOUBLE_EQ(m.BlockUnionRatio({0}, 8), 3.0 / 13);
  EXPECT_DOUBLE_EQ(m.BlockUnionRatio({0, 1}, 16), 4.0 / 7);
  EXPECT_DOUBLE_EQ(m.BlockUnionRatio({0, 1}, 64), 1.0);
  EXPECT_DOUBLE_EQ(m.BlockUnionRatio({1}, 64), 2.0 / 2);
  EXPECT_DOUBLE_EQ(m.BlockUnionRatio({}, 32), 0.0);
}

// Two families of masks, interleaved in arrival order: grouping by similarity puts each family
// in its own tile, whose union is one family's neurons; arrival-order tiles mix them.
TEST(UnionProfileTest, SimilarityGroupingSeparatesMaskFamilies) {
  const int F = 256, words = F / 64;
  std::vector<std::vector<uint64_t>> bits;
  for (int i = 0; i < 8; ++i) {
    std::vector<uint64_t> w(words, 0);
    const int base = (i % 2) * 128;  // family 0: neurons 0-127, family 1: 128-255
    for (int k = 0; k < 8; ++k) {    // eight neurons the family shares, one of the token's own
      const int n = base + k * 16;
      w[n / 64] |= uint64_t{1} << (n % 64);
    }
    const int own = base + 1 + i;
    w[own / 64] |= uint64_t{1} << (own % 64);
    bits.push_back(w);
  }
  std::vector<const uint64_t*> masks;
  for (const auto& w : bits) masks.push_back(w.data());
  const auto tiles = GroupBySimilarity(masks, words, 4);
  ASSERT_EQ(tiles.size(), 2u);
  std::vector<int> seen;
  for (const auto& t : tiles) {
    ASSERT_EQ(t.size(), 4u);
    for (int i : t) {
      EXPECT_EQ(i % 2, t[0] % 2) << "tile mixes the families";
      seen.push_back(i);
    }
  }
  std::sort(seen.begin(), seen.end());
  EXPECT_EQ(seen, (std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7}));
  // A last, short tile takes what is left.
  EXPECT_EQ(GroupBySimilarity(masks, words, 3).back().size(), 2u);
}

// Sequences whose next mask repeats the previous one, two families of sequences: tiles grouped
// by the previous masks have a smaller union than arrival-order tiles; a tile of one sequence
// has that sequence's own mask.
TEST(UnionProfileTest, TilingCurveRewardsPredictableMasks) {
  const int F = 512;
  LayerMasks m(F);
  std::mt19937_64 rng(11);
  std::vector<uint8_t> mask(F);
  for (int seq = 0; seq < 64; ++seq) {
    std::fill(mask.begin(), mask.end(), 0);
    const int base = (seq % 2) * 256;
    for (int k = 0; k < 16; ++k) mask[base + rng() % 256] = 1;
    for (int t = 0; t < 20; ++t) m.Add(seq, mask.data());
  }
  const auto curve = TilingCurve(m, {8, 32, 64, 128}, 8, 50, 5);
  ASSERT_EQ(curve.size(), 3u);  // 128 > 64 sequences: skipped
  for (const TilingPoint& p : curve) {
    EXPECT_EQ(p.tile, 8);
    if (p.batch > p.tile) {
      EXPECT_LT(p.similar[0], p.arrival[0]) << "B=" << p.batch;
    }
    EXPECT_NEAR(p.by_sequence[0], m.UnionRatio({0}), 0.02);
    EXPECT_LE(p.arrival[0], p.arrival[2] + 1e-12);  // blocks never read less than neurons
    EXPECT_GE(p.group_us, 0.0);
  }
  EXPECT_NEAR(curve[0].similar[0], curve[0].arrival[0], 1e-12);  // one tile: nothing to choose
}

}  // namespace
}  // namespace sparsed
