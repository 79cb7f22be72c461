// The kernels of the CUDA union sparse FFN (cuda_ffn.h describes the data flow), with the launch
// constants they are compiled for. Included by cuda_ffn.cu only.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "engine/backend/cuda/block_dots.cuh"
#include "engine/backend/cuda/cuda_ffn.h"

namespace sparsed::cuda::ffn_kernels {

constexpr int kGateRows = 4;   // rows per warp in the dense gate
constexpr int kGateWarps = 8;  // warps per gate block
// Rows per warp in the gather up kernel: one for narrow tiles (more warps in flight), two
// otherwise.
template <int TT>
__host__ __device__ constexpr int UpRows() {
  return TT <= 2 ? 1 : 2;
}
constexpr int kUpWarps = 4;
constexpr int kDownUnroll = 8;  // list entries whose loads the down kernel issues together
constexpr int kDownThreads = 64;
// A = act(X·W_gᵀ) for all F neurons; ORs each tile's active bits into its union bitmap.
template <int TT>
__global__ void __launch_bounds__(kGateWarps * 32)
    GateKernel(const float* __restrict__ x, int T, int64_t d, const uint16_t* __restrict__ wg,
               int64_t F, int act, float thr, float* __restrict__ a_out,
               uint32_t* __restrict__ bits, int32_t* __restrict__ stats) {
  const int tile = blockIdx.y, t0 = tile * TT, nt = min(TT, T - t0);
  const int lane = threadIdx.x & 31;
  const int64_t row0 =
      (static_cast<int64_t>(blockIdx.x) * kGateWarps + (threadIdx.x >> 5)) * kGateRows;
  int64_t rows[kGateRows];
#pragma unroll
  for (int r = 0; r < kGateRows; ++r) rows[r] = row0 + r < F ? row0 + r : -1;
  __shared__ __align__(16) float xs[TT * 256 * SpanIters<TT>()];
  float acc[kGateRows][TT];
  BlockDots<TT, kGateRows, SpanIters<TT>()>(x + static_cast<int64_t>(t0) * d, nt, d, wg, rows, acc,
                                            xs);
  if (row0 >= F) return;
  const int64_t words = (F + 31) / 32;
  int active = 0;
#pragma unroll
  for (int r = 0; r < kGateRows; ++r)
#pragma unroll
    for (int t = 0; t < TT; ++t) {
      if (lane == (r * TT + t) % 32 && rows[r] >= 0 && t < nt) {
        const float v = Act(acc[r][t], act, thr);
        a_out[(t0 + t) * F + rows[r]] = v;
        if (v != 0.f) {
          atomicOr(&bits[tile * words + rows[r] / 32], 1u << (rows[r] % 32));
          ++active;
        }
      }
    }
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) active += __shfl_xor_sync(kFull, active, off);
  if (lane == 0 && active) atomicAdd(&stats[tile * 2 + 1], active);
}

// One block per tile: bitmap → ascending index list and per-chunk list offsets; falls back to
// every neuron when the union is denser than `break_even`. Writes the tile's {union size, active
// count} to the working counters `stats` (read by later kernels) and to the layer's `stats_out`
// (the active count was complete when the previous kernel ended).
__global__ void __launch_bounds__(1024)
    CompactKernel(const uint32_t* __restrict__ bits, int64_t F, float break_even,
                  int32_t* __restrict__ list, int32_t* __restrict__ chunk_start, int chunks,
                  int32_t* __restrict__ stats, int32_t* __restrict__ stats_out) {
  __shared__ int32_t scan[32];
  __shared__ int32_t total_s;
  const int tile = blockIdx.x;
  const int64_t words = (F + 31) / 32;
  const uint32_t* b = bits + tile * words;
  int32_t* out = list + tile * F;
  int32_t* cs = chunk_start + tile * (chunks + 1);
  const int per = static_cast<int>((words + blockDim.x - 1) / blockDim.x);
  const int64_t w0 = static_cast<int64_t>(threadIdx.x) * per;
  int count = 0;
  for (int i = 0; i < per; ++i) {
    if (w0 + i < words) count += __popc(b[w0 + i]);
  }
  // Block-wide exclusive scan of the per-thread counts: warp scans, then a scan of warp totals.
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  int incl = count;
#pragma unroll
  for (int off = 1; off < 32; off <<= 1) {
    const int n = __shfl_up_sync(kFull, incl, off);
    if (lane >= off) incl += n;
  }
  if (lane == 31) scan[warp] = incl;
  __syncthreads();
  if (warp == 0) {
    int v = lane < static_cast<int>(blockDim.x >> 5) ? scan[lane] : 0;
#pragma unroll
    for (int off = 1; off < 32; off <<= 1) {
      const int n = __shfl_up_sync(kFull, v, off);
      if (lane >= off) v += n;
    }
    scan[lane] = v;
    if (lane == 31) total_s = v;
  }
  __syncthreads();
  const int exclusive = incl - count + (warp > 0 ? scan[warp - 1] : 0);
  const int total = total_s;
  constexpr int kWordsPerChunk = kChunkNeurons / 32;
  if (total > break_even * static_cast<float>(F)) {
    for (int64_t i = threadIdx.x; i < F; i += blockDim.x) out[i] = static_cast<int32_t>(i);
    for (int c = threadIdx.x; c <= chunks; c += blockDim.x)
      cs[c] = static_cast<int32_t>(int64_t(c) * kChunkNeurons < F ? int64_t(c) * kChunkNeurons : F);
    if (threadIdx.x == 0) {
      stats[tile * 2] = static_cast<int32_t>(F);
      stats_out[tile * 2] = static_cast<int32_t>(F);
      stats_out[tile * 2 + 1] = stats[tile * 2 + 1];
    }
    return;
  }
  int offset = exclusive;
  for (int i = 0; i < per; ++i) {
    const int64_t w = w0 + i;
    if (w >= words) break;
    if (w % kWordsPerChunk == 0) cs[w / kWordsPerChunk] = offset;
    for (uint32_t word = b[w]; word; word &= word - 1)
      out[offset++] = static_cast<int32_t>(w * 32 + __ffs(word) - 1);
  }
  if (threadIdx.x == 0) {
    cs[chunks] = total;
    stats[tile * 2] = total;
    stats_out[tile * 2] = total;
    stats_out[tile * 2 + 1] = stats[tile * 2 + 1];
  }
}

