// CPU inner kernels over weights in their stored dtype with fp32 accumulation. One
// register-blocked source (kernels_blocked.h) is instantiated per instruction set
// (kernels_avx512.cc, kernels_avx2.cc, kernels_generic.cc); SelectKernels() picks the best the CPU
// runs.
#pragma once

#include <cstdint>

#include "absl/strings/string_view.h"
#include "engine/common/dtype.h"

namespace sparsed::cpu {

struct KernelTable {
  absl::string_view isa;
  // For i in [i0, i1): r = rows ? rows[i] : i; for t < T:
  //   y[t·ldy + i] = dot(x[t·ldx .. +K], W[r]).
  // Each (t, r) dot is computed in an order that depends on K only (never on T, the rows, the
  // tile the pair lands in or the thread), so results are bitwise independent of batch-mates.
  // need (optional, [T × ld_need], indexed by row id r): pairs whose need entry is zero may be
  // skipped with y set to 0 — the caller promises it multiplies them by zero (a token's
  // inactive neurons in the union sparse up projection). Null computes every pair.
  // dt an element type (kF32, kBF16, kF16); block types run dot_rows_q.
  void (*dot_rows)(const float* x, int64_t ldx, int T, const void* w, DType dt, int64_t K,
                   const int32_t* rows, int64_t i0, int64_t i1, float* y, int64_t ldy,
                   const float* need, int64_t ld_need);
  // The dot for block-quantized W (dt kQ8_0 or kQ4_0, K a multiple of kQuantBlock) against
  // activations quantized per token in the same blocks (QuantizeActivationRow): xq [T × K] int8
  // codes, xd [T × K/32] fp32 scales. For i in [i0, i1), r = rows ? rows[i] : i, t < T:
  //   y[t·ldy + i] = Σ_b dw[r, b] · xd[t, b] · Σ_j w[r, b, j] · xq[t, b, j]
  // Each block's code dot is exact (integer); blocks are added in increasing b into vector lanes
  // and summed in a fixed order: the order depends on K only, as for dot_rows. need: as there.
  void (*dot_rows_q)(const int8_t* xq, const float* xd, int T, const void* w, DType dt, int64_t K,
                     const int32_t* rows, int64_t i0, int64_t i1, float* y, int64_t ldy,
                     const float* need, int64_t ld_need);
  // The dense quantized dot over row panels (panel.h; dt kQ8_0 or kQ4_0) against activations as
  // for dot_rows_q, plus xs [T × K/32]: each block's sum of codes. For panels p in [p0, p1), rows
  // r = 8p + j < `rows`, t < T:
  //   y[t·ldy + r] = acc after, for b = 0, 1, …, nb − 1 in order,
  //                  acc ← fma(float(Σ_j w[r, b, j] · xq[t, b, j]), dw[r, b] · xd[t, b], acc)
  // from acc = 0 (a multiply then an add on the portable table): one exact integer dot per
  // block, one fp32 accumulator per (row, token) — the order depends on K only, so results are
  // bitwise independent of T and of the panel range.
  void (*dot_panels_q)(const int8_t* xq, const float* xd, const int32_t* xs, int T, const void* w,
                       DType dt, int64_t K, int64_t rows, int64_t p0, int64_t p1, float* y,
                       int64_t ldy);
  // For columns [c0, c1) of y and for i in [0, n) in order, r = rows ? rows[i] : i; for t < T:
  //   y[t·ldy + c] += h[t·ldh + i] · W[r][c]   (W has `cols` columns).
  // Each element gets one fused multiply-add per row in index order, so each y[t] depends only
  // on its own h[t]. skip_zero_rows: rows whose h is zero for a token are not applied to it
  // (exact sparsity; the product would add an exact zero) and rows zero for every token are
  // not read; false reads every row, as a dense FFN does. Both give the same sums (W finite).
  void (*axpy_rows)(const float* h, int64_t ldh, int T, int64_t n, const int32_t* rows,
                    const void* w, DType dt, int64_t cols, int64_t c0, int64_t c1, float* y,
                    int64_t ldy, bool skip_zero_rows);
};

// The best kernel table for this CPU (AVX-512, AVX2+FMA+F16C, or portable), or the one named
// by `force` ("avx512", "avx2", "generic") when it is non-empty and supported.
const KernelTable& SelectKernels(absl::string_view force = {});

namespace avx512 {
const KernelTable& Table();
}
namespace avx2 {
const KernelTable& Table();
}
namespace generic {
const KernelTable& Table();
}

}  // namespace sparsed::cpu
