// Register-blocked bodies of the KernelTable functions, written once over a vector-traits type
// V and instantiated by each ISA's source (kernels_avx512.cc, kernels_avx2.cc,
// kernels_generic.cc). Internal to those files.
//
// V provides, for a register type V::Reg of V::kLanes floats:
//   Zero(), LoadX(p), LoadXPart(p, n), LoadW<D>(base, k), LoadWPart<D>(base, k, n), Fma(a, b, c)
//   = a·b + c (fused), Bcast(f), Store(p, r), StorePart(p, r, n), HSum(r) in a fixed order,
//   Prefetch(p); the constants kDotRows, kDotToks (dot tile), kDotRowsNarrow (the dot tile's
//   rows when a call has at most kDotToksNarrow tokens: decode's weight streams) and kAxToks,
//   kAxVecs (axpy tile).
//   *Part variants touch only the first n < kLanes lanes (the rest read as 0).
//   For block-quantized D (dtype.h), LoadW<D>(base, k) needs base at a block boundary and k a
//   multiple of kLanes (kLanes divides kQuantBlock, so a vector never straddles two blocks); it
//   returns the weights dequantized exactly (code × fp16 scale), so every path that reads a
//   quantized weight reads the same fp32 value, and the orders below hold unchanged. Its parts,
//   Scale(block) (the fp32 scale), Codes<D>(block, j) (kLanes codes as floats) and Mul(a, b),
//   let the axpy tile convert a block's scale once for all its vectors: the same products. (The
//   dot takes element types only: block types run dot_rows_q, below.)
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
#include <memory>
#include <type_traits>
#include <vector>

#include "engine/common/dtype.h"
#include "engine/common/panel.h"

