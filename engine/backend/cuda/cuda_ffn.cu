// Kernels of the CUDA union sparse FFN (see cuda_ffn.h for the data flow).
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <string>
#include <type_traits>
#include <vector>

#include "engine/backend/cuda/block_dots.cuh"
#include "engine/backend/cuda/cuda_ffn.h"

namespace sparsed::cuda {
namespace {

#define CUDA_TRY(expr)                                                                \
  do {                                                                                \
    cudaError_t _e = (expr);                                                          \
    if (_e != cudaSuccess) return std::string(#expr) + ": " + cudaGetErrorString(_e); \
  } while (0)

#define CUBLAS_TRY(expr)                                                        \
  do {                                                                          \
    cublasStatus_t _s = (expr);                                                 \
    if (_s != CUBLAS_STATUS_SUCCESS)                                            \
      return std::string(#expr) + ": cuBLAS status " + std::to_string(int(_s)); \
  } while (0)

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

__global__ void ToBf16Kernel(const float* src, __nv_bfloat16* dst, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) dst[i] = __float2bfloat16(src[i]);
}

int ActCode(Activation a) {
  switch (a) {
    case Activation::kRelu:
      return 0;
    case Activation::kRelu2:
      return 1;
    case Activation::kFatRelu:
      return 2;
    case Activation::kSilu:
      return 3;
    case Activation::kGelu:
      return 4;
    case Activation::kGeluTanh:
      return 5;
  }
  return 3;
}

template <int TT>
void LaunchSparse(const float* x, int T, int64_t d, int64_t F, const uint16_t* wg,
                  const uint16_t* wu, const uint16_t* wdt, int act, float thr, float break_even,
                  const float* neuron_thr, float* a, uint32_t* bits, int32_t* list, int32_t* cs,
                  int32_t* stats, int32_t* stats_out, float* h, float* partial, float* y,
                  cudaStream_t st, const std::function<void(int)>& mark) {
  const int tiles = (T + TT - 1) / TT;
  const int chunks = static_cast<int>((F + kChunkNeurons - 1) / kChunkNeurons);
  const dim3 gate_grid(
      static_cast<unsigned>((F + kGateWarps * kGateRows - 1) / (kGateWarps * kGateRows)), tiles);
  const dim3 up_grid(
      static_cast<unsigned>((F + kUpWarps * UpRows<TT>() - 1) / (kUpWarps * UpRows<TT>())), tiles);
  mark(0);
  GateKernel<TT><<<gate_grid, kGateWarps * 32, 0, st>>>(x, T, d, wg, F, act, thr, a, bits, stats);
  mark(1);
  float* h_down = h;
  if (neuron_thr == nullptr) {
    CompactKernel<<<tiles, 1024, 0, st>>>(bits, F, break_even, list, cs, chunks, stats, stats_out);
    mark(2);
    UpKernel<TT><<<up_grid, kUpWarps * 32, 0, st>>>(x, T, d, wu, F, list, stats, a, h);
  } else {
    // Threshold mode: x1 of every neuron (identity lists), then the per-token masks by
    // threshold, their per-tile unions, and H gathered by union position (into `a`, now free).
    CompactKernel<<<tiles, 1024, 0, st>>>(bits, F, -1.f, list, cs, chunks, stats, stats_out);
    mark(2);
    UpKernel<TT><<<up_grid, kUpWarps * 32, 0, st>>>(x, T, d, wu, F, list, stats, a, h);
    const int64_t words = (F + 31) / 32;
    cudaMemsetAsync(bits, 0, sizeof(uint32_t) * tiles * words + sizeof(int32_t) * tiles * 2, st);
    const dim3 by_neuron(static_cast<unsigned>((F + 255) / 256), tiles);
    ThresholdMaskKernel<<<by_neuron, 256, 0, st>>>(h, T, TT, F, neuron_thr, bits, stats);
    CompactKernel<<<tiles, 1024, 0, st>>>(bits, F, break_even, list, cs, chunks, stats, stats_out);
    GatherUnionKernel<<<by_neuron, 256, 0, st>>>(h, T, TT, F, list, stats, a);
    h_down = a;
  }
  mark(3);
  const dim3 down_grid(static_cast<unsigned>((d / 8 + kDownThreads - 1) / kDownThreads), chunks,
                       tiles);
  DownKernel<TT>
      <<<down_grid, kDownThreads, 0, st>>>(h_down, T, d, wdt, F, list, cs, chunks, partial);
  mark(4);
  const int64_t n = T * d;
  ReduceKernel<<<static_cast<unsigned>((n + 127) / 128), 128, 0, st>>>(partial, chunks, T, d, y);
  mark(5);
}

// Records events between launches when asked, and turns them into per-phase milliseconds.
class PhaseTimer {
 public:
  PhaseTimer(std::vector<float>* out, int marks, cudaStream_t stream = nullptr)
      : out_(out), stream_(stream) {
    if (out_) {
      events_.resize(marks);
      for (auto& e : events_) cudaEventCreate(&e);
    }
  }
  ~PhaseTimer() {
    for (auto& e : events_) cudaEventDestroy(e);
  }
  void Mark(int i) {
    if (out_) cudaEventRecord(events_[i], stream_);
  }
  void Finish() {
    if (!out_) return;
    cudaEventSynchronize(events_.back());
    out_->clear();
    for (size_t i = 1; i < events_.size(); ++i) {
      float ms = 0;
      cudaEventElapsedTime(&ms, events_[i - 1], events_[i]);
      out_->push_back(ms);
    }
  }

 private:
  std::vector<float>* out_;
  cudaStream_t stream_;
  std::vector<cudaEvent_t> events_;
};

}  // namespace

std::string ProbeDevice(std::string* device_name) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return std::string("no CUDA device: ") + cudaGetErrorString(e);
  }
  if (n == 0) return "no CUDA device";
  cudaDeviceProp p{};
  CUDA_TRY(cudaGetDeviceProperties(&p, 0));
  if (device_name) *device_name = p.name;
  return "";
}

