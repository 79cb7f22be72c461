// Kernels of the dense operations of the forward pass (see cuda_ops.h).
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <type_traits>

#include "engine/backend/cuda/block_dots.cuh"
#include "engine/backend/cuda/cuda_ffn.h"
#include "engine/backend/cuda/cuda_ops.h"
#include "engine/backend/cuda/cuda_status.h"

namespace sparsed::cuda {
namespace {

absl::Status LaunchStatus(const char* what) { return CudaStatus(what, cudaGetLastError()); }

constexpr int kAttnThreads = 128;
constexpr int kAttnSplit = 128;  // positions per attention block

// Calls f(std::integral_constant<int, TT>{}) with the token-tile width for T tokens.
template <class F>
void WithTileTokens(int T, F&& f) {
  switch (TileTokens(T, kMaxTileTokens)) {
    case 1:
      return f(std::integral_constant<int, 1>{});
    case 2:
      return f(std::integral_constant<int, 2>{});
    case 4:
      return f(std::integral_constant<int, 4>{});
    case 8:
      return f(std::integral_constant<int, 8>{});
    default:
      return f(std::integral_constant<int, kMaxTileTokens>{});
  }
}

__global__ void EmbedKernel(const uint16_t* __restrict__ table, int64_t d,
                            const int32_t* __restrict__ ids, float scale, float* __restrict__ out) {
  const int t = blockIdx.x;
  const uint16_t* row = table + static_cast<int64_t>(ids[t]) * d;
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
    out[t * d + i] = __uint_as_float(static_cast<uint32_t>(row[i]) << 16) * scale;
  }
}

// One block of 256 threads per token; a fixed-shape tree sums the squares in double.
__global__ void __launch_bounds__(256)
    RmsNormKernel(const float* __restrict__ x, const float* __restrict__ w, int d, float eps,
                  float* __restrict__ out) {
  __shared__ double part[256];
  const int t = blockIdx.x;
  const float* xt = x + static_cast<int64_t>(t) * d;
  double ss = 0;
  for (int i = threadIdx.x; i < d; i += 256) ss += static_cast<double>(xt[i]) * xt[i];
  part[threadIdx.x] = ss;
  __syncthreads();
  for (int s = 128; s > 0; s >>= 1) {
    if (threadIdx.x < s) part[threadIdx.x] += part[threadIdx.x + s];
    __syncthreads();
  }
  const float inv = static_cast<float>(1.0 / sqrt(part[0] / d + eps));
  float* ot = out + static_cast<int64_t>(t) * d;
  for (int i = threadIdx.x; i < d; i += 256) ot[i] = xt[i] * inv * w[i];
}

// y = x · Wᵀ for up to three matrices in one grid (the first nb0 blocks serve a, the next nb1
// b, the rest c); R weight rows per warp, W warps per block. row_ids (device, or null) maps a's
// output rows to weight rows.
template <int TT, int R, int W>
__global__ void __launch_bounds__(W * 32)
    MatMulKernel(const float* __restrict__ x, int T, int64_t cols, MatMulOut a, MatMulOut b,
                 MatMulOut c, int nb0, int nb1, const int32_t* __restrict__ row_ids) {
  int blk = blockIdx.x;
  MatMulOut m = a;
  if (blk >= nb0 + nb1) {
    m = c;
    blk -= nb0 + nb1;
    row_ids = nullptr;
  } else if (blk >= nb0) {
    m = b;
    blk -= nb0;
    row_ids = nullptr;
  }
  const int t0 = blockIdx.y * TT, nt = min(TT, T - t0);
  const int lane = threadIdx.x & 31;
  const int64_t i0 = (static_cast<int64_t>(blk) * W + (threadIdx.x >> 5)) * R;
  int64_t rows[R];
#pragma unroll
  for (int r = 0; r < R; ++r) {
    rows[r] = i0 + r < m.n ? (row_ids ? row_ids[i0 + r] : i0 + r) : -1;
  }
  __shared__ __align__(16) float xs[TT * 256 * SpanIters<TT>()];
  float acc[R][TT];
  BlockDots<TT, R, SpanIters<TT>()>(x + static_cast<int64_t>(t0) * cols, nt, cols, m.w, rows, acc,
                                    xs);
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int t = 0; t < TT; ++t) {
      if (lane == (r * TT + t) % 32 && rows[r] >= 0 && t < nt) {
        m.y[(t0 + t) * m.n + i0 + r] = acc[r][t];
      }
    }
}

