#include "engine/common/dtype.h"

#include <cmath>

#include "absl/strings/string_view.h"

namespace sparsed {

absl::string_view DTypeName(DType t) {
  switch (t) {
    case DType::kF32:
      return "F32";
    case DType::kBF16:
      return "BF16";
    case DType::kF16:
      return "F16";
    case DType::kQ8_0:
      return "Q8_0";
    case DType::kQ4_0:
      return "Q4_0";
  }
  return "?";
}

std::optional<DType> ParseSafetensorsDType(absl::string_view s) {
  if (s == "F32") return DType::kF32;
  if (s == "BF16") return DType::kBF16;
  if (s == "F16") return DType::kF16;
  return std::nullopt;
}

std::optional<DType> ParseDTypeName(absl::string_view s) {
  if (s == "float32" || s == "fp32" || s == "f32") return DType::kF32;
  if (s == "bfloat16" || s == "bf16") return DType::kBF16;
  if (s == "float16" || s == "fp16" || s == "f16") return DType::kF16;
  return std::nullopt;
}

float F16ToF32(uint16_t h) {
  const uint32_t sign = (h >> 15) & 1u;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t mant = h & 0x3ffu;
  float v;
  if (exp == 0) {
    v = std::ldexp(static_cast<float>(mant), -24);
  } else if (exp == 31) {
    v = mant ? NAN : INFINITY;
  } else {
    v = std::ldexp(static_cast<float>(mant | 0x400u), static_cast<int>(exp) - 25);
  }
  return sign ? -v : v;
}

int BlockCode(const void* block, DType t, int j) {
  const auto* codes = static_cast<const uint8_t*>(block) + 2;
  if (t == DType::kQ8_0) return static_cast<int8_t>(codes[j]);
  const uint8_t byte = codes[j % 16];
  return (j < 16 ? (byte & 0x0f) : (byte >> 4)) - 8;
}

float BlockElementAsF32(const void* data, DType t, size_t i) {
  const auto* block = static_cast<const uint8_t*>(data) + (i / kQuantBlock) * QuantBlockBytes(t);
  uint16_t scale;
  std::memcpy(&scale, block, sizeof scale);
  return static_cast<float>(BlockCode(block, t, static_cast<int>(i % kQuantBlock))) *
         F16ToF32(scale);
}

uint16_t F32ToF16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, sizeof x);
  const uint32_t sign = (x >> 16) & 0x8000u;
  x &= 0x7fffffffu;
  if (x > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);   // NaN
  if (x >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // overflow -> inf
  if (x < 0x33000001u) return static_cast<uint16_t>(sign);             // underflow -> 0
  const int exp = static_cast<int>(x >> 23) - 127;
  uint32_t mant = (x & 0x7fffffu) | 0x800000u;
  if (exp < -14) {  // subnormal half
    const int shift = -exp - 14 + 13;
    uint32_t half = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1);
    const uint32_t mid = 1u << (shift - 1);
    if (rem > mid || (rem == mid && (half & 1u))) ++half;
    return static_cast<uint16_t>(sign | half);
  }
  uint32_t half = (static_cast<uint32_t>(exp + 15) << 10) | ((mant >> 13) & 0x3ffu);
  const uint32_t rem = mant & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (half & 1u))) ++half;
  return static_cast<uint16_t>(sign | half);
}

void StoreFromF32(void* data, DType t, size_t i, float v) {
  switch (t) {
    case DType::kF32:
      static_cast<float*>(data)[i] = v;
      break;
    case DType::kBF16:
      static_cast<uint16_t*>(data)[i] = F32ToBf16(v);
      break;
    case DType::kF16:
      static_cast<uint16_t*>(data)[i] = F32ToF16(v);
      break;
    case DType::kQ8_0:
    case DType::kQ4_0:
      break;  // a block's elements share a scale: written a row at a time (quantize.h)
  }
}

}  // namespace sparsed