// H[t, k] = A[t, U_k] · (X_t · W_u[U_k]) over the tile's index list.
template <int TT>
__global__ void __launch_bounds__(kUpWarps * 32)
    UpKernel(const float* __restrict__ x, int T, int64_t d, const uint16_t* __restrict__ wu,
             int64_t F, const int32_t* __restrict__ list, const int32_t* __restrict__ stats,
             const float* __restrict__ a_in, float* __restrict__ h) {
  const int tile = blockIdx.y, t0 = tile * TT, nt = min(TT, T - t0);
  const int lane = threadIdx.x & 31;
  const int count = stats[tile * 2];
  if (static_cast<int64_t>(blockIdx.x) * kUpWarps * UpRows<TT>() >= count)
    return;  // whole block idle
  const int64_t k0 =
      (static_cast<int64_t>(blockIdx.x) * kUpWarps + (threadIdx.x >> 5)) * UpRows<TT>();
  int64_t rows[UpRows<TT>()];
#pragma unroll
  for (int r = 0; r < UpRows<TT>(); ++r) rows[r] = k0 + r < count ? list[tile * F + k0 + r] : -1;
  __shared__ __align__(16) float xs[TT * 256 * SpanIters<TT>()];
  float acc[UpRows<TT>()][TT];
  BlockDots<TT, UpRows<TT>(), SpanIters<TT>()>(x + static_cast<int64_t>(t0) * d, nt, d, wu, rows,
                                               acc, xs);
  if (k0 >= count) return;
#pragma unroll
  for (int r = 0; r < UpRows<TT>(); ++r)
#pragma unroll
    for (int t = 0; t < TT; ++t) {
      if (lane == (r * TT + t) % 32 && rows[r] >= 0 && t < nt) {
        const float a = a_in[(t0 + t) * F + rows[r]];
        h[(t0 + t) * F + k0 + r] = a == 0.f ? 0.f : a * acc[r][t];
      }
    }
}