template <int TT, int R, int W>
void LaunchMatMulRW(const float* x, int T, int64_t cols, const MatMulOut& a, const MatMulOut& b,
                    const MatMulOut& c, const int32_t* row_ids, cudaStream_t st) {
  auto blocks = [](int64_t n) { return static_cast<int>((n + W * R - 1) / (W * R)); };
  const int nb0 = blocks(a.n), nb1 = blocks(b.n), nb2 = blocks(c.n);
  const dim3 grid(nb0 + nb1 + nb2, (T + TT - 1) / TT);
  MatMulKernel<TT, R, W><<<grid, W * 32, 0, st>>>(x, T, cols, a, b, c, nb0, nb1, row_ids);
}

// layout 1: 4 rows per warp, 8 warps per block (fewer, fuller blocks); 2: 2 rows per warp,
// 4 warps per block (4× the blocks, for matrices too small to fill the GPU otherwise).
template <int TT>
void LaunchMatMul(const float* x, int T, const uint16_t* w, int64_t cols, const int32_t* rows,
                  int64_t n, float* y, int layout, cudaStream_t st) {
  const MatMulOut a{w, n, y}, none{nullptr, 0, nullptr};
  if (layout == 2) {
    LaunchMatMulRW<TT, 2, 4>(x, T, cols, a, none, none, rows, st);
  } else {
    LaunchMatMulRW<TT, 4, 8>(x, T, cols, a, none, none, rows, st);
  }
}

__global__ void AddScaledKernel(float* __restrict__ y, const float* __restrict__ x, size_t n,
                                float s) {
  const size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) y[i] += s * x[i];
}

__global__ void RopeKernel(float* __restrict__ q, float* __restrict__ k,
                           const float* __restrict__ cos, const float* __restrict__ sin, int heads,
                           int kv_heads, int hd) {
  const int t = blockIdx.x, half = hd / 2;
  const float* c = cos + static_cast<int64_t>(t) * half;
  const float* s = sin + static_cast<int64_t>(t) * half;
  for (int p = threadIdx.x; p < (heads + kv_heads) * half; p += blockDim.x) {
    const int h = p / half, i = p % half;
    float* v = h < heads ? q + (static_cast<int64_t>(t) * heads + h) * hd
                         : k + (static_cast<int64_t>(t) * kv_heads + (h - heads)) * hd;
    const float a = v[i], b = v[i + half];
    v[i] = a * c[i] - b * s[i];
    v[i + half] = b * c[i] + a * s[i];
  }
}

// Cache elements: fp32, or bf16 bits (rounded to nearest even, as the CPU backend rounds).
__device__ inline float KvLoad(float x) { return x; }
__device__ inline float KvLoad(uint16_t x) {
  return __uint_as_float(static_cast<uint32_t>(x) << 16);
}
__device__ inline void KvStore(float x, float* dst) { *dst = x; }
__device__ inline void KvStore(float x, uint16_t* dst) {
  *dst = __bfloat16_as_ushort(__float2bfloat16_rn(x));
}

template <class E>
__global__ void WriteKvKernel(E* __restrict__ kc, E* __restrict__ vc, const float* __restrict__ k,
                              const float* __restrict__ v, const int32_t* __restrict__ slots,
                              int width) {
  const int t = blockIdx.x;
  const int64_t dst = static_cast<int64_t>(slots[t]) * width;
  for (int i = threadIdx.x; i < width; i += blockDim.x) {
    KvStore(k[static_cast<int64_t>(t) * width + i], kc + dst + i);
    KvStore(v[static_cast<int64_t>(t) * width + i], vc + dst + i);
  }
}

// Fixed-order block reduction over kAttnThreads threads (max or sum).
template <bool kMax>
__device__ float BlockReduce(float v, float* scratch) {
  for (int off = 16; off > 0; off >>= 1) {
    const float o = __shfl_xor_sync(kFull, v, off);
    v = kMax ? fmaxf(v, o) : v + o;
  }
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float r = scratch[0];
  for (int i = 1; i < kAttnThreads / 32; ++i) r = kMax ? fmaxf(r, scratch[i]) : r + scratch[i];
  __syncthreads();
  return r;
}