std::shared_ptr<FfnWorkspace> FfnWorkspace::Create(std::string* error) {
  auto w = std::shared_ptr<FfnWorkspace>(new FfnWorkspace());
  cublasHandle_t h;
  if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS) {
    *error = "cublasCreate failed";
    return nullptr;
  }
  w->cublas_ = h;
  // A blocking stream: ordered with the legacy default stream that callers synchronise on.
  cudaStream_t st;
  if (const cudaError_t e = cudaStreamCreate(&st); e != cudaSuccess) {
    *error = std::string("cudaStreamCreate: ") + cudaGetErrorString(e);
    return nullptr;
  }
  w->stream_ = st;
  if (cublasSetStream(h, st) != CUBLAS_STATUS_SUCCESS) {
    *error = "cublasSetStream failed";
    return nullptr;
  }
  return w;
}

FfnWorkspace::~FfnWorkspace() {
  for (Buffer* b : {&act_, &h_, &bits_, &list_, &chunk_start_, &partial_, &dense_g_, &dense_u_}) {
    if (b->p) cudaFree(b->p);
  }
  if (cublas_) cublasDestroy(static_cast<cublasHandle_t>(cublas_));
  if (stream_) cudaStreamDestroy(static_cast<cudaStream_t>(stream_));
}

size_t FfnWorkspace::bytes() const {
  size_t n = 0;
  for (const Buffer* b :
       {&act_, &h_, &bits_, &list_, &chunk_start_, &partial_, &dense_g_, &dense_u_})
    n += b->bytes;
  return n;
}

std::string FfnWorkspace::Reserve(Buffer& b, size_t bytes) {
  if (bytes <= b.bytes) return "";
  // cudaFree waits for the device, so work still reading the old buffer finishes first.
  if (b.p) cudaFree(b.p);
  b.p = nullptr;
  b.bytes = 0;
  ++generation_;  // captured graphs point at the old buffer
  CUDA_TRY(cudaMalloc(&b.p, bytes));
  b.bytes = bytes;
  return "";
}