// partial[chunk][t] = Σ over list entries of the chunk, in order, of H[t, k] · W_dT[U_k].
// Entries where H is zero add an exact ±0 (weights are finite), which leaves every partial sum
// unchanged, so the sum equals the token's own active neurons in index order whatever the list.
template <int TT>
__global__ void __launch_bounds__(kDownThreads)
    DownKernel(const float* __restrict__ h, int T, int64_t d, const uint16_t* __restrict__ wdt,
               int64_t F, const int32_t* __restrict__ list, const int32_t* __restrict__ chunk_start,
               int chunks, float* __restrict__ partial) {
  const int tile = blockIdx.z, t0 = tile * TT, nt = min(TT, T - t0);
  const int chunk = blockIdx.y;
  const int64_t col = (static_cast<int64_t>(blockIdx.x) * kDownThreads + threadIdx.x) * 8;
  const int32_t* cs = chunk_start + tile * (chunks + 1);
  const int k0 = cs[chunk], k1 = cs[chunk + 1], n = k1 - k0;
  const int32_t* lst = list + tile * F + k0;
  __shared__ float hs[TT][kChunkNeurons];
  __shared__ int32_t rows[kChunkNeurons];
  for (int i = threadIdx.x; i < TT * n; i += blockDim.x) {
    const int t = i / n, k = i % n;
    hs[t][k] = t < nt ? h[(t0 + t) * F + k0 + k] : 0.f;
  }
  for (int k = threadIdx.x; k < n; k += blockDim.x) rows[k] = lst[k];
  __syncthreads();
  if (col >= d) return;
  float acc[TT][8];
#pragma unroll
  for (int t = 0; t < TT; ++t)
#pragma unroll
    for (int j = 0; j < 8; ++j) acc[t][j] = 0.f;
  int k = 0;
  for (; k + kDownUnroll <= n; k += kDownUnroll) {
    uint4 wv[kDownUnroll];
#pragma unroll
    for (int u = 0; u < kDownUnroll; ++u)
      wv[u] = __ldcs(reinterpret_cast<const uint4*>(wdt + int64_t(rows[k + u]) * d + col));
#pragma unroll
    for (int u = 0; u < kDownUnroll; ++u) {
      float wf[8];
      Unpack8(wv[u], wf);
#pragma unroll
      for (int t = 0; t < TT; ++t) {
        const float hv = hs[t][k + u];
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[t][j] = fmaf(hv, wf[j], acc[t][j]);
      }
    }
  }
  for (; k < n; ++k) {
    float wf[8];
    Unpack8(__ldcs(reinterpret_cast<const uint4*>(wdt + int64_t(rows[k]) * d + col)), wf);
#pragma unroll
    for (int t = 0; t < TT; ++t) {
      const float hv = hs[t][k];
#pragma unroll
      for (int j = 0; j < 8; ++j) acc[t][j] = fmaf(hv, wf[j], acc[t][j]);
    }
  }
#pragma unroll
  for (int t = 0; t < TT; ++t) {
    if (t < nt) {
      float* p = partial + (static_cast<int64_t>(chunk) * T + t0 + t) * d + col;
      reinterpret_cast<float4*>(p)[0] = make_float4(acc[t][0], acc[t][1], acc[t][2], acc[t][3]);
      reinterpret_cast<float4*>(p)[1] = make_float4(acc[t][4], acc[t][5], acc[t][6], acc[t][7]);
    }
  }
}

// y[t, c] = Σ_chunk partial[chunk][t][c], chunks in order.
__global__ void __launch_bounds__(128) ReduceKernel(const float* __restrict__ partial, int chunks,
                                                    int T, int64_t d, float* __restrict__ y) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= T * d) return;
  // Loads issued eight at a time; the additions stay in chunk order.
  float s = 0.f;
  int c = 0;
  for (; c + 8 <= chunks; c += 8) {
    float v[8];
#pragma unroll
    for (int j = 0; j < 8; ++j) v[j] = partial[(c + j) * T * d + i];
#pragma unroll
    for (int j = 0; j < 8; ++j) s += v[j];
  }
  for (; c < chunks; ++c) s += partial[c * T * d + i];
  y[i] = s;
}

// Threshold mode: on H by neuron id (identity lists), zeroes x1 where |x1| < thr[i] and writes
// each tile's union bitmap (one warp owns one 32-neuron word: no atomics) and active count.
__global__ void __launch_bounds__(256)
    ThresholdMaskKernel(float* __restrict__ h, int T, int tile_tokens, int64_t F,
                        const float* __restrict__ thr, uint32_t* __restrict__ bits,
                        int32_t* __restrict__ stats) {
  const int tile = blockIdx.y, t0 = tile * tile_tokens, nt = min(tile_tokens, T - t0);
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  bool any = false;
  int active = 0;
  if (i < F) {
    const float limit = thr[i];
    for (int t = 0; t < nt; ++t) {
      float* v = h + (t0 + t) * F + i;
      if (fabsf(*v) >= limit) {
        any = true;
        ++active;
      } else {
        *v = 0.f;
      }
    }
  }
  const uint32_t word = __ballot_sync(kFull, any);
  for (int off = 16; off > 0; off >>= 1) active += __shfl_xor_sync(kFull, active, off);
  const int64_t words = (F + 31) / 32;
  if ((threadIdx.x & 31) == 0 && i < F) {
    bits[tile * words + i / 32] = word;
    if (active) atomicAdd(&stats[tile * 2 + 1], active);
  }
}

// h2[t, k] = h[t, list[k]]: H by neuron id → H by union position, for the down kernel.
__global__ void __launch_bounds__(256)
    GatherUnionKernel(const float* __restrict__ h, int T, int tile_tokens, int64_t F,
                      const int32_t* __restrict__ list, const int32_t* __restrict__ stats,
                      float* __restrict__ h2) {
  const int tile = blockIdx.y, t0 = tile * tile_tokens, nt = min(tile_tokens, T - t0);
  const int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k >= stats[tile * 2]) return;
  const int32_t id = list[tile * F + k];
  for (int t = 0; t < nt; ++t) h2[(t0 + t) * F + k] = h[(t0 + t) * F + id];
}

__global__ void ActMulBf16Kernel(__nv_bfloat16* g, const __nv_bfloat16* u, int64_t n, int act,
                                 float thr) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n)
    g[i] = __float2bfloat16(Act(__bfloat162float(g[i]), act, thr) * __bfloat162float(u[i]));
}

}  // namespace sparsed::cuda::ffn_kernels
