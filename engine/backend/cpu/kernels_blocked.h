// Register-blocked bodies of the KernelTable functions, written once over a vector-traits type
// V and instantiated by each ISA's source (kernels_avx512.cc, kernels_avx2.cc,
// kernels_generic.cc). Internal to those files.
//
// V provides, for a register type V::Reg of V::kLanes floats:
//   Zero(), LoadX(p), LoadXPart(p, n), LoadW<D>(base, k), LoadWPart<D>(base, k, n), Fma(a, b, c)
//   = a·b + c (fused), Bcast(f), Store(p, r), StorePart(p, r, n), HSum(r) in a fixed order,
//   Prefetch(p); the constants kDotRows, kDotToks (dot tile) and kAxToks, kAxVecs (axpy tile).
//   *Part variants touch only the first n < kLanes lanes (the rest read as 0).
//
// Summation orders (the batch-invariance contract of kernels.h):
//   dot:  lane l of one accumulator sums x[k]·w[k] for k ≡ l (mod kLanes) in increasing k, the
//         last partial chunk zero-padded; then HSum. Depends on K only: the tile a (token, row)
//         pair lands in, T, the rows and the thread never change the instruction sequence that
//         computes it.
//   axpy: y[t][c] is updated by one fused multiply-add per row in row order, starting from its
//         value on entry. Rows whose coefficient is zero for every token of a tile are not read
//         for that tile: their fma would add an exact zero (weights are finite).
#pragma once

#include <algorithm>
#include <cstdint>

#include "engine/common/dtype.h"

namespace sparsed::cpu::blocked {

constexpr size_t DTypeSizeOf(DType d) { return d == DType::kF32 ? 4 : 2; }
// How far ahead of its loads a kernel prefetches along each weight row.
constexpr int64_t kPrefetchBytes = 512;

// ---------------------------------------------------------------------------------------------
// dot_rows: y[t·ldy + i] = dot(x[t], W[rows ? rows[i] : i]).

// One tile: R rows (row pointers; repeated pointers for a short last block) × NT tokens.
template <class V, DType D, int NT>
inline void DotTile(const float* x, int64_t ldx, const void* const* w, int nrows, int64_t K,
                    const void* const* prefetch, float* y, int64_t ldy) {
  constexpr int R = V::kDotRows, L = V::kLanes;
  using Reg = typename V::Reg;
  Reg acc[R][NT];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < NT; ++t) acc[r][t] = V::Zero();
  int64_t k = 0;
  for (; k + L <= K; k += L) {
    Reg wv[R];
    for (int r = 0; r < R; ++r) wv[r] = V::template LoadW<D>(w[r], k);
    // Software prefetch kPrefetchBytes ahead along each row, running on into the next block's
    // rows near the end: gathered rows defeat the hardware prefetchers at every row start.
    constexpr int64_t es = static_cast<int64_t>(DTypeSizeOf(D));
    if (prefetch != nullptr && ((k * es) & 63) == 0) {
      const int64_t ahead = k * es + kPrefetchBytes;
      for (int r = 0; r < R; ++r) {
        if (ahead < K * es) {
          V::Prefetch(static_cast<const char*>(w[r]) + ahead);
        } else if (prefetch[r] != nullptr) {
          V::Prefetch(static_cast<const char*>(prefetch[r]) + (ahead - K * es));
        }
      }
    }
    for (int t = 0; t < NT; ++t) {
      const Reg xv = V::LoadX(x + t * ldx + k);
      for (int r = 0; r < R; ++r) acc[r][t] = V::Fma(wv[r], xv, acc[r][t]);
    }
  }
  if (k < K) {
    const int n = static_cast<int>(K - k);
    Reg wv[R];
    for (int r = 0; r < R; ++r) wv[r] = V::template LoadWPart<D>(w[r], k, n);
    for (int t = 0; t < NT; ++t) {
      const Reg xv = V::LoadXPart(x + t * ldx + k, n);
      for (int r = 0; r < R; ++r) acc[r][t] = V::Fma(wv[r], xv, acc[r][t]);
    }
  }
  for (int t = 0; t < NT; ++t)
    for (int r = 0; r < nrows; ++r) y[t * ldy + r] = V::HSum(acc[r][t]);
}

