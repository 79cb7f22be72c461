// The CUDA union sparse FFN: its workspace, the launches of the sparse and dense paths, and the
// per-layer state (see cuda_ffn.h for the data flow, cuda_ffn_kernels.cuh for the kernels).
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <type_traits>
#include <vector>

#include "engine/backend/cuda/block_dots.cuh"
#include "engine/backend/cuda/cuda_ffn.h"
#include "engine/backend/cuda/cuda_ffn_kernels.cuh"
#include "engine/backend/cuda/cuda_status.h"

namespace sparsed::cuda {
namespace {

using namespace ffn_kernels;  // the kernels and their launch constants

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

absl::StatusOr<std::shared_ptr<FfnWorkspace>> FfnWorkspace::Create(
    std::shared_ptr<Context> context) {
  if (context == nullptr) return absl::InvalidArgumentError("no CUDA context");
  auto w = std::shared_ptr<FfnWorkspace>(new FfnWorkspace());
  w->context_ = std::move(context);
  return w;
}

FfnWorkspace::~FfnWorkspace() {
  for (Buffer* b : {&act_, &h_, &bits_, &list_, &chunk_start_, &partial_, &dense_g_, &dense_u_}) {
    if (b->p) cudaFree(b->p);
  }
}

size_t FfnWorkspace::bytes() const {
  size_t n = 0;
  for (const Buffer* b :
       {&act_, &h_, &bits_, &list_, &chunk_start_, &partial_, &dense_g_, &dense_u_})
    n += b->bytes;
  return n;
}

absl::Status FfnWorkspace::Reserve(Buffer& b, size_t bytes) {
  if (bytes <= b.bytes) return absl::OkStatus();
  // cudaFree waits for the device, so work still reading the old buffer finishes first.
  if (b.p) cudaFree(b.p);
  b.p = nullptr;
  b.bytes = 0;
  ++generation_;  // captured graphs point at the old buffer
  SPARSED_CUDA_TRY(cudaMalloc(&b.p, bytes));
  b.bytes = bytes;
  return absl::OkStatus();
}

absl::Status FfnWorkspace::EnsureSparse(const FfnShape& shape, int T) {
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
    RETURN_IF_ERROR(Reserve(*b, bytes));
  }
  return absl::OkStatus();
}

absl::Status FfnWorkspace::EnsureDense(const FfnShape& shape, int T) {
  const size_t bytes = 2 * static_cast<size_t>(T) * shape.neurons;
  for (Buffer* b : {&dense_g_, &dense_u_}) {
    RETURN_IF_ERROR(Reserve(*b, bytes));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<CudaFfn>> CudaFfn::Create(const FfnShape& shape,
                                                         const uint16_t* gate, const uint16_t* up,
                                                         const uint16_t* down_t,
                                                         std::shared_ptr<FfnWorkspace> workspace) {
  auto f = std::unique_ptr<CudaFfn>(new CudaFfn());
  f->shape_ = shape;
  if (shape.hidden % 8 != 0) {
    return absl::InvalidArgumentError("hidden size must be a multiple of 8 for the CUDA FFN");
  }
  if (workspace == nullptr) {
    ASSIGN_OR_RETURN(std::shared_ptr<Context> own, Context::Create());
    ASSIGN_OR_RETURN(workspace, FfnWorkspace::Create(std::move(own)));
  }
  f->ws_ = std::move(workspace);
  const size_t bytes = static_cast<size_t>(shape.neurons * shape.hidden) * 2;
  for (auto [dst, src] : {std::pair{&f->gate_, gate}, {&f->up_, up}, {&f->down_t_, down_t}}) {
    RETURN_IF_ERROR(DeviceAlloc(bytes, dst));
    RETURN_IF_ERROR(CopyToDevice(*dst, src, bytes));
  }
  return f;
}

CudaFfn::~CudaFfn() {
  for (void* p : {gate_, up_, down_t_, static_cast<void*>(stats_)}) {
    if (p) cudaFree(p);
  }
  if (graph_exec_) cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(graph_exec_));
}

absl::Status CudaFfn::EnsureStats(int tiles) {
  if (tiles <= stats_tiles_) return absl::OkStatus();
  if (stats_) cudaFree(stats_);
  stats_ = nullptr;
  stats_tiles_ = 0;
  SPARSED_CUDA_TRY(cudaMalloc(&stats_, sizeof(int32_t) * 2 * tiles));
  stats_tiles_ = tiles;
  return absl::OkStatus();
}

int CudaFfn::Tiles(int T) {
  const int tt = TileTokens(T, kMaxTileTokens);
  return (T + tt - 1) / tt;
}

absl::Status CudaFfn::Reserve(int T) {
  if (T <= 0) return absl::OkStatus();
  RETURN_IF_ERROR(ws_->EnsureSparse(shape_, T));
  return EnsureStats(T);  // tiles ≤ T
}

absl::Status CudaFfn::Run(const float* x, int T, float* y, const FfnRun& how) {
  const Activation act = how.activation;
  const float threshold = how.threshold;
  const float* neuron_thresholds = how.neuron_thresholds;
  std::vector<FfnTileStats>* stats = how.stats;
  std::vector<float>* phase_ms = how.phase_ms;
  if (T <= 0) return absl::InvalidArgumentError("T must be positive");
  RETURN_IF_ERROR(Reserve(T));
  auto st = static_cast<cudaStream_t>(ws_->context_->stream());
  const int64_t F = shape_.neurons, d = shape_.hidden;
  const int tt = TileTokens(T, kMaxTileTokens);
  const int tiles = Tiles(T);
  const int64_t words = (F + 31) / 32;
  auto* bits = static_cast<uint32_t*>(ws_->bits_.p);
  auto* counters = reinterpret_cast<int32_t*>(bits + tiles * words);
  last_tiles_ = tiles;
  const float be = how.sparse ? static_cast<float>(how.break_even) : -1.f;
  const GraphKey key{x,         y,  neuron_thresholds, stats_, T, static_cast<int>(act),
                     threshold, be, ws_->generation()};
  // Inside a caller's capture (a whole-step graph) the launches are recorded into that graph.
  cudaStreamCaptureStatus capturing = cudaStreamCaptureStatusNone;
  SPARSED_CUDA_TRY(cudaStreamIsCapturing(st, &capturing));
  // Replay: the same call on the same buffers as the captured one.
  const bool graphable =
      use_graphs_ && phase_ms == nullptr && capturing == cudaStreamCaptureStatusNone;
  if (graphable && graph_exec_ != nullptr && key == graph_key_) {
    SPARSED_CUDA_TRY(cudaGraphLaunch(static_cast<cudaGraphExec_t>(graph_exec_), st));
  } else {
    if (graphable) SPARSED_CUDA_TRY(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
    SPARSED_CUDA_TRY(cudaMemsetAsync(
        bits, 0, sizeof(uint32_t) * tiles * words + sizeof(int32_t) * tiles * 2, st));
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
      SPARSED_CUDA_TRY(launched);
      SPARSED_CUDA_TRY(ended);
      if (graph_exec_) cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(graph_exec_));
      graph_exec_ = nullptr;
      cudaGraphExec_t exec = nullptr;
      const cudaError_t inst = cudaGraphInstantiate(&exec, graph, 0);
      cudaGraphDestroy(graph);
      SPARSED_CUDA_TRY(inst);
      graph_exec_ = exec;
      graph_key_ = key;
      SPARSED_CUDA_TRY(cudaGraphLaunch(exec, st));
    } else {
      SPARSED_CUDA_TRY(launched);
    }
    timer.Finish();
  }
  if (stats) return ReadStats(stats);
  return absl::OkStatus();
}

absl::Status CudaFfn::ReadStats(std::vector<FfnTileStats>* stats) {
  stats->clear();
  if (last_tiles_ == 0) return absl::OkStatus();
  auto st = static_cast<cudaStream_t>(ws_->context_->stream());
  std::vector<int32_t> host(2 * last_tiles_);
  SPARSED_CUDA_TRY(cudaMemcpyAsync(host.data(), stats_, sizeof(int32_t) * 2 * last_tiles_,
                                   cudaMemcpyDeviceToHost, st));
  SPARSED_CUDA_TRY(cudaStreamSynchronize(st));
  stats->resize(last_tiles_);
  for (int i = 0; i < last_tiles_; ++i) (*stats)[i] = FfnTileStats{host[2 * i], host[2 * i + 1]};
  return absl::OkStatus();
}

absl::Status CudaFfn::RunDenseCublas(const void* x_bf16, int T, Activation act, float threshold,
                                     void* y_bf16, std::vector<float>* phase_ms) {
  auto st = static_cast<cudaStream_t>(ws_->context_->stream());
  PhaseTimer timer(phase_ms, 5, st);
  RETURN_IF_ERROR(ws_->EnsureDense(shape_, T));
  void* dense_g = ws_->dense_g_.p;
  void* dense_u = ws_->dense_u_.p;
  auto h = static_cast<cublasHandle_t>(ws_->context_->cublas());
  const int F = static_cast<int>(shape_.neurons), d = static_cast<int>(shape_.hidden);
  const float one = 1.f, zero = 0.f;
  timer.Mark(0);
  // Column-major view: Gᵀ [F × T] = W_g (col-major d × F, transposed) · Xᵀ (d × T).
  SPARSED_CUBLAS_TRY(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, F, T, d, &one, gate_, CUDA_R_16BF, d,
                                  x_bf16, CUDA_R_16BF, d, &zero, dense_g, CUDA_R_16BF, F,
                                  CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  timer.Mark(1);
  SPARSED_CUBLAS_TRY(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, F, T, d, &one, up_, CUDA_R_16BF, d,
                                  x_bf16, CUDA_R_16BF, d, &zero, dense_u, CUDA_R_16BF, F,
                                  CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  timer.Mark(2);
  const int64_t n = static_cast<int64_t>(T) * F;
  ActMulBf16Kernel<<<static_cast<unsigned>((n + 255) / 256), 256, 0, st>>>(
      static_cast<__nv_bfloat16*>(dense_g), static_cast<const __nv_bfloat16*>(dense_u), n,
      ActCode(act), threshold);
  SPARSED_CUDA_TRY(cudaGetLastError());
  timer.Mark(3);
  // Yᵀ [d × T] = W_down (= W_dT viewed col-major, d × F) · Hᵀ (F × T).
  SPARSED_CUBLAS_TRY(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, d, T, F, &one, down_t_, CUDA_R_16BF,
                                  d, dense_g, CUDA_R_16BF, F, &zero, y_bf16, CUDA_R_16BF, d,
                                  CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  timer.Mark(4);
  timer.Finish();
  return absl::OkStatus();
}

}  // namespace sparsed::cuda