// Everything here has internal linkage: each including file is compiled for its own instruction
// set, so a shared inline symbol could resolve to another file's encoding (AVX-512 code run on a
// CPU without it).
namespace sparsed::cpu::blocked {
namespace {

// How far ahead of its loads the dot kernel's wide tiles prefetch along each weight row. The
// narrow dot tiles and the down projection's direct path do not prefetch: with eight rows in
// flight the hardware prefetchers keep up, and the prefetch instructions cost more than they
// save (bench/results/cpu_kernel_bench.md, "Prefetching").
constexpr int64_t kPrefetchBytes = 512;
// Up to this many tokens the down projection reads weights straight into its register tiles
// (one or two tiles per block of rows); more convert each block to an fp32 panel first.
constexpr int kAxDirectTokens = 8;

// Weight elements per 64 bytes of a row (a prefetch every cache line).
template <DType D>
constexpr int64_t kElemsPerLine = IsBlockQuantized(D)
                                      ? 64 / static_cast<int64_t>(QuantBlockBytes(D)) * kQuantBlock
                                      : 64 / static_cast<int64_t>(DTypeSize(D));

// V::kLanes weights of a block-quantized row from element k (a multiple of kLanes; base at a
// block boundary): codes × the block's scale, exact — what V::LoadW<D> returns for block types.
template <class V, DType D>
inline typename V::Reg DequantVector(const void* base, int64_t k) {
  const auto* block = static_cast<const uint8_t*>(base) + (k / kQuantBlock) * QuantBlockBytes(D);
  return V::Mul(V::template Codes<D>(block, static_cast<int>(k % kQuantBlock)),
                V::Bcast(V::Scale(block)));
}

// The first n < V::kLanes of them (lanes past n are 0), element by element (the same values).
template <class V, DType D>
inline typename V::Reg DequantPart(const void* base, int64_t k, int n) {
  alignas(64) float tmp[V::kLanes] = {};
  for (int i = 0; i < n; ++i) tmp[i] = BlockElementAsF32(base, D, static_cast<size_t>(k + i));
  return V::LoadX(tmp);
}

// Calls f(std::integral_constant<DType, dt>{}): kernels are instantiated per weight type.
template <class F>
inline void WithDType(DType dt, F&& f) {
  switch (dt) {
    case DType::kF32:
      return f(std::integral_constant<DType, DType::kF32>{});
    case DType::kBF16:
      return f(std::integral_constant<DType, DType::kBF16>{});
    case DType::kF16:
      return f(std::integral_constant<DType, DType::kF16>{});
    case DType::kQ8_0:
      return f(std::integral_constant<DType, DType::kQ8_0>{});
    case DType::kQ4_0:
      return f(std::integral_constant<DType, DType::kQ4_0>{});
  }
}

// Calls f(std::integral_constant<int, n>{}) for a run-time count n in [1, Max]: the tiles'
// token counts are template arguments, so their accumulators live in registers.
template <int Max, class F>
inline void WithCount(int n, F&& f) {
  static_assert(Max >= 1 && Max <= 6);
  switch (n) {
    case 1:
      return f(std::integral_constant<int, 1>{});
    case 2:
      if constexpr (Max >= 2) return f(std::integral_constant<int, 2>{});
      break;
    case 3:
      if constexpr (Max >= 3) return f(std::integral_constant<int, 3>{});
      break;
    case 4:
      if constexpr (Max >= 4) return f(std::integral_constant<int, 4>{});
      break;
    case 5:
      if constexpr (Max >= 5) return f(std::integral_constant<int, 5>{});
      break;
    case 6:
      if constexpr (Max >= 6) return f(std::integral_constant<int, 6>{});
      break;
    default:
      break;
  }
}

// The rows j < kc of a block (coefficients h[t·ldh + j], t < T) that are non-zero for some token
// — or every row when !filter — into live[]; returns their count.
inline int LiveRows(const float* h, int64_t ldh, int T, int kc, bool filter, int32_t* live) {
  int n = 0;
  for (int j = 0; j < kc; ++j) {
    bool any = !filter;
    for (int t = 0; t < T && !any; ++t) any = h[t * ldh + j] != 0.f;
    if (any) live[n++] = j;
  }
  return n;
}

// ---------------------------------------------------------------------------------------------
// dot_rows: y[t·ldy + i] = dot(x[t], W[rows ? rows[i] : i]).

// One tile: R rows (row pointers; repeated pointers for a short last block) × NT tokens (xr[q]:
// token q's row of x; its results go to yr[q][0..nrows)).
template <class V, DType D, int R, int NT>
inline void DotTile(const float* const* xr, const void* const* w, int nrows, int64_t K,
                    const void* const* prefetch, float* const* yr) {
  constexpr int L = V::kLanes;
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
    if (prefetch != nullptr && k % kElemsPerLine<D> == 0) {
      const int64_t ahead = static_cast<int64_t>(SpanBytes(D, k)) + kPrefetchBytes;
      const int64_t row = static_cast<int64_t>(SpanBytes(D, K));
      for (int r = 0; r < R; ++r) {
        if (ahead < row) {
          V::Prefetch(static_cast<const char*>(w[r]) + ahead);
        } else if (prefetch[r] != nullptr) {
          V::Prefetch(static_cast<const char*>(prefetch[r]) + (ahead - row));
        }
      }
    }
    for (int t = 0; t < NT; ++t) {
      const Reg xv = V::LoadX(xr[t] + k);
      for (int r = 0; r < R; ++r) acc[r][t] = V::Fma(wv[r], xv, acc[r][t]);
    }
  }
  if (k < K) {
    const int n = static_cast<int>(K - k);
    Reg wv[R];
    for (int r = 0; r < R; ++r) wv[r] = V::template LoadWPart<D>(w[r], k, n);
    for (int t = 0; t < NT; ++t) {
      const Reg xv = V::LoadXPart(xr[t] + k, n);
      for (int r = 0; r < R; ++r) acc[r][t] = V::Fma(wv[r], xv, acc[r][t]);
    }
  }
  for (int t = 0; t < NT; ++t)
    for (int r = 0; r < nrows; ++r) yr[t][r] = V::HSum(acc[r][t]);
}

// Tokens per group for a dot whose activations take `token_bytes` each: ~256 KiB, whole tiles of
// NT, at most kMaxGroupTiles tiles.
constexpr int kMaxGroupTiles = 10;
template <int NT>
int GroupTokens(int64_t token_bytes) {
  return static_cast<int>(std::clamp<int64_t>(
      (256 * 1024 / std::max<int64_t>(1, token_bytes)) / NT * NT, NT, kMaxGroupTiles * NT));
}

// The walk of every dot: tokens in groups of `group` (GroupTokens: their activations stay in the
// L2 cache while the rows of a task sweep past them); inside a group, each block of R weight rows
// (in L1) meets the group's tokens NT at a time. `need` (optional, [T × ld_need] indexed by weight
// row id): only tokens with a non-zero need entry on some row of the block are computed for it
// (gathered into full tiles); the others' outputs for the block are set to 0. For each tile:
//   tile(nt, toks, wr, nrows, pf, yr): nt a std::integral_constant (the tile's token count),
//   toks its token ids, wr the block's row pointers (the last repeated for a short block), pf
//   the next block's rows for the first tile of the first group (null otherwise: later tiles
//   find the rows in cache), yr each token's outputs at the block.
template <int R, int NT, class Tile>
void WalkDotRows(int T, int group, const void* w, size_t row_bytes, const int32_t* rows, int64_t i0,
                 int64_t i1, float* y, int64_t ldy, const float* need, int64_t ld_need,
                 Tile&& tile) {
  auto row_ptr = [&](int64_t i) {
    return static_cast<const void*>(static_cast<const char*>(w) + (rows ? rows[i] : i) * row_bytes);
  };
  int tg[kMaxGroupTiles * NT];
  float* yg[kMaxGroupTiles * NT];
  for (int g0 = 0; g0 < T; g0 += group) {
    const int g1 = std::min(T, g0 + group);
    for (int64_t i = i0; i < i1; i += R) {
      const int nrows = static_cast<int>(std::min<int64_t>(R, i1 - i));
      const void* wr[R];
      const void* pf[R];
      for (int r = 0; r < R; ++r) wr[r] = row_ptr(i + std::min(r, nrows - 1));
      const bool has_next = i + R < i1;
      for (int r = 0; r < R; ++r) pf[r] = has_next ? row_ptr(std::min(i + R + r, i1 - 1)) : nullptr;
      int m = 0;  // the group's tokens this block computes
      for (int t = g0; t < g1; ++t) {
        float* yt = y + t * ldy + i;
        if (need != nullptr) {
          bool any = false;
          for (int r = 0; r < nrows && !any; ++r)
            any = need[t * ld_need + (rows ? rows[i + r] : i + r)] != 0.f;
          if (!any) {
            for (int r = 0; r < nrows; ++r) yt[r] = 0.f;
            continue;
          }
        }
        tg[m] = t;
        yg[m++] = yt;
      }
      // Tiles of near-equal size (8 tokens: 4 + 4, not 6 + 2): a tile's cost per token grows
      // as it narrows.
      const int tiles = (m + NT - 1) / NT;
      for (int k = 0; k < tiles; ++k) {
        const int q0 = m * k / tiles, q1 = m * (k + 1) / tiles;
        WithCount<NT>(q1 - q0, [&](auto nt) {
          tile(nt, tg + q0, static_cast<const void* const*>(wr), nrows,
               k == 0 && g0 == 0 ? static_cast<const void* const*>(pf) : nullptr, yg + q0);
        });
      }
    }
  }
}

// Blocks of R rows, tiles of at most NT tokens; `kPrefetch`: whether tiles prefetch along rows.
template <class V, DType D, int R, int NT, bool kPrefetch>
void DotRowsBlocked(const float* x, int64_t ldx, int T, const void* w, int64_t K,
                    const int32_t* rows, int64_t i0, int64_t i1, float* y, int64_t ldy,
                    const float* need, int64_t ld_need) {
  WalkDotRows<R, NT>(T, GroupTokens<NT>(K * static_cast<int64_t>(sizeof(float))), w,
                     SpanBytes(D, K), rows, i0, i1, y, ldy, need, ld_need,
                     [&](auto nt, const int* toks, const void* const* wr, int nrows,
                         const void* const* pf, float* const* yr) {
                       constexpr int N = decltype(nt)::value;
                       const float* xr[N];
                       for (int q = 0; q < N; ++q) xr[q] = x + toks[q] * ldx;
                       DotTile<V, D, R, N>(xr, wr, nrows, K, kPrefetch ? pf : nullptr, yr);
                     });
}

// Few tokens (decode): narrow tiles of more rows, more weight streams in flight; otherwise the
// wide tiles. Either way each (token, row) pair is summed in the same order.
template <class V, DType D>
void DotRows(const float* x, int64_t ldx, int T, const void* w, int64_t K, const int32_t* rows,
             int64_t i0, int64_t i1, float* y, int64_t ldy, const float* need, int64_t ld_need) {
  if (T <= V::kDotToksNarrow) {
    DotRowsBlocked<V, D, V::kDotRowsNarrow, V::kDotToksNarrow, false>(x, ldx, T, w, K, rows, i0, i1,
                                                                      y, ldy, need, ld_need);
  } else {
    DotRowsBlocked<V, D, V::kDotRows, V::kDotToks, true>(x, ldx, T, w, K, rows, i0, i1, y, ldy,
                                                         need, ld_need);
  }
}

// ---------------------------------------------------------------------------------------------
// dot_rows_q: block-quantized weights against block-quantized activations. Q provides, for a
// vector of 32 codes Q::Codes and an accumulator Q::Acc:
//   Zero(), Scale(block) (the block's fp32 scale), LoadW<D>(block) (its 32 codes, signed),
//   LoadX(p), Abs(x), Fma(w, x, |x|, s, acc) = acc + s · (Σ w·x spread over the lanes, exact),
//   HSum(acc) in a fixed order; tiles kRowsNarrow × 1 token (decode) and kRows × kToks.

// One tile: R rows × NT tokens (xq[q], xd[q]: token q's codes and scales), block by block.
template <class Q, DType D, int R, int NT>
inline void QuantDotTile(const int8_t* const* xq, const float* const* xd, const void* const* w,
                         int nrows, int64_t K, float* const* yr) {
  constexpr int64_t bb = static_cast<int64_t>(QuantBlockBytes(D));
  typename Q::Acc acc[R][NT];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < NT; ++t) acc[r][t] = Q::Zero();
  for (int64_t b = 0; b < K / kQuantBlock; ++b) {
    typename Q::Codes wc[R];
    float dw[R];
    for (int r = 0; r < R; ++r) {
      const uint8_t* blk = static_cast<const uint8_t*>(w[r]) + b * bb;
      dw[r] = Q::Scale(blk);
      wc[r] = Q::template LoadW<D>(blk);
    }
    for (int t = 0; t < NT; ++t) {
      const typename Q::Codes x = Q::LoadX(xq[t] + b * kQuantBlock);
      const typename Q::Codes ax = Q::Abs(x);
      const float dx = xd[t][b];
      for (int r = 0; r < R; ++r) acc[r][t] = Q::Fma(wc[r], x, ax, dw[r] * dx, acc[r][t]);
    }
  }
  for (int t = 0; t < NT; ++t)
    for (int r = 0; r < nrows; ++r) yr[t][r] = Q::HSum(acc[r][t]);
}

