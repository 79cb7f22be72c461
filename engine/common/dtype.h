// Element types of weights and their conversions to fp32.
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>

#include "absl/strings/string_view.h"

namespace sparsed {

// kQ8_0 and kQ4_0 are block-quantized (the layouts of GGUF's Q8_0 and Q4_0): a row is a
// sequence of blocks of kQuantBlock weights, each an fp16 scale d followed by the block's codes —
// 32 int8 q (weight = q·d) for kQ8_0; 16 bytes of 4-bit codes for kQ4_0, byte j holding weight j
// in its low nibble and weight j + 16 in its high nibble (weight = (nibble − 8)·d). A row of a
// block type has a multiple of kQuantBlock elements, so every row (and every block) is
// independently addressable.
enum class DType : uint8_t { kF32, kBF16, kF16, kQ8_0, kQ4_0 };

constexpr int64_t kQuantBlock = 32;
constexpr bool IsBlockQuantized(DType t) { return t == DType::kQ8_0 || t == DType::kQ4_0; }
// Bytes of one block of a block-quantized type.
constexpr size_t QuantBlockBytes(DType t) { return t == DType::kQ8_0 ? 34 : 18; }

// Size of one element in bytes, for the element types (kF32, kBF16, kF16); block types have no
// per-element size (use SpanBytes).
constexpr size_t DTypeSize(DType t) { return t == DType::kF32 ? 4 : 2; }
// Bytes of n consecutive elements of a row, starting at its first element or (block types) at a
// block boundary; for block types n must be a multiple of kQuantBlock.
constexpr size_t SpanBytes(DType t, int64_t n) {
  return IsBlockQuantized(t) ? static_cast<size_t>(n / kQuantBlock) * QuantBlockBytes(t)
                             : static_cast<size_t>(n) * DTypeSize(t);
}
// Safetensors spelling ("F32", "BF16", "F16"); GGUF's for block types ("Q8_0", "Q4_0").
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

// Code j < kQuantBlock of one block of a block-quantized type, signed: q for kQ8_0, nibble − 8
// for kQ4_0. Out of line (not inline): the per-ISA kernel files call it.
int BlockCode(const void* block, DType t, int j);
// Element i of a row of a block-quantized type (the row starting at `data`) as fp32: code × the
// block's scale, exact (a code of at most 8 significant bits times an fp16 scale fits fp32's
// mantissa).
float BlockElementAsF32(const void* data, DType t, size_t i);

// Reads element `i` of a buffer (a row, for block types) of type `t` as fp32.
inline float LoadAsF32(const void* data, DType t, size_t i) {
  switch (t) {
    case DType::kF32:
      return static_cast<const float*>(data)[i];
    case DType::kBF16:
      return Bf16ToF32(static_cast<const uint16_t*>(data)[i]);
    case DType::kF16:
      return F16ToF32(static_cast<const uint16_t*>(data)[i]);
    case DType::kQ8_0:
    case DType::kQ4_0:
      return BlockElementAsF32(data, t, i);
  }
  return 0.f;
}

// Writes `v` as element `i` of a buffer of an element type (not a block type: see quantize.h).
void StoreFromF32(void* data, DType t, size_t i, float v);

}  // namespace sparsed