std::string FfnWorkspace::EnsureSparse(const FfnShape& shape, int T) {
  const size_t F = shape.neurons, d = shape.hidden, n = T;
  const size_t tiles = n;  // upper bound on tiles (tile size ≥ 1)
  const size_t chunks = (F + kChunkNeurons - 1) / kChunkNeurons;
  for (auto [b, bytes] :
       {std::pair{&act_, sizeof(float) * n * F},
        {&h_, sizeof(float) * n * F},
        // Union bitmaps and tile counters in one buffer: one memset clears both.
        {&bits_, sizeof(uint32_t) * tiles * ((F + 31) / 32) + sizeof(int32_t) * tiles * 2},
        {&list_, sizeof(int32_t) * tiles * F},
        {&chunk_start_, sizeof(int32_t) * tiles * (chunks + 1)},
        {&partial_, sizeof(float) * chunks * n * d}}) {
    if (std::string e = Reserve(*b, bytes); !e.empty()) return e;
  }
  return "";
}

std::string FfnWorkspace::EnsureDense(const FfnShape& shape, int T) {
  const size_t bytes = 2 * static_cast<size_t>(T) * shape.neurons;
  for (Buffer* b : {&dense_g_, &dense_u_}) {
    if (std::string e = Reserve(*b, bytes); !e.empty()) return e;
  }
  return "";
}

std::unique_ptr<CudaFfn> CudaFfn::Create(const FfnShape& shape, const uint16_t* gate,
                                         const uint16_t* up, const uint16_t* down_t,
                                         std::string* error,
                                         std::shared_ptr<FfnWorkspace> workspace) {
  auto f = std::unique_ptr<CudaFfn>(new CudaFfn());
  f->shape_ = shape;
  auto fail = [&](const std::string& e) {
    *error = e;
    return nullptr;
  };
  if (shape.hidden % 8 != 0) return fail("hidden size must be a multiple of 8 for the CUDA FFN");
  if (workspace == nullptr) workspace = FfnWorkspace::Create(error);
  if (workspace == nullptr) return nullptr;
  f->ws_ = std::move(workspace);
  const size_t bytes = static_cast<size_t>(shape.neurons * shape.hidden) * 2;
  for (auto [dst, src] : {std::pair{&f->gate_, gate}, {&f->up_, up}, {&f->down_t_, down_t}}) {
    std::string e = DeviceAlloc(bytes, dst);
    if (e.empty()) e = CopyToDevice(*dst, src, bytes);
    if (!e.empty()) return fail(e);
  }
  return f;
}

CudaFfn::~CudaFfn() {
  for (void* p : {gate_, up_, down_t_, static_cast<void*>(stats_)}) {
    if (p) cudaFree(p);
  }
  if (graph_exec_) cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(graph_exec_));
}

std::string CudaFfn::EnsureStats(int tiles) {
  if (tiles <= stats_tiles_) return "";
  if (stats_) cudaFree(stats_);
  stats_ = nullptr;
  stats_tiles_ = 0;
  CUDA_TRY(cudaMalloc(&stats_, sizeof(int32_t) * 2 * tiles));
  stats_tiles_ = tiles;
  return "";
}

int CudaFfn::Tiles(int T) {
  const int tt = TileTokens(T, kMaxTileTokens);
  return (T + tt - 1) / tt;
}

std::string CudaFfn::Reserve(int T) {
  if (T <= 0) return "";
  std::string e = ws_->EnsureSparse(shape_, T);
  if (e.empty()) e = EnsureStats(T);  // tiles ≤ T
  return e;
}

