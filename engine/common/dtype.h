// Element types of weights and their conversions to fp32.
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>

#include "absl/strings/string_view.h"

namespace sparsed {

enum class DType : uint8_t { kF32, kBF16, kF16 };

// Size of one element in bytes.
constexpr size_t DTypeSize(DType t) { return t == DType::kF32 ? 4 : 2; }
// Safetensors spelling ("F32", "BF16", "F16").
absl::string_view DTypeName(DType t);
// Parses a safetensors dtype string; nullopt for types the engine does not load.
std::optional<DType> ParseSafetensorsDType(absl::string_view s);
// Parses a user/config spelling: "float32"/"fp32", "bfloat16"/"bf16", "float16"/"fp16".
std::optional<DType> ParseDTypeName(absl::string_view s);

inline float Bf16ToF32(uint16_t v) {
  uint32_t bits = static_cast<uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// Round-to-nearest-even; NaN stays NaN.
inline uint16_t F32ToBf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

float F16ToF32(uint16_t h);
uint16_t F32ToF16(float f);

// Reads element `i` of a buffer of type `t` as fp32.
inline float LoadAsF32(const void* data, DType t, size_t i) {
  switch (t) {
    case DType::kF32:
      return static_cast<const float*>(data)[i];
    case DType::kBF16:
      return Bf16ToF32(static_cast<const uint16_t*>(data)[i]);
    case DType::kF16:
      return F16ToF32(static_cast<const uint16_t*>(data)[i]);
  }
  return 0.f;
}

// Writes `v` as element `i` of a buffer of type `t`.
void StoreFromF32(void* data, DType t, size_t i, float v);

}  // namespace sparsed
