// Pieces shared by the x86 vector traits (kernels_avx512.cc, kernels_avx2.cc). Internal linkage
// on purpose: each including file is compiled for its own instruction set, and a shared inline
// symbol could be resolved to the AVX-512 encoding on a CPU without it.
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "engine/common/dtype.h"
#include "engine/common/panel.h"

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

// The row-panel dot (kernels_blocked.h, dot_panels_q) on 256-bit integer vectors: one panel
// block's chunk c (four codes of each of eight rows, panel.h) against token codes 4c … 4c + 3
// broadcast to every lane gives each row's four-term dot in its 32-bit lane.
//   Q4_0: the unsigned nibbles u = code + 8 times the signed token codes (maddubs; |pair sum| ≤
//   2·15·128), eight chunks added in int16 (≤ 30720, no saturation), then the pairs to int32
//   and 8 · Σ codes subtracted: Σ code · x exactly.
//   Q8_0: the sign trick of QuantDotX86 per chunk (pair sums up to 32512 do not add in int16),
//   summed in int32.
// Each lane's block dot then goes to fp32 and one fused multiply-add by dw · dx per block.
struct PanelDotX86 {
  static constexpr int kToks = 4;
  template <DType D, int NT>
  static void Tile(const int8_t* const* xq, const float* const* xd, const int32_t* const* xs,
                   const uint8_t* panel, int64_t nb, float* const* yr, int nrows) {
    constexpr int64_t pbb = static_cast<int64_t>(PanelBlockBytes(D));
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[NT];
    for (int t = 0; t < NT; ++t) acc[t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* blk = panel + b * pbb;
      const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk)));
      const uint8_t* codes = blk + 16;
      __m256i sum[NT];
      if constexpr (D == DType::kQ4_0) {
        const __m256i low = _mm256_set1_epi8(0x0f);
        for (int t = 0; t < NT; ++t) sum[t] = _mm256_setzero_si256();
        for (int g = 0; g < 4; ++g) {
          const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes + 32 * g));
          const __m256i lo = _mm256_and_si256(v, low);
          const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
          for (int t = 0; t < NT; ++t) {
            const int8_t* x = xq[t] + b * kQuantBlock;
            sum[t] = _mm256_add_epi16(sum[t], _mm256_maddubs_epi16(lo, Bcast4(x + 4 * g)));
            sum[t] = _mm256_add_epi16(sum[t], _mm256_maddubs_epi16(hi, Bcast4(x + 16 + 4 * g)));
          }
        }
        for (int t = 0; t < NT; ++t)
          sum[t] =
              _mm256_sub_epi32(_mm256_madd_epi16(sum[t], ones), _mm256_set1_epi32(8 * xs[t][b]));
      } else {
        for (int t = 0; t < NT; ++t) sum[t] = _mm256_setzero_si256();
        for (int c = 0; c < 8; ++c) {
          const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes + 32 * c));
          for (int t = 0; t < NT; ++t) {
            const __m256i x = Bcast4(xq[t] + b * kQuantBlock + 4 * c);
            const __m256i p16 =
                _mm256_maddubs_epi16(_mm256_sign_epi8(x, x), _mm256_sign_epi8(v, x));
            sum[t] = _mm256_add_epi32(sum[t], _mm256_madd_epi16(p16, ones));
          }
        }
      }
      for (int t = 0; t < NT; ++t)
        acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum[t]),
                                 _mm256_mul_ps(dw, _mm256_set1_ps(xd[t][b])), acc[t]);
    }
    for (int t = 0; t < NT; ++t) {
      if (nrows == 8) {
        _mm256_storeu_ps(yr[t], acc[t]);
      } else {
        alignas(32) float tmp[8];
        _mm256_store_ps(tmp, acc[t]);
        for (int j = 0; j < nrows; ++j) yr[t][j] = tmp[j];
      }
    }
  }

 private:
  // Four token codes repeated in every 32-bit lane.
  static __m256i Bcast4(const int8_t* p) {
    int32_t v;
    __builtin_memcpy(&v, p, sizeof v);
    return _mm256_set1_epi32(v);
  }
};

struct X86Prefetch {
  static void Prefetch(const void* p) { _mm_prefetch(static_cast<const char*>(p), _MM_HINT_T0); }
};

}  // namespace
}  // namespace sparsed::cpu