template <class V, DType D>
inline void DotTileN(int nt, const float* x, int64_t ldx, const void* const* w, int nrows,
                     int64_t K, const void* const* prefetch, float* y, int64_t ldy) {
  static_assert(V::kDotToks <= 8);
  switch (nt) {
    case 1: return DotTile<V, D, 1>(x, ldx, w, nrows, K, prefetch, y, ldy);
    case 2: return DotTile<V, D, 2>(x, ldx, w, nrows, K, prefetch, y, ldy);
    case 3: return DotTile<V, D, 3>(x, ldx, w, nrows, K, prefetch, y, ldy);
    case 4: return DotTile<V, D, 4>(x, ldx, w, nrows, K, prefetch, y, ldy);
    case 5:
      if constexpr (V::kDotToks >= 5) return DotTile<V, D, 5>(x, ldx, w, nrows, K, prefetch, y, ldy);
      break;
    case 6:
      if constexpr (V::kDotToks >= 6) return DotTile<V, D, 6>(x, ldx, w, nrows, K, prefetch, y, ldy);
      break;
    default:
      break;
  }
}

// Tokens are walked in groups that keep their rows of x in the L2 cache while the rows of a
// task sweep past them; inside a group, each block of kDotRows weight rows (in L1) meets every
// tile of kDotToks tokens. `need` (optional, [T × ld_need] indexed by weight row id): a tile
// whose need entries are all zero is not computed and its outputs are set to 0.
template <class V, DType D>
void DotRows(const float* x, int64_t ldx, int T, const void* w, int64_t K, const int32_t* rows,
             int64_t i0, int64_t i1, float* y, int64_t ldy, const float* need, int64_t ld_need) {
  constexpr int R = V::kDotRows, NT = V::kDotToks;
  const size_t row_bytes = static_cast<size_t>(K) * DTypeSize(D);
  auto row_ptr = [&](int64_t i) {
    return static_cast<const void*>(static_cast<const char*>(w) + (rows ? rows[i] : i) * row_bytes);
  };
  // ~256 KiB of x per group, whole tiles.
  const int64_t x_bytes = std::max<int64_t>(1, K * static_cast<int64_t>(sizeof(float)));
  const int group = std::max<int>(NT, static_cast<int>((256 * 1024 / x_bytes) / NT * NT));
  for (int g0 = 0; g0 < T; g0 += group) {
    const int g1 = std::min(T, g0 + group);
    for (int64_t i = i0; i < i1; i += R) {
      const int nrows = static_cast<int>(std::min<int64_t>(R, i1 - i));
      const void* wr[R];
      const void* pf[R];
      for (int r = 0; r < R; ++r) wr[r] = row_ptr(i + std::min(r, nrows - 1));
      const bool has_next = i + R < i1;
      for (int r = 0; r < R; ++r) pf[r] = has_next ? row_ptr(std::min(i + R + r, i1 - 1)) : nullptr;
      // Only the first token tile of a block reads its rows from memory; later tiles find them
      // in cache.
      for (int t = g0; t < g1; t += NT) {
        const int nt = std::min(NT, g1 - t);
        float* yt = y + t * ldy + i;
        if (need != nullptr) {
          bool any = false;
          for (int q = 0; q < nt && !any; ++q)
            for (int r = 0; r < nrows && !any; ++r)
              any = need[(t + q) * ld_need + (rows ? rows[i + r] : i + r)] != 0.f;
          if (!any) {
            for (int q = 0; q < nt; ++q)
              for (int r = 0; r < nrows; ++r) yt[q * ldy + r] = 0.f;
            continue;
          }
        }
        DotTileN<V, D>(nt, x + t * ldx, ldx, wr, nrows, K, (t == g0 && g0 == 0) ? pf : nullptr, yt,
                       ldy);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// axpy_rows: y[t·ldy + c] += Σ_i h[t·ldh + i] · W[rows ? rows[i] : i][c], i in order.

// One tile: NT tokens × VN vectors of columns (the last vector holds `last` ≤ kLanes lanes), over
// n rows: w[j] points at row j's first column of the tile (dtype D), hrow[j][q·ldh] is token q's
// coefficient for row j. y (token q at y + q·ldy) is loaded once and stored once.
template <class V, DType D, int NT, int VN>
inline void AxpyTile(const float* const* hrow, int64_t ldh, int n, const void* const* w, int last,
                     float* y, int64_t ldy) {
  constexpr int L = V::kLanes;
  using Reg = typename V::Reg;
  Reg acc[NT][VN];
  for (int t = 0; t < NT; ++t)
    for (int v = 0; v < VN; ++v)
      acc[t][v] = (v == VN - 1 && last < L) ? V::LoadXPart(y + t * ldy + v * L, last)
                                            : V::LoadX(y + t * ldy + v * L);
  for (int j = 0; j < n; ++j) {
    Reg wv[VN];
    for (int v = 0; v < VN; ++v)
      wv[v] = (v == VN - 1 && last < L) ? V::template LoadWPart<D>(w[j], v * L, last)
                                        : V::template LoadW<D>(w[j], v * L);
    for (int t = 0; t < NT; ++t) {
      const Reg hb = V::Bcast(hrow[j][t * ldh]);
      for (int v = 0; v < VN; ++v) acc[t][v] = V::Fma(hb, wv[v], acc[t][v]);
    }
  }
  for (int t = 0; t < NT; ++t)
    for (int v = 0; v < VN; ++v) {
      if (v == VN - 1 && last < L) {
        V::StorePart(y + t * ldy + v * L, acc[t][v], last);
      } else {
        V::Store(y + t * ldy + v * L, acc[t][v]);
      }
    }
}

template <class V, DType D, int VN>
inline void AxpyTileN(int nt, const float* const* hrow, int64_t ldh, int n, const void* const* w,
                      int last, float* y, int64_t ldy) {
  static_assert(V::kAxToks <= 6);
  switch (nt) {
    case 1: return AxpyTile<V, D, 1, VN>(hrow, ldh, n, w, last, y, ldy);
    case 2: return AxpyTile<V, D, 2, VN>(hrow, ldh, n, w, last, y, ldy);
    case 3: return AxpyTile<V, D, 3, VN>(hrow, ldh, n, w, last, y, ldy);
    case 4: return AxpyTile<V, D, 4, VN>(hrow, ldh, n, w, last, y, ldy);
    case 5:
      if constexpr (V::kAxToks >= 5) return AxpyTile<V, D, 5, VN>(hrow, ldh, n, w, last, y, ldy);
      break;
    case 6:
      if constexpr (V::kAxToks >= 6) return AxpyTile<V, D, 6, VN>(hrow, ldh, n, w, last, y, ldy);
      break;
    default:
      break;
  }
}

// Rows are taken in blocks; for each block and each column block of kAxVecs vectors, every tile
// of kAxToks tokens runs over the block's rows that are non-zero for some token of the tile.
// One token tile (decode): blocks of 8 rows read straight from the weights, each row streamed
// along its columns. More tiles: blocks of 64 rows, each column block of them converted once to
// an fp32 panel that every tile then reads from cache.
template <class V, DType D>
void AxpyRows(const float* h, int64_t ldh, int T, int64_t n, const int32_t* rows, const void* w,
              int64_t cols, int64_t c0, int64_t c1, float* y, int64_t ldy, bool skip_zero_rows) {
  constexpr int L = V::kLanes, NT = V::kAxToks, VN = V::kAxVecs, KMAX = 64, CB = VN * L;
  constexpr int kMaxTiles = 8;  // token tiles whose row lists are kept per block
  constexpr int64_t es = static_cast<int64_t>(DTypeSizeOf(D));
  auto row_ptr = [&](int64_t i) {
    return static_cast<const char*>(w) + (rows ? rows[i] : i) * cols * es;
  };
  const bool panel = T > NT;
  const int KC = panel ? KMAX : 8;
  alignas(64) float pan[KMAX * CB];
  int32_t live[KMAX];       // rows of the block non-zero for some token
  int32_t slot_of[KMAX];    // block row → panel slot
  int32_t tl[kMaxTiles][KMAX];  // per token tile: its non-zero rows (block row ids)
  int tn[kMaxTiles];
  const float* hrow[KMAX];
  const void* wp[KMAX];
  const int64_t width_all = c1 - c0;
  for (int64_t b = 0; b < n; b += KC) {
    const int kc = static_cast<int>(std::min<int64_t>(KC, n - b));
    const char* rp[KMAX];
    const char* next[KMAX];
    const int nnext = static_cast<int>(std::min<int64_t>(KC, std::max<int64_t>(0, n - b - kc)));
    for (int j = 0; j < kc; ++j) rp[j] = row_ptr(b + j) + c0 * es;
    for (int j = 0; j < nnext; ++j) next[j] = row_ptr(b + kc + j) + c0 * es;
    int nl = 0;
    for (int j = 0; j < kc; ++j) {
      bool any = !skip_zero_rows;
      for (int t = 0; t < T && !any; ++t) any = h[t * ldh + b + j] != 0.f;
      slot_of[j] = nl;
      if (any) live[nl++] = j;
    }
    if (nl == 0) continue;
    for (int t0 = 0; t0 < T; t0 += NT * kMaxTiles) {  // token tiles, kMaxTiles at a time
      const int ntiles = std::min(kMaxTiles, (T - t0 + NT - 1) / NT);
      for (int k = 0; k < ntiles; ++k) {
        const int u0 = t0 + k * NT, nt = std::min(NT, T - u0);
        tn[k] = 0;
        for (int q = 0; q < nl; ++q) {
          bool any = !skip_zero_rows || ntiles == 1;
          for (int u = 0; u < nt && !any; ++u) any = h[(u0 + u) * ldh + b + live[q]] != 0.f;
          if (any) tl[k][tn[k]++] = live[q];
        }
      }
      for (int64_t c = 0; c < width_all; c += CB) {
        const int width = static_cast<int>(std::min<int64_t>(CB, width_all - c));
        if (t0 == 0) {
          // Prefetch kPrefetchBytes ahead along each row of the block, into the next block's
          // rows near the end of the columns.
          const int64_t ahead = c * es + kPrefetchBytes;
          if (ahead < width_all * es) {
            for (int j = 0; j < kc; ++j)
              for (int64_t o = 0; o < width * es; o += 64) V::Prefetch(rp[j] + ahead + o);
          } else {
            for (int j = 0; j < nnext; ++j)
              for (int64_t o = 0; o < width * es; o += 64)
                V::Prefetch(next[j] + (ahead - width_all * es) + o);
          }
        }
        if (panel) {
          for (int q = 0; q < nl; ++q) {
            const char* src = rp[live[q]] + c * es;
            float* dst = pan + q * CB;
            int v = 0;
            for (; (v + 1) * L <= width; ++v)
              V::Store(dst + v * L, V::template LoadW<D>(src, v * L));
            if (v * L < width)
              V::Store(dst + v * L, V::template LoadWPart<D>(src, v * L, width - v * L));
          }
        }
        for (int k = 0; k < ntiles; ++k) {
          const int m = tn[k];
          if (m == 0) continue;
          const int u0 = t0 + k * NT, nt = std::min(NT, T - u0);
          const float* ht = h + u0 * ldh + b;
          for (int q = 0; q < m; ++q) {
            const int j = tl[k][q];
            hrow[q] = ht + j;
            wp[q] = panel ? static_cast<const void*>(pan + slot_of[j] * CB)
                          : static_cast<const void*>(rp[j] + c * es);
          }
          float* yt = y + u0 * ldy + c0 + c;
          if (width == CB) {
            if (panel) {
              AxpyTileN<V, DType::kF32, VN>(nt, hrow, ldh, m, wp, L, yt, ldy);
            } else {
              AxpyTileN<V, D, VN>(nt, hrow, ldh, m, wp, L, yt, ldy);
            }
            continue;
          }
          // A short last column block, one vector at a time.
          for (int v = 0; v * L < width; ++v) {
            const int last = std::min(L, width - v * L);
            const void* wv[KMAX];
            const int64_t off = (panel ? 4 : es) * v * L;
            for (int q = 0; q < m; ++q) wv[q] = static_cast<const char*>(wp[q]) + off;
            if (panel) {
              AxpyTileN<V, DType::kF32, 1>(nt, hrow, ldh, m, wv, last, yt + v * L, ldy);
            } else {
              AxpyTileN<V, D, 1>(nt, hrow, ldh, m, wv, last, yt + v * L, ldy);
            }
          }
        }
      }
    }
  }
}

// The KernelTable entry points: dtype dispatch.
template <class V>
void DotRowsAny(const float* x, int64_t ldx, int T, const void* w, DType dt, int64_t K,
                const int32_t* rows, int64_t i0, int64_t i1, float* y, int64_t ldy,
                const float* need, int64_t ld_need) {
  switch (dt) {
    case DType::kF32:
      return DotRows<V, DType::kF32>(x, ldx, T, w, K, rows, i0, i1, y, ldy, need, ld_need);
    case DType::kBF16:
      return DotRows<V, DType::kBF16>(x, ldx, T, w, K, rows, i0, i1, y, ldy, need, ld_need);
    case DType::kF16:
      return DotRows<V, DType::kF16>(x, ldx, T, w, K, rows, i0, i1, y, ldy, need, ld_need);
  }
}

template <class V>
void AxpyRowsAny(const float* h, int64_t ldh, int T, int64_t n, const int32_t* rows, const void* w,
                 DType dt, int64_t cols, int64_t c0, int64_t c1, float* y, int64_t ldy,
                 bool skip) {
  switch (dt) {
    case DType::kF32:
      return AxpyRows<V, DType::kF32>(h, ldh, T, n, rows, w, cols, c0, c1, y, ldy, skip);
    case DType::kBF16:
      return AxpyRows<V, DType::kBF16>(h, ldh, T, n, rows, w, cols, c0, c1, y, ldy, skip);
    case DType::kF16:
      return AxpyRows<V, DType::kF16>(h, ldh, T, n, rows, w, cols, c0, c1, y, ldy, skip);
  }
}

}  // namespace sparsed::cpu::blocked
