// Block quantization (Q8_0, Q4_0): the GGUF byte layout, rounding and its error bound, exact
// dequantization, load-time conversion of a model (errors name the tensor), and the quantized
// model's fidelity to the one it was converted from.
#include "engine/common/quantize.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "engine/common/panel.h"
#include "engine/model/weight_format.h"
#include "tests/op_test_util.h"
#include "tests/reference/reference.h"
#include "tests/reference/test_models.h"

namespace sparsed {
namespace {

float Scale(const uint8_t* block) {
  uint16_t h;
  std::memcpy(&h, block, sizeof h);
  return F16ToF32(h);
}

TEST(Quantize, Q8_0LayoutAndRounding) {
  std::vector<float> x(32);
  for (int j = 0; j < 32; ++j) x[j] = static_cast<float>(j - 16);  // max |x| = 16
  std::vector<uint8_t> b(SpanBytes(DType::kQ8_0, 32));
  ASSERT_EQ(b.size(), 34u);
  ASSERT_TRUE(QuantizeRow(x.data(), 32, DType::kQ8_0, b.data()));
  EXPECT_EQ(Scale(b.data()), F16ToF32(F32ToF16(16.f / 127.f)));
  for (int j = 0; j < 32; ++j) {
    const int q = static_cast<int8_t>(b[2 + j]);
    EXPECT_EQ(q, static_cast<int>(std::round((j - 16) * (127.f / 16.f)))) << j;
    EXPECT_EQ(LoadAsF32(b.data(), DType::kQ8_0, j), static_cast<float>(q) * Scale(b.data()));
  }
  EXPECT_EQ(static_cast<int8_t>(b[2]), -127);  // the largest magnitude maps to ±127
}

TEST(Quantize, Q4_0LayoutAndRounding) {
  std::vector<float> x(32);
  for (int j = 0; j < 32; ++j) x[j] = static_cast<float>(j - 16);  // m = −16 → d = 2
  std::vector<uint8_t> b(SpanBytes(DType::kQ4_0, 32));
  ASSERT_EQ(b.size(), 18u);
  ASSERT_TRUE(QuantizeRow(x.data(), 32, DType::kQ4_0, b.data()));
  EXPECT_EQ(Scale(b.data()), 2.f);
  for (int j = 0; j < 16; ++j) {
    // code = min(15, ⌊x / 2 + 8.5⌋); weight j in the low nibble of byte j, j + 16 in the high.
    const int lo = std::min(15, static_cast<int>((j - 16) / 2.f + 8.5f));
    const int hi = std::min(15, static_cast<int>(j / 2.f + 8.5f));
    EXPECT_EQ(b[2 + j], lo | (hi << 4)) << j;
    EXPECT_EQ(LoadAsF32(b.data(), DType::kQ4_0, j), (lo - 8) * 2.f);
    EXPECT_EQ(LoadAsF32(b.data(), DType::kQ4_0, j + 16), (hi - 8) * 2.f);
  }
  EXPECT_EQ(b[2] & 0x0f, 0);  // the largest magnitude (−16) is code 0: −8 · d
}

// Random rows of several magnitudes: every weight within its block's rounding bound — half a
// step for Q8_0, one step for Q4_0 (the positive end is clipped at code 15 when the largest
// magnitude is negative) — plus the fp16 rounding of the scale: relative 2⁻¹¹, but absolute
// 2⁻²⁵ below fp16's normal range (scales under 6.1e-5, blocks of weights under ~8e-3 in Q8_0),
// where the format itself loses relative precision.
TEST(Quantize, ErrorWithinTheBlockBound) {
  std::mt19937_64 rng(1);
  for (DType t : {DType::kQ8_0, DType::kQ4_0}) {
    for (float scale : {1e-3f, 0.02f, 1.f, 300.f}) {
      const int n = 32 * 40;
      const std::vector<float> x = RandomVec(n, rng, scale);
      std::vector<uint8_t> q(SpanBytes(t, n));
      std::vector<float> back(n);
      ASSERT_TRUE(QuantizeRow(x.data(), n, t, q.data()));
      DequantizeRow(q.data(), t, n, back.data());
      for (int b = 0; b < n / 32; ++b) {
        const float d = std::fabs(Scale(q.data() + b * QuantBlockBytes(t)));
        const float scale_err = std::max(d / 2048, std::ldexp(1.f, -25));
        const float bound = t == DType::kQ8_0 ? 0.5f * d + 127 * scale_err : d + 8 * scale_err;
        for (int j = b * 32; j < b * 32 + 32; ++j)
          ASSERT_LE(std::fabs(back[j] - x[j]), bound * 1.0001f)
              << DTypeName(t) << " scale " << scale << " element " << j;
      }
    }
  }
}

TEST(Quantize, ZerosNonFiniteAndElementTypes) {
  std::vector<float> z(64, 0.f), back(64, 1.f);
  for (DType t : {DType::kQ8_0, DType::kQ4_0}) {
    std::vector<uint8_t> q(SpanBytes(t, 64), 0xff);
    ASSERT_TRUE(QuantizeRow(z.data(), 64, t, q.data()));
    DequantizeRow(q.data(), t, 64, back.data());
    EXPECT_EQ(back, z) << DTypeName(t);
    std::vector<float> bad = z;
    bad[40] = NAN;
    EXPECT_FALSE(QuantizeRow(bad.data(), 64, t, q.data()));
    bad[40] = -INFINITY;
    EXPECT_FALSE(QuantizeRow(bad.data(), 64, t, q.data()));
  }
  // Element types round as their stores do.
  const std::vector<float> x = {1.f, -2.5f, 3.14159f};
  std::vector<uint16_t> h(3);
  ASSERT_TRUE(QuantizeRow(x.data(), 3, DType::kBF16, h.data()));
  EXPECT_EQ(h[2], F32ToBf16(3.14159f));
}

TEST(WeightFormat, ParsesTheFlagSpellings) {
  EXPECT_EQ(*ParseWeightFormat("checkpoint"), std::nullopt);
  EXPECT_EQ(*ParseWeightFormat("q8_0"), DType::kQ8_0);
  EXPECT_EQ(*ParseWeightFormat("q4_0"), DType::kQ4_0);
  EXPECT_EQ(*ParseWeightFormat("bf16"), DType::kBF16);
  const auto bad = ParseWeightFormat("q4_k");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("q4_k"), std::string::npos);
  for (auto t : {std::optional<DType>(), std::optional<DType>(DType::kQ8_0),
                 std::optional<DType>(DType::kQ4_0), std::optional<DType>(DType::kBF16)})
    EXPECT_EQ(*ParseWeightFormat(WeightFormatName(t)), t);
}

// A model of one layer, built by hand: the conversion touches every linear weight, keeps the
// embedding, gives a tied head its own copy, and names a tensor it cannot quantize.
TEST(WeightFormat, ConvertsEveryLinearWeightAndNamesWhatItCannot) {
  std::mt19937_64 rng(3);
  std::vector<OwnedMatrix> keep;
  auto mat = [&](int rows, int cols) {
    keep.push_back(RandomMatrix(rows, cols, DType::kBF16, rng));
    return keep.back().m;
  };
  keep.reserve(16);
  ModelWeights w;
  w.embed = mat(50, 64);
  w.lm_head = w.embed;  // tied
  LayerWeights l;
  l.q = mat(64, 64), l.k = mat(32, 64), l.v = mat(32, 64), l.o = mat(64, 64);
  l.gate = mat(96, 64), l.up = mat(96, 64), l.down_t = mat(96, 64);
  w.layers.push_back(l);
  const ModelWeights before = w;
  int calls = 0;
  ASSERT_TRUE(ConvertLinearWeights(
                  DType::kQ8_0, 2, /*release_mapped_pages=*/false,
                  [&](int, int, const std::string&) { ++calls; }, &w)
                  .ok());
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(w.embed.dtype, DType::kBF16);
  EXPECT_EQ(w.embed.data, before.embed.data);
  for (const Matrix* m :
       {&w.lm_head, &w.layers[0].q, &w.layers[0].k, &w.layers[0].v, &w.layers[0].o,
        &w.layers[0].gate, &w.layers[0].up, &w.layers[0].down_t}) {
    EXPECT_EQ(m->dtype, DType::kQ8_0);
    EXPECT_NE(m->owner, nullptr);
  }
  // Each row is the source row quantized.
  std::vector<float> row(64);
  DequantizeRow(before.layers[0].up.Row(7), DType::kBF16, 64, row.data());
  std::vector<uint8_t> expect(SpanBytes(DType::kQ8_0, 64));
  ASSERT_TRUE(QuantizeRow(row.data(), 64, DType::kQ8_0, expect.data()));
  EXPECT_EQ(0, std::memcmp(expect.data(), w.layers[0].up.Row(7), expect.size()));
  // The dense products' matrices are stored in row panels (panel.h) holding the same values;
  // the union-gathered up and down stay row-major.
  for (const Matrix* m : {&w.lm_head, &w.layers[0].q, &w.layers[0].k, &w.layers[0].v,
                          &w.layers[0].o, &w.layers[0].gate})
    EXPECT_TRUE(m->panels);
  EXPECT_FALSE(w.layers[0].up.panels);
  EXPECT_FALSE(w.layers[0].down_t.panels);
  for (int r : {0, 7, 95}) {
    DequantizeRow(before.layers[0].gate.Row(r), DType::kBF16, 64, row.data());
    ASSERT_TRUE(QuantizeRow(row.data(), 64, DType::kQ8_0, expect.data()));
    for (int c = 0; c < 64; ++c)
      EXPECT_EQ(MatrixElementAsF32(w.layers[0].gate, r, c),
                LoadAsF32(expect.data(), DType::kQ8_0, c))
          << r << "," << c;
  }

  ModelWeights odd = before;
  odd.layers[0].o = mat(64, 40);
  const absl::Status s = ConvertLinearWeights(DType::kQ4_0, 1, false, {}, &odd);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("model.layers.0.self_attn.o_proj.weight"), std::string::npos) << s;
  EXPECT_NE(s.message().find("40"), std::string::npos) << s;