// Blocks of R rows, tiles of at most NT tokens over quantized activations (WalkDotRows).
template <class Q, DType D, int R, int NT>
void QuantDotRowsBlocked(const int8_t* xq, const float* xd, int T, const void* w, int64_t K,
                         const int32_t* rows, int64_t i0, int64_t i1, float* y, int64_t ldy,
                         const float* need, int64_t ld_need) {
  const int64_t nb = K / kQuantBlock;
  WalkDotRows<R, NT>(T, GroupTokens<NT>(K), w, SpanBytes(D, K), rows, i0, i1, y, ldy, need, ld_need,
                     [&](auto nt, const int* toks, const void* const* wr, int nrows,
                         const void* const*, float* const* yr) {
                       constexpr int N = decltype(nt)::value;
                       const int8_t* xr[N];
                       const float* dr[N];
                       for (int q = 0; q < N; ++q) {
                         xr[q] = xq + toks[q] * K;
                         dr[q] = xd + toks[q] * nb;
                       }
                       QuantDotTile<Q, D, R, N>(xr, dr, wr, nrows, K, yr);
                     });
}

template <class Q>
void QuantDotRowsAny(const int8_t* xq, const float* xd, int T, const void* w, DType dt, int64_t K,
                     const int32_t* rows, int64_t i0, int64_t i1, float* y, int64_t ldy,
                     const float* need, int64_t ld_need) {
  WithDType(dt, [&](auto d) {
    constexpr DType D = decltype(d)::value;
    if constexpr (IsBlockQuantized(D)) {
      if (T <= 1) {
        QuantDotRowsBlocked<Q, D, Q::kRowsNarrow, 1>(xq, xd, T, w, K, rows, i0, i1, y, ldy, need,
                                                     ld_need);
      } else {
        QuantDotRowsBlocked<Q, D, Q::kRows, Q::kToks>(xq, xd, T, w, K, rows, i0, i1, y, ldy, need,
                                                      ld_need);
      }
    }
  });
}