// One block per (head, token, split of kAttnSplit positions): scores of the split in shared
// memory, their max m and Σ exp(score − m) = l, and acc = Σ exp(score − m)·v in position order.
// A token whose positions fit one split writes acc / l to `out` directly; otherwise the split's
// (m, l, acc) go to `part` for the combine kernel. Which of the two a token takes depends only on
// its own length, so its result never depends on its batch-mates.
template <class E>
__global__ void __launch_bounds__(kAttnThreads)
    AttentionSplitKernel(const E* __restrict__ kc, const E* __restrict__ vc,
                         const float* __restrict__ q, const int32_t* __restrict__ positions,
                         const int32_t* __restrict__ table_start,
                         const int32_t* __restrict__ tables, int heads, int kv_heads, int hd,
                         int bs, float scale, int max_splits, float* __restrict__ part,
                         float* __restrict__ out) {
  extern __shared__ float smem[];
  __shared__ float red[kAttnThreads / 32];
  const int h = blockIdx.x, t = blockIdx.y, split = blockIdx.z, g = h / (heads / kv_heads);
  const int n = positions[t] + 1;
  const int j0 = split * kAttnSplit, j1 = min(n, j0 + kAttnSplit);
  if (j0 >= n) return;
  const int32_t* table = tables + table_start[t];
  float* qs = smem;
  float* scores = smem + hd;
  const float* qh = q + (static_cast<int64_t>(t) * heads + h) * hd;
  for (int i = threadIdx.x; i < hd; i += kAttnThreads) qs[i] = qh[i];
  __syncthreads();
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t row = static_cast<int64_t>(kv_heads) * hd;
  for (int j = j0 + warp; j < j1; j += kAttnThreads / 32) {
    const int64_t slot = static_cast<int64_t>(table[j / bs]) * bs + j % bs;
    const E* kj = kc + slot * row + static_cast<int64_t>(g) * hd;
    float dot = 0.f;
    for (int i = lane; i < hd; i += 32) dot = fmaf(qs[i], KvLoad(kj[i]), dot);
    for (int off = 16; off > 0; off >>= 1) dot += __shfl_xor_sync(kFull, dot, off);
    if (lane == 0) scores[j - j0] = dot * scale;
  }
  __syncthreads();
  float mx = -INFINITY;
  for (int j = threadIdx.x; j < j1 - j0; j += kAttnThreads) mx = fmaxf(mx, scores[j]);
  mx = BlockReduce<true>(mx, red);
  float sum = 0.f;
  for (int j = threadIdx.x; j < j1 - j0; j += kAttnThreads) {
    const float e = expf(scores[j] - mx);
    scores[j] = e;
    sum += e;
  }
  sum = BlockReduce<false>(sum, red);  // also orders the writes above before the reads below
  const bool single = n <= kAttnSplit;
  const int64_t unit = (static_cast<int64_t>(t) * heads + h) * max_splits + split;
  float* acc_out =
      single ? out + (static_cast<int64_t>(t) * heads + h) * hd : part + unit * (hd + 2) + 2;
  const float inv = single ? 1.f / sum : 1.f;
  for (int i = threadIdx.x; i < hd; i += kAttnThreads) {
    float acc = 0.f;
    for (int j = j0; j < j1; ++j) {
      const int64_t slot = static_cast<int64_t>(table[j / bs]) * bs + j % bs;
      acc = fmaf(scores[j - j0], KvLoad(vc[slot * row + static_cast<int64_t>(g) * hd + i]), acc);
    }
    acc_out[i] = acc * inv;
  }
  if (!single && threadIdx.x == 0) {
    part[unit * (hd + 2)] = mx;
    part[unit * (hd + 2) + 1] = sum;
  }
}

