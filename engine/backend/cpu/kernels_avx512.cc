// Kernels for AVX-512 (F, BW, VL) with FMA and F16C: 16-float registers, 32 of them, so the dot
// tile is 4 weight rows × 6 tokens (24 accumulators; 8 rows × up to 2 tokens for decode) and the
// axpy tile 6 tokens × 64 columns.
// Partial vectors use masked loads and stores. The row-panel dot is the AVX2 one (kernels_x86.h:
// a panel is eight rows, one 256-bit vector of int32 lanes).
// GCC 12 reports the deliberately undefined source operands inside its own AVX-512 intrinsic
// headers (_mm512_undefined_*) as maybe-uninitialized; nothing here reads an undefined lane.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <cstring>

#include "engine/backend/cpu/kernels.h"
#include "engine/backend/cpu/kernels_blocked.h"
#include "engine/backend/cpu/kernels_x86.h"

namespace sparsed::cpu::avx512 {
namespace {

struct V : X86Prefetch, X86Scale {
  using Reg = __m512;
  static constexpr int kLanes = 16;
  static constexpr int kDotRows = 4, kDotToks = 6;
  static constexpr int kDotRowsNarrow = 8, kDotToksNarrow = 2;
  static constexpr int kAxToks = 6, kAxVecs = 4;

  static __mmask16 Mask(int n) { return static_cast<__mmask16>((1u << n) - 1); }
  static Reg Zero() { return _mm512_setzero_ps(); }
  static Reg LoadX(const float* p) { return _mm512_loadu_ps(p); }
  static Reg LoadXPart(const float* p, int n) { return _mm512_maskz_loadu_ps(Mask(n), p); }
  template <DType D>
  static Reg LoadW(const void* base, int64_t k) {
    if constexpr (IsBlockQuantized(D)) {
      return blocked::DequantVector<V, D>(base, k);
    } else if constexpr (D == DType::kF32) {
      return _mm512_loadu_ps(static_cast<const float*>(base) + k);
    } else {
      const __m256i h = _mm256_loadu_si256(
          reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(base) + k));
      return Widen<D>(h);
    }
  }
  template <DType D>
  static Reg LoadWPart(const void* base, int64_t k, int n) {
    if constexpr (IsBlockQuantized(D)) {
      return blocked::DequantPart<V, D>(base, k, n);
    } else if constexpr (D == DType::kF32) {
      return _mm512_maskz_loadu_ps(Mask(n), static_cast<const float*>(base) + k);
    } else {
      return Widen<D>(_mm256_maskz_loadu_epi16(Mask(n), static_cast<const uint16_t*>(base) + k));
    }
  }
  // Codes j … j + 15 of a block (j = 0 or 16) as floats: q for Q8_0, nibble − 8 for Q4_0.
  template <DType D>
  static Reg Codes(const uint8_t* block, int j) {
    __m512i q;
    if constexpr (D == DType::kQ8_0) {
      q = _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(block + 2 + j)));
    } else {
      __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(block + 2));
      if (j != 0) b = _mm_srli_epi16(b, 4);
      b = _mm_and_si128(b, _mm_set1_epi8(0x0f));
      q = _mm512_sub_epi32(_mm512_cvtepu8_epi32(b), _mm512_set1_epi32(8));
    }
    return _mm512_cvtepi32_ps(q);
  }
  static Reg Mul(Reg a, Reg b) { return _mm512_mul_ps(a, b); }
  template <DType D>
  static Reg Widen(__m256i h) {
    if constexpr (D == DType::kBF16) {
      return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    } else {
      return _mm512_cvtph_ps(h);
    }
  }
  static Reg Fma(Reg a, Reg b, Reg c) { return _mm512_fmadd_ps(a, b, c); }
  static Reg Bcast(float f) { return _mm512_set1_ps(f); }
  static void Store(float* p, Reg r) { _mm512_storeu_ps(p, r); }
  static void StorePart(float* p, Reg r, int n) { _mm512_mask_storeu_ps(p, Mask(n), r); }
  // Fixed order: halves, then quarters, then the 4-lane tree of 128-bit sums.
  static float HSum(Reg v) {
    const __m256 s8 =
        _mm256_add_ps(_mm512_castps512_ps256(v),
                      _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
    return HSum4(_mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1)));
  }
};

}  // namespace

const KernelTable& Table() {
  static const KernelTable t{"avx512", &blocked::DotRowsAny<V>,
                             &blocked::QuantDotRowsAny<QuantDotX86<8, 4, 4>>,
                             &blocked::PanelDotAny<PanelDotX86>, &blocked::AxpyRowsAny<V>};
  return t;
}

}  // namespace sparsed::cpu::avx512