// ---------------------------------------------------------------------------------------------
// dot_panels_q: row panels (panel.h). P provides kToks (the widest token tile) and
//   Tile<D, NT>(xq, xd, xs, panel, nb, yr, nrows): tokens q < NT (codes xq[q], block scales
//   xd[q], block code sums xs[q]) against one panel of nb blocks; row j < nrows of it to
//   yr[q][j], in the order of kernels.h.
// Tokens go in groups whose codes stay in the L2 cache while the panels sweep past them; each
// panel (eight rows, one sequential stream) meets the group a tile at a time.
template <class P>
void PanelDotAny(const int8_t* xq, const float* xd, const int32_t* xs, int T, const void* w,
                 DType dt, int64_t K, int64_t rows, int64_t p0, int64_t p1, float* y, int64_t ldy) {
  WithDType(dt, [&](auto d) {
    constexpr DType D = decltype(d)::value;
    if constexpr (IsBlockQuantized(D)) {
      constexpr int NT = P::kToks;
      const int64_t nb = K / kQuantBlock;
      const int group = GroupTokens<NT>(K);
      for (int g0 = 0; g0 < T; g0 += group) {
        const int m = std::min(T, g0 + group) - g0;
        const int tiles = (m + NT - 1) / NT;
        for (int64_t p = p0; p < p1; ++p) {
          const auto* panel = static_cast<const uint8_t*>(w) + p * PanelBytes(D, K);
          const int nrows = static_cast<int>(std::min<int64_t>(kPanelRows, rows - p * kPanelRows));
          for (int k = 0; k < tiles; ++k) {
            const int q0 = g0 + m * k / tiles, q1 = g0 + m * (k + 1) / tiles;
            WithCount<NT>(q1 - q0, [&](auto nt) {
              constexpr int N = decltype(nt)::value;
              const int8_t* xr[N];
              const float* dr[N];
              const int32_t* sr[N];
              float* yr[N];
              for (int q = 0; q < N; ++q) {
                xr[q] = xq + (q0 + q) * K;
                dr[q] = xd + (q0 + q) * nb;
                sr[q] = xs + (q0 + q) * nb;
                yr[q] = y + (q0 + q) * ldy + p * kPanelRows;
              }
              P::template Tile<D, N>(xr, dr, sr, panel, nb, yr, nrows);
            });
          }
        }
      }
    }
  });
}