std::string CudaFfn::Run(const float* x, int T, Activation act, float threshold, bool sparse,
                         double break_even, float* y, std::vector<FfnTileStats>* stats,
                         std::vector<float>* phase_ms, const float* neuron_thresholds) {
  if (T <= 0) return "T must be positive";
  if (std::string e = Reserve(T); !e.empty()) return e;
  auto st = static_cast<cudaStream_t>(ws_->stream_);
  const int64_t F = shape_.neurons, d = shape_.hidden;
  const int tt = TileTokens(T, kMaxTileTokens);
  const int tiles = Tiles(T);
  const int64_t words = (F + 31) / 32;
  auto* bits = static_cast<uint32_t*>(ws_->bits_.p);
  auto* counters = reinterpret_cast<int32_t*>(bits + tiles * words);
  last_tiles_ = tiles;
  const float be = sparse ? static_cast<float>(break_even) : -1.f;
  const GraphKey key{x,         y,  neuron_thresholds, stats_, T, static_cast<int>(act),
                     threshold, be, ws_->generation()};
  // Inside a caller's capture (a whole-step graph) the launches are recorded into that graph.
  cudaStreamCaptureStatus capturing = cudaStreamCaptureStatusNone;
  CUDA_TRY(cudaStreamIsCapturing(st, &capturing));
  // Replay: the same call on the same buffers as the captured one.
  const bool graphable =
      use_graphs_ && phase_ms == nullptr && capturing == cudaStreamCaptureStatusNone;
  if (graphable && graph_exec_ != nullptr && key == graph_key_) {
    CUDA_TRY(cudaGraphLaunch(static_cast<cudaGraphExec_t>(graph_exec_), st));
  } else {
    if (graphable) CUDA_TRY(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
    CUDA_TRY(cudaMemsetAsync(bits, 0,
                             sizeof(uint32_t) * tiles * words + sizeof(int32_t) * tiles * 2, st));
    auto* wg = static_cast<const uint16_t*>(gate_);
    auto* wu = static_cast<const uint16_t*>(up_);
    auto* wd = static_cast<const uint16_t*>(down_t_);
    const int a = ActCode(act);
    PhaseTimer timer(phase_ms, 6, st);
    const std::function<void(int)> mark = [&](int i) { timer.Mark(i); };
    // One instantiation per tile width; the arguments are the same for all.
    auto launch = [&](auto tile) {
      LaunchSparse<decltype(tile)::value>(
          x, T, d, F, wg, wu, wd, a, threshold, be, neuron_thresholds,
          static_cast<float*>(ws_->act_.p), bits, static_cast<int32_t*>(ws_->list_.p),
          static_cast<int32_t*>(ws_->chunk_start_.p), counters, stats_,
          static_cast<float*>(ws_->h_.p), static_cast<float*>(ws_->partial_.p), y, st, mark);
    };
    switch (tt) {
      case 1:
        launch(std::integral_constant<int, 1>{});
        break;
      case 2:
        launch(std::integral_constant<int, 2>{});
        break;
      case 4:
        launch(std::integral_constant<int, 4>{});
        break;
      case 8:
        launch(std::integral_constant<int, 8>{});
        break;
      default:
        launch(std::integral_constant<int, kMaxTileTokens>{});
    }
    const cudaError_t launched = cudaGetLastError();
    if (graphable) {
      cudaGraph_t graph = nullptr;
      const cudaError_t ended = cudaStreamEndCapture(st, &graph);
      CUDA_TRY(launched);
      CUDA_TRY(ended);
      if (graph_exec_) cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(graph_exec_));
      graph_exec_ = nullptr;
      cudaGraphExec_t exec = nullptr;
      const cudaError_t inst = cudaGraphInstantiate(&exec, graph, 0);
      cudaGraphDestroy(graph);
      CUDA_TRY(inst);
      graph_exec_ = exec;
      graph_key_ = key;
      CUDA_TRY(cudaGraphLaunch(exec, st));
    } else {
      CUDA_TRY(launched);
    }
    timer.Finish();
  }
  if (stats) return ReadStats(stats);
  return "";
}

std::string CudaFfn::ReadStats(std::vector<FfnTileStats>* stats) {
  stats->clear();
  if (last_tiles_ == 0) return "";
  auto st = static_cast<cudaStream_t>(ws_->stream_);
  std::vector<int32_t> host(2 * last_tiles_);
  CUDA_TRY(cudaMemcpyAsync(host.data(), stats_, sizeof(int32_t) * 2 * last_tiles_,
                           cudaMemcpyDeviceToHost, st));
  CUDA_TRY(cudaStreamSynchronize(st));
  stats->resize(last_tiles_);
  for (int i = 0; i < last_tiles_; ++i) (*stats)[i] = FfnTileStats{host[2 * i], host[2 * i + 1]};
  return "";
}

