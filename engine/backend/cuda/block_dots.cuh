// Building blocks shared by the CUDA kernels (FFN and dense ops): bf16 unpacking, the block-wide
// dot products of weight rows with token rows, and the FFN activations.
// Device code only; include from .cu files.
#pragma once

#include <cstdint>

namespace sparsed::cuda {

constexpr unsigned kFull = 0xffffffffu;

__device__ __forceinline__ void Unpack8(const uint4 v, float f[8]) {
  const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    f[2 * i] = __uint_as_float(w[i] << 16);
    f[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
  }
}

// act: 0 relu, 1 relu2, 2 fatrelu (threshold thr), 3 silu, 4 gelu (erf), 5 gelu (tanh).
__device__ __forceinline__ float Act(float g, int act, float thr) {
  switch (act) {
    case 0:  // relu
      return g > 0.f ? g : 0.f;
    case 1:  // relu2
      return g > 0.f ? g * g : 0.f;
    case 2:  // fatrelu
      return (g >= thr && g > 0.f) ? g : 0.f;
    case 4:  // gelu
      return 0.5f * g * (1.f + erff(g * 0.70710678118654752f));
    case 5:  // gelu, tanh approximation
      return 0.5f * g * (1.f + tanhf(0.7978845608028654f * (g + 0.044715f * g * g * g)));
    default:  // silu
      return g / (1.f + __expf(-g));
  }
}

// Dots of R weight rows with TT token rows of x, for every warp of a block; each lane ends with
// every sum of its warp. The block stages x[:, c0 .. c0 + 256·U) in shared memory (xs holds
// TT × 256·U floats) so the rows of all warps reuse it instead of re-reading x from L2.
// Lane l reads hidden positions [l·8 + 256·i, +8) for i = 0, 1, ... in order; products are fused
// in index order and the warp reduction is a fixed butterfly, so each (token, row) result
// depends only on its inputs — never on R, U, TT or the other rows. Every thread of the block
// must call this (it synchronises); warps without rows pass rows[r] = -1.
template <int TT, int R, int U>
__device__ __forceinline__ void BlockDots(const float* __restrict__ x, int nt, int64_t d,
                                          const uint16_t* __restrict__ w, const int64_t rows[R],
                                          float acc[R][TT], float* __restrict__ xs) {
  constexpr int kSpan = 256 * U;
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int t = 0; t < TT; ++t) acc[r][t] = 0.f;
  for (int64_t c0 = 0; c0 < d; c0 += kSpan) {
    // Issue this span's weight loads first; stage x while they are in flight.
    uint4 wv[U][R];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int64_t c = c0 + 256 * u + lane * 8;
#pragma unroll
      for (int r = 0; r < R; ++r) {
        // Weights stream through once: evict-first loads.
        wv[u][r] = (c < d && rows[r] >= 0)
                       ? __ldcs(reinterpret_cast<const uint4*>(w + rows[r] * d + c))
                       : make_uint4(0, 0, 0, 0);
      }
    }
    __syncthreads();  // the previous span's xs is no longer read
    // Layout [t][half][u][lane] of float4: a lane's two float4 of one span step sit in two
    // planes, so eight consecutive lanes read 128 consecutive bytes (no bank conflicts).
    for (int i = threadIdx.x; i < TT * kSpan / 4; i += blockDim.x) {
      const int t = i / (kSpan / 4), q = i % (kSpan / 4);  // q: float4 index within the span
      const int64_t c = c0 + 4 * q;
      const int half = q & 1, lane_u = q >> 1;  // lane_u = u·32 + lane
      reinterpret_cast<float4*>(xs)[(t * 2 + half) * (kSpan / 8) + lane_u] =
          (t < nt && c < d) ? __ldg(reinterpret_cast<const float4*>(x + t * d + c))
                            : make_float4(0.f, 0.f, 0.f, 0.f);
    }
    __syncthreads();
#pragma unroll
    for (int u = 0; u < U; ++u) {
      if (c0 + 256 * u + lane * 8 >= d) break;
      float wf[R][8];
#pragma unroll
      for (int r = 0; r < R; ++r) Unpack8(wv[u][r], wf[r]);
#pragma unroll
      for (int t = 0; t < TT; ++t) {
        if (t < nt) {
          const float4* xt =
              reinterpret_cast<const float4*>(xs) + t * 2 * (kSpan / 8) + u * 32 + lane;
          const float4 x0 = xt[0];
          const float4 x1 = xt[kSpan / 8];
#pragma unroll
          for (int r = 0; r < R; ++r) {
            float a = acc[r][t];
            a = fmaf(wf[r][0], x0.x, a);
            a = fmaf(wf[r][1], x0.y, a);
            a = fmaf(wf[r][2], x0.z, a);
            a = fmaf(wf[r][3], x0.w, a);
            a = fmaf(wf[r][4], x1.x, a);
            a = fmaf(wf[r][5], x1.y, a);
            a = fmaf(wf[r][6], x1.z, a);
            a = fmaf(wf[r][7], x1.w, a);
            acc[r][t] = a;
          }
        }
      }
    }
  }
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int t = 0; t < TT; ++t)
#pragma unroll
      for (int off = 16; off > 0; off >>= 1) acc[r][t] += __shfl_xor_sync(kFull, acc[r][t], off);
}

// Span of x staged per step: smaller for wide token tiles to bound shared memory (32 KiB).
template <int TT>
__host__ __device__ constexpr int SpanIters() {
  return TT >= 8 ? 2 : 4;
}

// Token-tile width for T tokens: the smallest of 1, 2, 4, 8 that holds them, else `max_tile`.
// Results never depend on it (BlockDots above).
inline int TileTokens(int T, int max_tile) {
  if (T <= 1) return 1;
  if (T <= 2) return 2;
  if (T <= 4) return 4;
  if (T <= 8) return 8;
  return max_tile;
}

}  // namespace sparsed::cuda