// ---------------------------------------------------------------------------------------------
// axpy_rows: y[t·ldy + c] += Σ_i h[t·ldh + i] · W[rows ? rows[i] : i][c], i in order.

// One tile: NT tokens × VN vectors of columns starting at column c of the rows (the last vector
// holds `last` ≤ kLanes lanes), over n rows: w[j] points at row j (dtype D), hrow[j][q·ldh] is
// token q's coefficient for row j. y (token q at y + q·ldy, already at column c) is loaded once
// and stored once.
template <class V, DType D, int NT, int VN>
inline void AxpyTile(const float* const* hrow, int64_t ldh, int n, const void* const* w, int64_t c,
                     int last, float* y, int64_t ldy) {
  constexpr int L = V::kLanes;
  using Reg = typename V::Reg;
  Reg acc[NT][VN];
  for (int t = 0; t < NT; ++t)
    for (int v = 0; v < VN; ++v)
      acc[t][v] = (v == VN - 1 && last < L) ? V::LoadXPart(y + t * ldy + v * L, last)
                                            : V::LoadX(y + t * ldy + v * L);
  for (int j = 0; j < n; ++j) {
    Reg wv[VN];
    if constexpr (IsBlockQuantized(D)) {
      // Whole blocks (no partial vector); each block's scale converted once per row: the values
      // LoadW gives.
      const auto* row = static_cast<const uint8_t*>(w[j]);
      float scale = 0.f;
      int64_t cur = -1;
      for (int v = 0; v < VN; ++v) {
        const int64_t k = c + v * L, b = k / kQuantBlock;
        const uint8_t* blk = row + b * static_cast<int64_t>(QuantBlockBytes(D));
        if (b != cur) {
          scale = V::Scale(blk);
          cur = b;
        }
        wv[v] =
            V::Mul(V::template Codes<D>(blk, static_cast<int>(k % kQuantBlock)), V::Bcast(scale));
      }
    } else {
      for (int v = 0; v < VN; ++v)
        wv[v] = (v == VN - 1 && last < L) ? V::template LoadWPart<D>(w[j], c + v * L, last)
                                          : V::template LoadW<D>(w[j], c + v * L);
    }
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

// Columns [c, c + width) of NT tokens over n rows (as AxpyTile): full tiles of kAxVecs vectors,
// then a short last block a vector at a time.
template <class V, DType D, int NT>
inline void AxpyColumns(const float* const* hrow, int64_t ldh, int n, const void* const* w,
                        int64_t c, int64_t width, float* y, int64_t ldy) {
  constexpr int L = V::kLanes, VN = V::kAxVecs;
  if (width == VN * L) return AxpyTile<V, D, NT, VN>(hrow, ldh, n, w, c, L, y, ldy);
  for (int64_t v = 0; v < width; v += L)
    AxpyTile<V, D, NT, 1>(hrow, ldh, n, w, c + v, static_cast<int>(std::min<int64_t>(L, width - v)),
                          y + v, ldy);
}

// Runs the tiles of one column block [c, c + width) of the rows in wcol for token tiles
// k < ntiles — tokens [starts[k], starts[k + 1]) — whose row lists are given: tl[k][0..tn[k]) are
// block rows non-zero for tile k.
template <class V, DType D>
inline void AxpyColumnBlock(const float* h, int64_t ldh, const int* starts, int ntiles,
                            const int32_t (*tl)[64], const int* tn, const void* const* wcol,
                            int64_t c, int width, float* y, int64_t ldy) {
  const float* hrow[64];
  const void* wp[64];
  for (int k = 0; k < ntiles; ++k) {
    const int m = tn[k];
    if (m == 0) continue;
    const int u0 = starts[k];
    for (int q = 0; q < m; ++q) {
      hrow[q] = h + u0 * ldh + tl[k][q];
      wp[q] = wcol[tl[k][q]];
    }
    WithCount<V::kAxToks>(starts[k + 1] - u0, [&](auto nt) {
      AxpyColumns<V, D, decltype(nt)::value>(hrow, ldh, m, wp, c, width, y + u0 * ldy, ldy);
    });
  }
}

// Fills tl/tn for token tiles k < ntiles (tokens [starts[k], starts[k + 1])) over the block's
// live rows.
inline void TileRowLists(const float* h, int64_t ldh, const int* starts, int ntiles,
                         const int32_t* live, int nl, bool filter, int32_t (*tl)[64], int* tn) {
  for (int k = 0; k < ntiles; ++k) {
    const int u0 = starts[k], nt = starts[k + 1] - u0;
    tn[k] = 0;
    for (int q = 0; q < nl; ++q) {
      bool any = !filter;
      for (int u = 0; u < nt && !any; ++u) any = h[(u0 + u) * ldh + live[q]] != 0.f;
      if (any) tl[k][tn[k]++] = live[q];
    }
  }
}

// One token tile over a block of m rows (w[j]: row j at the first column, hrow[j][q·ldh]: token
// q's coefficient), across all `width` columns, column block by column block.
template <class V, DType D, int NT>
inline void AxpyRowBlock(const float* const* hrow, int64_t ldh, int m, const void* const* w,
                         int64_t width, float* y, int64_t ldy) {
  constexpr int CB = V::kAxVecs * V::kLanes;
  for (int64_t c = 0; c < width; c += CB)
    AxpyColumns<V, D, NT>(hrow, ldh, m, w, c, std::min<int64_t>(CB, width - c), y + c, ldy);
}

// Few tokens (decode, and each token of the per-token path): blocks of 8 rows read straight from
// the weights, eight sequential streams that the hardware prefetchers follow.
template <class V, DType D>
void AxpyDirect(const float* h, int64_t ldh, int T, int64_t n, const char* const* rp_all,
                int64_t width_all, float* y, int64_t ldy, bool skip_zero_rows) {
  constexpr int kRows = 8;
  int32_t live[kRows];
  const void* lw[kRows];
  const float* hrow[kRows];
  for (int64_t b = 0; b < n; b += kRows) {
    const int kc = static_cast<int>(std::min<int64_t>(kRows, n - b));
    const char* const* rp = rp_all + b;
    const int m = LiveRows(h + b, ldh, T, kc, skip_zero_rows, live);
    if (m == 0) continue;
    for (int q = 0; q < m; ++q) lw[q] = rp[live[q]];
    // Token tiles of near-equal size; the second and later find the block's rows in cache.
    const int tiles = (T + V::kAxToks - 1) / V::kAxToks;
    for (int k = 0; k < tiles; ++k) {
      const int u0 = T * k / tiles;
      for (int q = 0; q < m; ++q) hrow[q] = h + b + live[q] + u0 * ldh;
      WithCount<V::kAxToks>(T * (k + 1) / tiles - u0, [&](auto nt) {
        AxpyRowBlock<V, D, decltype(nt)::value>(hrow, ldh, m, lw, width_all, y + u0 * ldy, ldy);
      });
    }
  }
}

// Several token tiles: blocks of rows whose columns [c0, c1) are converted once to an fp32 panel
// (rows padded off a power-of-two stride, so a column block of many rows does not fall into one
// cache set); every tile then runs over the panel, column block by column block, skipping rows
// zero for all its tokens.
template <class V, DType D>
void AxpyPanel(const float* h, int64_t ldh, int T, int64_t n, const char* const* rp_all,
               int64_t n_avail, int64_t width_all, float* y, int64_t ldy, bool skip_zero_rows) {
  constexpr int L = V::kLanes, NT = V::kAxToks, CB = V::kAxVecs * L;
  constexpr int kMaxRows = 64, kMaxTiles = 8;
  constexpr int64_t kPanelFloats = 64 * 1024;  // 256 KiB: an L2-resident panel
  const int64_t stride = (width_all + L - 1) / L * L + L;
  const int rows_per_block =
      static_cast<int>(std::clamp<int64_t>(kPanelFloats / stride, 1, kMaxRows));
  std::unique_ptr<float[]> heap;
  alignas(64) float stack_pan[kPanelFloats];
  float* pan = stack_pan;
  if (stride > kPanelFloats) {  // a very wide row: one row per block, on the heap
    heap.reset(new float[stride]);
    pan = heap.get();
  }
  // Token tiles of near-equal size (8 tokens: 4 + 4, not 6 + 2): a tile's cost per token grows
  // as it narrows.
  const int total_tiles = (T + NT - 1) / NT;
  std::vector<int> starts(total_tiles + 1);
  for (int k = 0; k <= total_tiles; ++k) starts[k] = static_cast<int>(int64_t{T} * k / total_tiles);
  int32_t live[kMaxRows];
  int32_t tl[kMaxTiles][64];
  int tn[kMaxTiles];
  const void* wcol[kMaxRows];
  for (int64_t b = 0; b < n; b += rows_per_block) {
    const int kc = static_cast<int>(std::min<int64_t>(rows_per_block, n - b));
    const char* const* rp = rp_all + b;
    const int nl = LiveRows(h + b, ldh, T, kc, skip_zero_rows, live);
    if (nl == 0) continue;
    // Convert the live rows, each read as one sequential stream; the next one is prefetched
    // while the current one converts.
    for (int q = 0; q < nl; ++q) {
      const char* src = rp[live[q]];
      const char* pf = q + 1 < nl ? rp[live[q + 1]] : (b + kc < n_avail ? rp[kc] : nullptr);
      float* dst = pan + q * stride;
      int64_t c = 0;
      for (; c + L <= width_all; c += L) {
        if (pf != nullptr && c % kElemsPerLine<D> == 0) V::Prefetch(pf + SpanBytes(D, c));
        V::Store(dst + c, V::template LoadW<D>(src, c));
      }
      if (c < width_all)
        V::Store(dst + c, V::template LoadWPart<D>(src, c, static_cast<int>(width_all - c)));
      wcol[live[q]] = dst;
    }
    for (int k0 = 0; k0 < total_tiles; k0 += kMaxTiles) {
      const int ntiles = std::min(kMaxTiles, total_tiles - k0);
      TileRowLists(h + b, ldh, starts.data() + k0, ntiles, live, nl, skip_zero_rows, tl, tn);
      for (int64_t c = 0; c < width_all; c += CB)
        AxpyColumnBlock<V, DType::kF32>(h + b, ldh, starts.data() + k0, ntiles, tl, tn, wcol, c,
                                        static_cast<int>(std::min<int64_t>(CB, width_all - c)),
                                        y + c, ldy);
    }
  }
}

// Block types: c0 and c1 − c0 are multiples of kQuantBlock (whole blocks of every row).
template <class V, DType D>
void AxpyRows(const float* h, int64_t ldh, int T, int64_t n, const int32_t* rows, const void* w,
              int64_t cols, int64_t c0, int64_t c1, float* y, int64_t ldy, bool skip_zero_rows) {
  const size_t row_bytes = SpanBytes(D, cols), col0 = SpanBytes(D, c0);
  constexpr int64_t kChunk = 1024;  // row pointers computed per chunk of rows
  const char* rp[kChunk + 64];
  for (int64_t b = 0; b < n; b += kChunk) {
    const int64_t cnt = std::min<int64_t>(kChunk, n - b);
    // Row pointers at column c0, plus, for the panel path's prefetch, a few of the next chunk.
    const bool panel = T > kAxDirectTokens;
    const int64_t extra = panel ? std::min<int64_t>(64, n - b - cnt) : 0;
    for (int64_t j = 0; j < cnt + extra; ++j)
      rp[j] = static_cast<const char*>(w) + (rows ? rows[b + j] : b + j) * row_bytes + col0;
    if (panel) {
      AxpyPanel<V, D>(h + b, ldh, T, cnt, rp, cnt + extra, c1 - c0, y + c0, ldy, skip_zero_rows);
    } else {
      AxpyDirect<V, D>(h + b, ldh, T, cnt, rp, c1 - c0, y + c0, ldy, skip_zero_rows);
    }
  }
}

// The KernelTable entry points: dtype dispatch (WithDType).
template <class V>
void DotRowsAny(const float* x, int64_t ldx, int T, const void* w, DType dt, int64_t K,
                const int32_t* rows, int64_t i0, int64_t i1, float* y, int64_t ldy,
                const float* need, int64_t ld_need) {
  WithDType(dt, [&](auto d) {
    // Block types meet quantized activations (QuantDotRowsAny), never fp32 ones.
    if constexpr (!IsBlockQuantized(decltype(d)::value))
      DotRows<V, decltype(d)::value>(x, ldx, T, w, K, rows, i0, i1, y, ldy, need, ld_need);
  });
}

template <class V>
void AxpyRowsAny(const float* h, int64_t ldh, int T, int64_t n, const int32_t* rows, const void* w,
                 DType dt, int64_t cols, int64_t c0, int64_t c1, float* y, int64_t ldy, bool skip) {
  WithDType(dt, [&](auto d) {
    AxpyRows<V, decltype(d)::value>(h, ldh, T, n, rows, w, cols, c0, c1, y, ldy, skip);
  });
}

}  // namespace
}  // namespace sparsed::cpu::blocked