std::string CudaFfn::RunDenseCublas(const void* x_bf16, int T, Activation act, float threshold,
                                    void* y_bf16, std::vector<float>* phase_ms) {
  auto st = static_cast<cudaStream_t>(ws_->stream_);
  PhaseTimer timer(phase_ms, 5, st);
  std::string e = ws_->EnsureDense(shape_, T);
  if (!e.empty()) return e;
  void* dense_g = ws_->dense_g_.p;
  void* dense_u = ws_->dense_u_.p;
  auto h = static_cast<cublasHandle_t>(ws_->cublas_);
  const int F = static_cast<int>(shape_.neurons), d = static_cast<int>(shape_.hidden);
  const float one = 1.f, zero = 0.f;
  timer.Mark(0);
  // Column-major view: Gᵀ [F × T] = W_g (col-major d × F, transposed) · Xᵀ (d × T).
  CUBLAS_TRY(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, F, T, d, &one, gate_, CUDA_R_16BF, d, x_bf16,
                          CUDA_R_16BF, d, &zero, dense_g, CUDA_R_16BF, F, CUBLAS_COMPUTE_32F,
                          CUBLAS_GEMM_DEFAULT));
  timer.Mark(1);
  CUBLAS_TRY(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, F, T, d, &one, up_, CUDA_R_16BF, d, x_bf16,
                          CUDA_R_16BF, d, &zero, dense_u, CUDA_R_16BF, F, CUBLAS_COMPUTE_32F,
                          CUBLAS_GEMM_DEFAULT));
  timer.Mark(2);
  const int64_t n = static_cast<int64_t>(T) * F;
  ActMulBf16Kernel<<<static_cast<unsigned>((n + 255) / 256), 256, 0, st>>>(
      static_cast<__nv_bfloat16*>(dense_g), static_cast<const __nv_bfloat16*>(dense_u), n,
      ActCode(act), threshold);
  CUDA_TRY(cudaGetLastError());
  timer.Mark(3);
  // Yᵀ [d × T] = W_down (= W_dT viewed col-major, d × F) · Hᵀ (F × T).
  CUBLAS_TRY(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, d, T, F, &one, down_t_, CUDA_R_16BF, d,
                          dense_g, CUDA_R_16BF, F, &zero, y_bf16, CUDA_R_16BF, d,
                          CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  timer.Mark(4);
  timer.Finish();
  return "";
}

std::string DeviceAlloc(size_t bytes, void** ptr) {
  CUDA_TRY(cudaMalloc(ptr, bytes));
  return "";
}
void DeviceFree(void* ptr) {
  if (ptr) cudaFree(ptr);
}
std::string CopyToDevice(void* dst, const void* src, size_t bytes) {
  CUDA_TRY(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
  return "";
}
std::string CopyToHost(void* dst, const void* src, size_t bytes) {
  CUDA_TRY(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
  return "";
}
std::string Synchronize() {
  CUDA_TRY(cudaDeviceSynchronize());
  CUDA_TRY(cudaGetLastError());
  return "";
}
std::string ConvertToBf16(const float* src, void* dst, size_t n, void* stream) {
  if (n == 0) return "";
  ToBf16Kernel<<<static_cast<unsigned>((n + 255) / 256), 256, 0,
                 static_cast<cudaStream_t>(stream)>>>(src, static_cast<__nv_bfloat16*>(dst),
                                                      static_cast<int64_t>(n));
  CUDA_TRY(cudaGetLastError());
  return "";
}

double MeasureCopyBandwidthGBs(size_t bytes) {
  void *a = nullptr, *b = nullptr;
  if (cudaMalloc(&a, bytes) != cudaSuccess || cudaMalloc(&b, bytes) != cudaSuccess) {
    cudaFree(a);
    return 0;
  }
  cudaMemset(a, 1, bytes);
  const double ms = TimeMs([&] { cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice); }, 2, 7);
  cudaFree(a);
  cudaFree(b);
  return 2.0 * bytes / (ms * 1e-3) / 1e9;
}

double TimeMs(const std::function<void()>& fn, int warmup, int reps) {
  for (int i = 0; i < warmup; ++i) fn();
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  std::vector<float> ms;
  for (int i = 0; i < reps; ++i) {
    cudaEventRecord(a);
    fn();
    cudaEventRecord(b);
    cudaEventSynchronize(b);
    float t = 0;
    cudaEventElapsedTime(&t, a, b);
    ms.push_back(t);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

}  // namespace sparsed::cuda
