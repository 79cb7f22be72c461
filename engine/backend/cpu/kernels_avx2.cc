// Kernels for AVX2 + FMA + F16C, written with intrinsics: 8-float registers, 16 of them, so the
// dot tile is 2 weight rows × 6 tokens and the axpy tile 6 tokens × 16 columns.
#include <immintrin.h>

#include <cstring>

#include "engine/backend/cpu/kernels.h"
#include "engine/backend/cpu/kernels_blocked.h"
#include "engine/backend/cpu/kernels_x86.h"

namespace sparsed::cpu::avx2 {
namespace {

struct V : X86Prefetch, X86Scale {
  using Reg = __m256;
  static constexpr int kLanes = 8;
  static constexpr int kDotRows = 2, kDotToks = 6;
  static constexpr int kDotRowsNarrow = 4, kDotToksNarrow = 1;
  static constexpr int kAxToks = 6, kAxVecs = 2;

  static __m256i Mask(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static Reg Zero() { return _mm256_setzero_ps(); }
  static Reg LoadX(const float* p) { return _mm256_loadu_ps(p); }
  static Reg LoadXPart(const float* p, int n) { return _mm256_maskload_ps(p, Mask(n)); }
  template <DType D>
  static Reg LoadW(const void* base, int64_t k) {
    if constexpr (IsBlockQuantized(D)) {
      return blocked::DequantVector<V, D>(base, k);
    } else if constexpr (D == DType::kF32) {
      return _mm256_loadu_ps(static_cast<const float*>(base) + k);
    } else {
      return Widen<D>(_mm_loadu_si128(
          reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(base) + k)));
    }
  }
  template <DType D>
  static Reg LoadWPart(const void* base, int64_t k, int n) {
    if constexpr (IsBlockQuantized(D)) {
      return blocked::DequantPart<V, D>(base, k, n);
    } else if constexpr (D == DType::kF32) {
      return _mm256_maskload_ps(static_cast<const float*>(base) + k, Mask(n));
    } else {
      alignas(16) uint16_t tmp[8] = {};
      std::memcpy(tmp, static_cast<const uint16_t*>(base) + k, static_cast<size_t>(n) * 2);
      return Widen<D>(_mm_load_si128(reinterpret_cast<const __m128i*>(tmp)));
    }
  }
  // Codes j … j + 7 of a block (j a multiple of 8) as floats: q for Q8_0, nibble − 8 for Q4_0.
  template <DType D>
  static Reg Codes(const uint8_t* block, int j) {
    __m256i q;
    if constexpr (D == DType::kQ8_0) {
      q = _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(block + 2 + j)));
    } else {
      __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(block + 2 + (j & 15)));
      if (j >= 16) b = _mm_srli_epi16(b, 4);
      b = _mm_and_si128(b, _mm_set1_epi8(0x0f));
      q = _mm256_sub_epi32(_mm256_cvtepu8_epi32(b), _mm256_set1_epi32(8));
    }
    return _mm256_cvtepi32_ps(q);
  }
  static Reg Mul(Reg a, Reg b) { return _mm256_mul_ps(a, b); }
  template <DType D>
  static Reg Widen(__m128i h) {
    if constexpr (D == DType::kBF16) {
      return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    } else {
      return _mm256_cvtph_ps(h);
    }
  }
  static Reg Fma(Reg a, Reg b, Reg c) { return _mm256_fmadd_ps(a, b, c); }
  static Reg Bcast(float f) { return _mm256_set1_ps(f); }
  static void Store(float* p, Reg r) { _mm256_storeu_ps(p, r); }
  static void StorePart(float* p, Reg r, int n) { _mm256_maskstore_ps(p, Mask(n), r); }
  // Fixed order: halves, then the 4-lane tree.
  static float HSum(Reg v) {
    return HSum4(_mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1)));
  }
};

}  // namespace

const KernelTable& Table() {
  static const KernelTable t{"avx2", &blocked::DotRowsAny<V>,
                             &blocked::QuantDotRowsAny<QuantDotX86<4, 2, 4>>,
                             &blocked::PanelDotAny<PanelDotX86>, &blocked::AxpyRowsAny<V>};
  return t;
}

}  // namespace sparsed::cpu::avx2