  ModelWeights nan = before;
  std::vector<float> v(64 * 64, 0.5f);
  v[64 * 3 + 5] = NAN;
  keep.push_back(EncodeMatrix(v, 64, 64, DType::kF32));
  nan.layers[0].q = keep.back().m;
  const absl::Status sn = ConvertLinearWeights(DType::kQ8_0, 1, false, {}, &nan);
  EXPECT_EQ(sn.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(sn.message().find("q_proj.weight: row 3"), std::string::npos) << sn;
}

// The converted models against the one they came from: the first step's logits move by about
// the weights' quantization error, and an unconvertible model fails at load with the tensor's
// name.
TEST(WeightFormat, QuantizedModelStaysNearItsSource) {
  SyntheticModelSpec s;
  s.preset = "tiny";
  s.model_type = "llama";
  s.activation = "relu";
  s.dtype = DType::kBF16;
  s.active_ratio = 0.15;
  auto dir = testing::MakeModel(s);
  auto base = testing::LoadEngine(dir->path(), "exact");
  auto q8 = testing::LoadEngine(dir->path(), "exact", 256, DType::kQ8_0);
  auto q4 = testing::LoadEngine(dir->path(), "exact", 256, DType::kQ4_0);
  ASSERT_TRUE(base && q8 && q4);
  const std::vector<int32_t> prompt = {1, 17, 300, 5, 99, 7, 8};
  const auto a = testing::GreedyBatch(*base, {prompt}, 1).first_logits[0];
  const double e8 = ref::RelMaxError(testing::GreedyBatch(*q8, {prompt}, 1).first_logits[0], a);
  const double e4 = ref::RelMaxError(testing::GreedyBatch(*q4, {prompt}, 1).first_logits[0], a);
  EXPECT_GT(e8, 0);  // it did convert
  EXPECT_LT(e8, 0.05);
  EXPECT_LT(e8, e4);  // fewer bits, larger error
  EXPECT_LT(e4, 0.5);
  EXPECT_EQ(q8->weights().layers[0].up.dtype, DType::kQ8_0);
  EXPECT_LT(q4->weights().layers[0].up.bytes() * 3, base->weights().layers[0].up.bytes());
}

}  // namespace
}  // namespace sparsed