// One block per (head, token) longer than one split: merges the splits in order.
__global__ void __launch_bounds__(kAttnThreads)
    AttentionCombineKernel(const float* __restrict__ part, const int32_t* __restrict__ positions,
                           int heads, int hd, int max_splits, float* __restrict__ out) {
  const int h = blockIdx.x, t = blockIdx.y;
  const int n = positions[t] + 1;
  if (n <= kAttnSplit) return;
  const int splits = (n + kAttnSplit - 1) / kAttnSplit;
  const float* p = part + (static_cast<int64_t>(t) * heads + h) * max_splits * (hd + 2);
  float m = -INFINITY;
  for (int s = 0; s < splits; ++s) m = fmaxf(m, p[s * (hd + 2)]);
  float l = 0.f;
  for (int s = 0; s < splits; ++s) l += p[s * (hd + 2) + 1] * expf(p[s * (hd + 2)] - m);
  const float inv = 1.f / l;
  float* oh = out + (static_cast<int64_t>(t) * heads + h) * hd;
  for (int i = threadIdx.x; i < hd; i += kAttnThreads) {
    float acc = 0.f;
    for (int s = 0; s < splits; ++s) {
      acc = fmaf(p[s * (hd + 2) + 2 + i], expf(p[s * (hd + 2)] - m), acc);
    }
    oh[i] = acc * inv;
  }
}

__global__ void Bf16ToF32Kernel(const uint16_t* __restrict__ src, float* __restrict__ dst,
                                size_t n) {
  const size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) dst[i] = __uint_as_float(static_cast<uint32_t>(src[i]) << 16);
}

}  // namespace

absl::Status Embed(const uint16_t* table, int64_t d, const int32_t* ids, int T, float scale,
                   float* out, void* stream) {
  if (T <= 0) return absl::OkStatus();
  EmbedKernel<<<T, 256, 0, static_cast<cudaStream_t>(stream)>>>(table, d, ids, scale, out);
  return LaunchStatus("embedding kernel");
}

absl::Status RmsNorm(const float* x, const float* w, int T, int d, float eps, float* out,
                     void* stream) {
  if (T <= 0) return absl::OkStatus();
  RmsNormKernel<<<T, 256, 0, static_cast<cudaStream_t>(stream)>>>(x, w, d, eps, out);
  return LaunchStatus("RMSNorm kernel");
}

absl::Status MatMul(const float* x, int T, const uint16_t* w, int64_t cols, const int32_t* rows,
                    int64_t n, float* y, int layout, void* stream) {
  if (T <= 0 || n <= 0) return absl::OkStatus();
  if (cols % 8 != 0)
    return absl::InvalidArgumentError("matrix columns must be a multiple of 8 on CUDA");
  if (layout == 0) layout = n < 16384 ? 2 : 1;
  WithTileTokens(T, [&](auto tile) {
    LaunchMatMul<decltype(tile)::value>(x, T, w, cols, rows, n, y, layout,
                                        static_cast<cudaStream_t>(stream));
  });
  return LaunchStatus("matrix product kernel");
}

absl::Status MatMul3(const float* x, int T, int64_t cols, const MatMulOut& a, const MatMulOut& b,
                     const MatMulOut& c, void* stream) {
  if (T <= 0) return absl::OkStatus();
  if (cols % 8 != 0)
    return absl::InvalidArgumentError("matrix columns must be a multiple of 8 on CUDA");
  WithTileTokens(T, [&](auto tile) {
    LaunchMatMulRW<decltype(tile)::value, 2, 4>(x, T, cols, a, b, c, nullptr,
                                                static_cast<cudaStream_t>(stream));
  });
  return LaunchStatus("fused matrix product kernel");
}

