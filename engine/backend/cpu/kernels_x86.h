// Pieces shared by the x86 vector traits (kernels_avx512.cc, kernels_avx2.cc). Internal linkage
// on purpose: each including file is compiled for its own instruction set, and a shared inline
// symbol could be resolved to the AVX-512 encoding on a CPU without it.
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "engine/common/dtype.h"

namespace sparsed::cpu {
namespace {

// The last steps of every horizontal sum, in a fixed order: 4 lanes → 2 → 1.
inline float HSum4(__m128 s) {
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 0x55));
  return _mm_cvtss_f32(s);
}

// A block's fp16 scale as fp32 (F16C; exact), for the x86 vector traits.
struct X86Scale {
  static float Scale(const uint8_t* block) {
    unsigned short h;
    __builtin_memcpy(&h, block, sizeof h);
    return _cvtsh_ss(h);
  }
};

// The quantized dot's codes and accumulators (kernels_blocked.h, dot_rows_q) on 256-bit
// integer vectors: w·x per block by the sign trick (|x| as unsigned bytes times w with x's sign,
// adjacent pairs summed to int16 — at most 2·127·128 = 32512, no saturation — then to int32), the
// eight int32 lanes converted to float and accumulated with one fused multiply-add by the two
// scales' product. R and NT: the tiles (rows × tokens) for the register file at hand.
template <int kNarrowRows, int kWideRows, int kWideToks>
struct QuantDotX86 {
  using Acc = __m256;
  using Codes = __m256i;
  static constexpr int kRowsNarrow = kNarrowRows, kRows = kWideRows, kToks = kWideToks;
  static Acc Zero() { return _mm256_setzero_ps(); }
  static float Scale(const uint8_t* block) { return X86Scale::Scale(block); }
  template <DType D>
  static Codes LoadW(const uint8_t* block) {
    if constexpr (D == DType::kQ8_0) {
      return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + 2));
    } else {
      // Byte j holds code j (low nibble) and code j + 16 (high): low lane ← low nibbles.
      const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(block + 2));
      const __m256i both = _mm256_set_m128i(_mm_srli_epi16(b, 4), b);
      return _mm256_sub_epi8(_mm256_and_si256(both, _mm256_set1_epi8(0x0f)), _mm256_set1_epi8(8));
    }
  }
  static Codes LoadX(const int8_t* p) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  }
  static Codes Abs(Codes x) { return _mm256_sign_epi8(x, x); }
  static Acc Fma(Codes w, Codes x, Codes ax, float s, Acc acc) {
    const __m256i p16 = _mm256_maddubs_epi16(ax, _mm256_sign_epi8(w, x));
    const __m256i p32 = _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(p32), _mm256_set1_ps(s), acc);
  }
  // Fixed order: halves, then the 4-lane tree.
  static float HSum(Acc v) {
    return HSum4(_mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1)));
  }
};

struct X86Prefetch {
  static void Prefetch(const void* p) { _mm_prefetch(static_cast<const char*>(p), _MM_HINT_T0); }
};

}  // namespace
}  // namespace sparsed::cpu
