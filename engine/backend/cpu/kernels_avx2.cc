// Kernels for AVX2 + FMA + F16C, written with intrinsics (8-float registers): the portable
// vector-extension source spills 16-float vectors to the stack on this instruction set.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "engine/backend/cpu/kernels.h"

namespace sparsed::cpu::avx2 {
namespace {

template <DType D>
inline __m256 Load8(const void* base, int64_t k) {
  if constexpr (D == DType::kF32) {
    return _mm256_loadu_ps(static_cast<const float*>(base) + k);
  } else if constexpr (D == DType::kBF16) {
    const __m128i h =
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(base) + k));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  } else {
    const __m128i h =
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(base) + k));
    return _mm256_cvtph_ps(h);
  }
}

// Horizontal sum in a fixed order.
inline float HSum(__m256 v) {
  const __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
  __m128 s = _mm_add_ps(lo, hi);                  // 4
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));         // 2
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 0x55));  // 1
  return _mm_cvtss_f32(s);
}

// Dots of one weight row with NT token rows. Per token: two accumulators over alternating
// 8-element chunks, a scalar tail, a fixed reduction — the same sequence whatever NT is.
template <DType D, int NT>
inline void DotRowBlock(const float* x, int64_t ldx, const void* wrow, int64_t K, float* y,
                        int64_t ldy) {
  __m256 a0[NT], a1[NT];
  for (int t = 0; t < NT; ++t) a0[t] = a1[t] = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 16 <= K; k += 16) {
    const __m256 w0 = Load8<D>(wrow, k), w1 = Load8<D>(wrow, k + 8);
    for (int t = 0; t < NT; ++t) {
      a0[t] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + t * ldx + k), a0[t]);
      a1[t] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + t * ldx + k + 8), a1[t]);
    }
  }
  for (; k + 8 <= K; k += 8) {
    const __m256 w0 = Load8<D>(wrow, k);
    for (int t = 0; t < NT; ++t)
      a0[t] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + t * ldx + k), a0[t]);
  }
  for (int t = 0; t < NT; ++t) {
    float tail = 0.f;
    for (int64_t kk = k; kk < K; ++kk)
      tail += LoadAsF32(wrow, D, static_cast<size_t>(kk)) * x[t * ldx + kk];
    y[t * ldy] = HSum(_mm256_add_ps(a0[t], a1[t])) + tail;
  }
}

template <DType D>
void DotRowsT(const float* x, int64_t ldx, int T, const void* w, int64_t K, const int32_t* rows,
              int64_t i0, int64_t i1, float* y, int64_t ldy) {
  const size_t row_bytes = static_cast<size_t>(K) * DTypeSize(D);
  for (int64_t i = i0; i < i1; ++i) {
    const int64_t r = rows ? rows[i] : i;
    const void* wrow = static_cast<const char*>(w) + r * row_bytes;
    if (rows && i + 2 < i1) {  // gathered rows defeat the hardware prefetcher
      const char* pn = static_cast<const char*>(w) + rows[i + 2] * row_bytes;
      for (size_t b = 0; b < row_bytes; b += 64) _mm_prefetch(pn + b, _MM_HINT_T0);
    }
    int t = 0;
    for (; t + 4 <= T; t += 4) DotRowBlock<D, 4>(x + t * ldx, ldx, wrow, K, y + t * ldy + i, ldy);
    for (; t < T; ++t) DotRowBlock<D, 1>(x + t * ldx, ldx, wrow, K, y + t * ldy + i, ldy);
  }
}

void DotRows(const float* x, int64_t ldx, int T, const void* w, DType dt, int64_t K,
             const int32_t* rows, int64_t i0, int64_t i1, float* y, int64_t ldy) {
  switch (dt) {
    case DType::kF32:
      return DotRowsT<DType::kF32>(x, ldx, T, w, K, rows, i0, i1, y, ldy);
    case DType::kBF16:
      return DotRowsT<DType::kBF16>(x, ldx, T, w, K, rows, i0, i1, y, ldy);
    case DType::kF16:
      return DotRowsT<DType::kF16>(x, ldx, T, w, K, rows, i0, i1, y, ldy);
  }
}