absl::Status CublasMatMul(void* handle, const float* x, int T, const uint16_t* w, int64_t cols,
                          int64_t n, void* x_bf16, float* y, void* stream) {
  if (T <= 0 || n <= 0) return absl::OkStatus();
  RETURN_IF_ERROR(ConvertToBf16(x, x_bf16, static_cast<size_t>(T) * cols, stream));
  RETURN_IF_ERROR(CublasStatus(
      "cublasSetStream",
      cublasSetStream(static_cast<cublasHandle_t>(handle), static_cast<cudaStream_t>(stream))));
  const float one = 1.f, zero = 0.f;
  // Column-major view: Yᵀ [n × T] = W (col-major cols × n, transposed) · Xᵀ (cols × T).
  const cublasStatus_t st =
      cublasGemmEx(static_cast<cublasHandle_t>(handle), CUBLAS_OP_T, CUBLAS_OP_N,
                   static_cast<int>(n), T, static_cast<int>(cols), &one, w, CUDA_R_16BF,
                   static_cast<int>(cols), x_bf16, CUDA_R_16BF, static_cast<int>(cols), &zero, y,
                   CUDA_R_32F, static_cast<int>(n), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  RETURN_IF_ERROR(CublasStatus("cublasGemmEx", st));
  return absl::OkStatus();
}

absl::Status AddScaled(float* y, const float* x, size_t n, float scale, void* stream) {
  if (n == 0) return absl::OkStatus();
  AddScaledKernel<<<static_cast<unsigned>((n + 255) / 256), 256, 0,
                    static_cast<cudaStream_t>(stream)>>>(y, x, n, scale);
  return LaunchStatus("residual kernel");
}

absl::Status Rope(float* q, float* k, const float* cos, const float* sin, int T, int heads,
                  int kv_heads, int head_dim, void* stream) {
  if (T <= 0) return absl::OkStatus();
  RopeKernel<<<T, 128, 0, static_cast<cudaStream_t>(stream)>>>(q, k, cos, sin, heads, kv_heads,
                                                               head_dim);
  return LaunchStatus("rotary kernel");
}

absl::Status WriteKv(const PagedLayer& layer, const float* k, const float* v, const int32_t* slots,
                     int T, void* stream) {
  if (T <= 0) return absl::OkStatus();
  const auto st = static_cast<cudaStream_t>(stream);
  const int width = layer.kv_heads * layer.head_dim;
  if (layer.bf16) {
    WriteKvKernel<<<T, 128, 0, st>>>(static_cast<uint16_t*>(layer.k),
                                     static_cast<uint16_t*>(layer.v), k, v, slots, width);
  } else {
    WriteKvKernel<<<T, 128, 0, st>>>(static_cast<float*>(layer.k), static_cast<float*>(layer.v), k,
                                     v, slots, width);
  }
  return LaunchStatus("KV write kernel");
}

int AttentionSplits(int max_len) { return (max_len + kAttnSplit - 1) / kAttnSplit; }

size_t AttentionScratchFloats(int T, int heads, int head_dim, int max_len) {
  const int splits = AttentionSplits(max_len);
  return splits <= 1 ? 0 : static_cast<size_t>(T) * heads * splits * (head_dim + 2);
}

absl::Status Attention(const PagedLayer& layer, const float* q, const int32_t* positions,
                       const int32_t* table_start, const int32_t* tables, int T, int heads,
                       int max_len, float* scratch, float* out, void* stream) {
  if (T <= 0) return absl::OkStatus();
  const auto st = static_cast<cudaStream_t>(stream);
  const int splits = AttentionSplits(max_len);
  if (splits > 1 && scratch == nullptr)
    return absl::InvalidArgumentError("attention over several splits needs scratch");
  const size_t smem = sizeof(float) * (static_cast<size_t>(layer.head_dim) + kAttnSplit);
  const float scale = 1.f / std::sqrt(static_cast<float>(layer.head_dim));
  auto split = [&](auto* kc, auto* vc) {
    AttentionSplitKernel<<<dim3(heads, T, splits), kAttnThreads, smem, st>>>(
        kc, vc, q, positions, table_start, tables, heads, layer.kv_heads, layer.head_dim,
        layer.block_size, scale, splits, scratch, out);
  };
  if (layer.bf16) {
    split(static_cast<const uint16_t*>(layer.k), static_cast<const uint16_t*>(layer.v));
  } else {
    split(static_cast<const float*>(layer.k), static_cast<const float*>(layer.v));
  }
  if (splits > 1) {
    AttentionCombineKernel<<<dim3(heads, T), kAttnThreads, 0, st>>>(scratch, positions, heads,
                                                                    layer.head_dim, splits, out);
  }
  return LaunchStatus("attention kernel");
}

absl::Status Bf16ToF32(const void* src, float* dst, size_t n, void* stream) {
  if (n == 0) return absl::OkStatus();
  Bf16ToF32Kernel<<<static_cast<unsigned>((n + 255) / 256), 256, 0,
                    static_cast<cudaStream_t>(stream)>>>(static_cast<const uint16_t*>(src), dst, n);
  return LaunchStatus("bf16 conversion kernel");
}

}  // namespace sparsed::cuda
