#include "engine/common/dtype.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

namespace sparsed {
namespace {

TEST(DType, Bf16RoundTripWithinHalfUlp) {
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0.f, 10.f);
  for (int i = 0; i < 10000; ++i) {
    const float v = nd(rng);
    const float r = Bf16ToF32(F32ToBf16(v));
    EXPECT_LE(std::fabs(r - v), std::fabs(v) * (1.f / 256.f)) << v;
  }
  EXPECT_EQ(Bf16ToF32(F32ToBf16(1.0f)), 1.0f);
  EXPECT_TRUE(std::isnan(Bf16ToF32(F32ToBf16(NAN))));
}

TEST(DType, F16RoundTripAndSpecials) {
  std::mt19937 rng(2);
  std::normal_distribution<float> nd(0.f, 100.f);
  for (int i = 0; i < 10000; ++i) {
    const float v = nd(rng);
    const float r = F16ToF32(F32ToF16(v));
    EXPECT_LE(std::fabs(r - v), std::fabs(v) * (1.f / 1024.f) + 1e-7f) << v;
  }
  EXPECT_EQ(F16ToF32(F32ToF16(65504.f)), 65504.f);
  EXPECT_TRUE(std::isinf(F16ToF32(F32ToF16(1e6f))));
  EXPECT_EQ(F16ToF32(F32ToF16(0.f)), 0.f);
  EXPECT_NEAR(F16ToF32(F32ToF16(1e-6f)), 1e-6f, 1e-7f);  // subnormal
  // Every half value survives f16 -> f32 -> f16 exactly.
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = F16ToF32(static_cast<uint16_t>(h));
    if (std::isnan(f)) continue;
    EXPECT_EQ(F32ToF16(f), h) << h;
  }
}

TEST(DType, ParsesNames) {
  EXPECT_EQ(ParseSafetensorsDType("BF16"), DType::kBF16);
  EXPECT_EQ(ParseSafetensorsDType("I64"), std::nullopt);
  EXPECT_EQ(ParseDTypeName("fp16"), DType::kF16);
  EXPECT_EQ(ParseDTypeName("float32"), DType::kF32);
  EXPECT_EQ(ParseDTypeName("int8"), std::nullopt);
}

}  // namespace
}  // namespace sparsed