// Rows whose coefficient is zero for every token are dropped first; the rest are applied four
// at a time per column block, so y is loaded and stored once per four rows. A zero coefficient
// inside a block adds an exact ±0, which leaves y unchanged (weights are finite), so each y
// element is the sum of its token's non-zero terms in row order — as if zeros were skipped.
template <DType D>
void AxpyRowsT(const float* h, int64_t ldh, int T, int64_t n, const int32_t* rows, const void* w,
               int64_t cols, int64_t c0, int64_t c1, float* y, int64_t ldy, bool skip_zero_rows) {
  const size_t es = DTypeSize(D);
  auto row_ptr = [&](int64_t i) {
    const int64_t r = rows ? rows[i] : i;
    return static_cast<const char*>(w) + static_cast<size_t>(r * cols) * es;
  };
  constexpr int64_t kBlock = 256;  // rows examined per batch of the zero filter
  int32_t live[kBlock];
  for (int64_t base = 0; base < n; base += kBlock) {
    const int64_t end = std::min(n, base + kBlock);
    int nl = 0;
    for (int64_t i = base; i < end; ++i) {
      bool any = !skip_zero_rows;
      for (int t = 0; t < T && !any; ++t) any = h[t * ldh + i] != 0.f;
      if (any) live[nl++] = static_cast<int32_t>(i);
    }
    int j = 0;
    for (; j + 4 <= nl; j += 4) {
      const void* w0 = row_ptr(live[j]);
      const void* w1 = row_ptr(live[j + 1]);
      const void* w2 = row_ptr(live[j + 2]);
      const void* w3 = row_ptr(live[j + 3]);
      if (j + 8 <= nl) {
        for (int q = 4; q < 8; ++q) {
          const char* pn = static_cast<const char*>(row_ptr(live[j + q])) + c0 * es;
          for (size_t b = 0; b < static_cast<size_t>(c1 - c0) * es; b += 64)
            _mm_prefetch(pn + b, _MM_HINT_T0);
        }
      }
      int64_t c = c0;
      for (; c + 8 <= c1; c += 8) {
        const __m256 v0 = Load8<D>(w0, c), v1 = Load8<D>(w1, c), v2 = Load8<D>(w2, c),
                     v3 = Load8<D>(w3, c);
        for (int t = 0; t < T; ++t) {
          const float* ht = h + t * ldh;
          float* yt = y + t * ldy + c;
          __m256 acc = _mm256_loadu_ps(yt);
          acc = _mm256_fmadd_ps(_mm256_set1_ps(ht[live[j]]), v0, acc);
          acc = _mm256_fmadd_ps(_mm256_set1_ps(ht[live[j + 1]]), v1, acc);
          acc = _mm256_fmadd_ps(_mm256_set1_ps(ht[live[j + 2]]), v2, acc);
          acc = _mm256_fmadd_ps(_mm256_set1_ps(ht[live[j + 3]]), v3, acc);
          _mm256_storeu_ps(yt, acc);
        }
      }
      for (; c < c1; ++c) {
        for (int t = 0; t < T; ++t) {
          const float* ht = h + t * ldh;
          float acc = y[t * ldy + c];
          acc = std::fma(ht[live[j]], LoadAsF32(w0, D, c), acc);
          acc = std::fma(ht[live[j + 1]], LoadAsF32(w1, D, c), acc);
          acc = std::fma(ht[live[j + 2]], LoadAsF32(w2, D, c), acc);
          acc = std::fma(ht[live[j + 3]], LoadAsF32(w3, D, c), acc);
          y[t * ldy + c] = acc;
        }
      }
    }
    for (; j < nl; ++j) {
      const void* w0 = row_ptr(live[j]);
      int64_t c = c0;
      for (; c + 8 <= c1; c += 8) {
        const __m256 v0 = Load8<D>(w0, c);
        for (int t = 0; t < T; ++t) {
          float* yt = y + t * ldy + c;
          _mm256_storeu_ps(
              yt, _mm256_fmadd_ps(_mm256_set1_ps(h[t * ldh + live[j]]), v0, _mm256_loadu_ps(yt)));
        }
      }
      for (; c < c1; ++c) {
        const float wc = LoadAsF32(w0, D, static_cast<size_t>(c));
        for (int t = 0; t < T; ++t)
          y[t * ldy + c] = std::fma(h[t * ldh + live[j]], wc, y[t * ldy + c]);
      }
    }
  }
}

void AxpyRows(const float* h, int64_t ldh, int T, int64_t n, const int32_t* rows, const void* w,
              DType dt, int64_t cols, int64_t c0, int64_t c1, float* y, int64_t ldy, bool skip) {
  switch (dt) {
    case DType::kF32:
      return AxpyRowsT<DType::kF32>(h, ldh, T, n, rows, w, cols, c0, c1, y, ldy, skip);
    case DType::kBF16:
      return AxpyRowsT<DType::kBF16>(h, ldh, T, n, rows, w, cols, c0, c1, y, ldy, skip);
    case DType::kF16:
      return AxpyRowsT<DType::kF16>(h, ldh, T, n, rows, w, cols, c0, c1, y, ldy, skip);
  }
}

}  // namespace

const KernelTable& Table() {
  static const KernelTable t{"avx2", &DotRows, &AxpyRows};
  return t;
}

}  // namespace sparsed::cpu::avx2
