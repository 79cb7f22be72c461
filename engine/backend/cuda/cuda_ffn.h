// The union sparse FFN on CUDA (exact and threshold modes), and a dense cuBLAS FFN it is
// measured against.
//
// No CUDA types appear here: pointers are device pointers passed as float* / void*. Failures are
// absl::Status values naming what failed and CUDA's reason (cuda_status.h).
//
// Data flow per call, for token tiles of up to kMaxTileTokens rows (each tile its own union, so a
// long prompt's dense tile does not densify decode tiles):
//   1. gate kernel: A = act(X·W_gᵀ) for every neuron, fused with the union bitmap of each tile
//      (atomicOr of the active bits);
//   2. compact kernel: bitmap → sorted index list per tile, plus the list offset at every fixed
//      chunk of kChunkNeurons neuron ids; a device-side cost model replaces the list by every
//      neuron when the union is denser than the break-even;
//   3. up kernel: H[t, k] = A[t, U_k] · (X_t · W_u[U_k]) over the tile's list (zero where the
//      token's own activation is zero);
//   4. down kernel: per fixed neuron chunk,
//      partial[c][t] = Σ_{k in chunk, in order} H[t,k]·W_dT[U_k];
//   5. reduce kernel: Y[t] = Σ_c partial[c][t] in chunk order.
// Every (token, neuron) product and every sum runs in an order fixed by neuron ids and the hidden
// size, so a token's Y is bitwise the same whatever tile or batch it is in.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/backend/cuda/cuda_context.h"
#include "engine/backend/cuda/cuda_device.h"
#include "engine/common/activation.h"

namespace sparsed::cuda {

constexpr int kMaxTileTokens = 16;
constexpr int kChunkNeurons = 128;  // fixes the summation order of the down projection

struct FfnShape {
  int64_t neurons = 0;  // F
  int64_t hidden = 0;   // d, a multiple of 8
};

struct FfnTileStats {
  int32_t union_size = 0;  // per tile, after the cost model (F when it fell back to dense)
  int32_t active_sum = 0;  // Σ over the tile's tokens of active neurons
};

// Device scratch memory, a stream and a cuBLAS handle shared by the CudaFfn layers of one model.
// The layers run one after another on the shared stream, so one set of intermediate buffers,
// sized for the largest call, serves them all (per layer at LLaMA-2-7B shape and 64 tokens that
// would be ~100 MB, most of it the down projection's per-chunk partial sums). Buffers grow on
// demand and never shrink; generation() changes whenever one moves, so layers re-capture the
// CUDA graphs that pointed at the old ones.
// Thread-safety: none; the layers sharing it are used from one thread.
class FfnWorkspace {
 public:
  // Launches on `context`'s stream (and cuBLAS handle); INVALID_ARGUMENT when it is null.
  static absl::StatusOr<std::shared_ptr<FfnWorkspace>> Create(std::shared_ptr<Context> context);
  ~FfnWorkspace();
  FfnWorkspace(const FfnWorkspace&) = delete;
  FfnWorkspace& operator=(const FfnWorkspace&) = delete;

  int64_t generation() const { return generation_; }
  // Where every layer's Run() launches.
  const Context& context() const { return *context_; }
  // Device memory held, in bytes.
  size_t bytes() const;

 private:
  friend class CudaFfn;
  struct Buffer {
    void* p = nullptr;
    size_t bytes = 0;
  };
  FfnWorkspace() = default;
  // b holds at least `bytes` afterwards (old contents dropped when it moves).
  absl::Status Reserve(Buffer& b, size_t bytes);
  // The sparse path's buffers for T tokens of `shape`; the cuBLAS path's.
  absl::Status EnsureSparse(const FfnShape& shape, int T);
  absl::Status EnsureDense(const FfnShape& shape, int T);

  std::shared_ptr<Context> context_;
  int64_t generation_ = 0;
  Buffer act_;          // float [T × F]
  Buffer h_;            // float [T × F] (by union position)
  Buffer bits_;         // uint32 [tiles × F/32], then int32 [tiles × 2] working tile counters
  Buffer list_;         // int32 [tiles × F]
  Buffer chunk_start_;  // int32 [tiles × (chunks + 1)]
  Buffer partial_;      // float [chunks × T × d]
  Buffer dense_g_;      // bf16 [T × F] for the cuBLAS path
  Buffer dense_u_;
};

// How one CudaFfn::Run goes.
struct FfnRun {
  Activation activation = Activation::kSilu;
  float threshold = 0.f;  // FATReLU's
  // false reads every row (same kernels, same arithmetic).
  bool sparse = true;
  // Union ratio above which a tile reads every row.
  double break_even = 1.0;
  // Tile stats, copied back only when non-null (that synchronises).
  std::vector<FfnTileStats>* stats = nullptr;
  // Milliseconds of gate, compact, up, down and reduce, timed with events when non-null (that
  // synchronises).
  std::vector<float>* phase_ms = nullptr;
  // Device fp32 [F]; non-null selects threshold mode: gate and up run for every neuron, neuron i
  // counts as active for token t when |x1[t, i]| ≥ thresholds[i] (x1 = act(gate)·up; inactive
  // entries become exact zeros), and only the down projection is union sparse. Stats then count
  // threshold-active neurons. Batch invariance holds as in exact mode.
  const float* neuron_thresholds = nullptr;
};

// Device-resident weights of one FFN layer in bf16: gate and up [F × d], down transposed [F × d].
// Thread-safety: none; use from one thread (the engine thread) with its stream.
class CudaFfn {
 public:
  // Uploads host bf16 weights (raw uint16 bits). Layers that run one after another pass one
  // `workspace`; null gives the layer its own (on a context of its own). INVALID_ARGUMENT for a
  // hidden size that is not a multiple of 8, RESOURCE_EXHAUSTED when the weights do not fit.
  static absl::StatusOr<std::unique_ptr<CudaFfn>> Create(
      const FfnShape& shape, const uint16_t* gate, const uint16_t* up, const uint16_t* down_t,
      std::shared_ptr<FfnWorkspace> workspace = nullptr);
  ~CudaFfn();
  CudaFfn(const CudaFfn&) = delete;
  CudaFfn& operator=(const CudaFfn&) = delete;

  // y [T × d] = FFN(x [T × d]), both device fp32, as `how` says.
  absl::Status Run(const float* x, int T, float* y, const FfnRun& how);

  // Reserves the buffers of a Run() over T tokens now (the workspace's and this layer's), so a
  // caller can claim its scratch memory before sizing other allocations from what is free.
  absl::Status Reserve(int T);

  // Token tiles (and so tile stats) of a Run() over T tokens.
  static int Tiles(int T);

  // Tile stats of the last Run() (synchronises its stream); lets a caller run every layer of a
  // step before reading any of them back.
  absl::Status ReadStats(std::vector<FfnTileStats>* stats);
  // Where Run() over T tokens leaves its tile stats on the device: Tiles(T) pairs of int32
  // {union_size, active_sum}, in this layer's own memory (not the shared workspace), valid until
  // this layer's next Run() (for callers batching the copies of a step's layers).
  const void* stats_device() const { return stats_; }

  // Dense reference the way a dense server computes it: bf16 activations, cuBLAS GEMMs
  // (tensor cores), fused act·up. x_bf16 [T × d] and y_bf16 [T × d] are device bf16 buffers.
  // phase_ms: gate GEMM, up GEMM, act·up, down GEMM.
  absl::Status RunDenseCublas(const void* x_bf16, int T, Activation act, float threshold,
                              void* y_bf16, std::vector<float>* phase_ms = nullptr);

  // Run() captures its launches into a CUDA graph and replays it while the call repeats on the
  // same buffers and parameters (the engine's decode steps), removing the launch gaps. Phase
  // timing runs uncaptured. On by default.
  void set_use_graphs(bool on) { use_graphs_ = on; }

  const FfnShape& shape() const { return shape_; }
  const FfnWorkspace& workspace() const { return *ws_; }
  // Bytes of weights the sparse path reads for a union of `rows` rows.
  double SparseBytes(double rows) const {
    return 2.0 * shape_.hidden * (shape_.neurons + 2 * rows);
  }
  double DenseBytes() const { return 2.0 * shape_.hidden * shape_.neurons * 3; }

 private:
  CudaFfn() = default;
  absl::Status EnsureStats(int tiles);  // this layer's tile-stats buffer

  struct GraphKey {
    const float* x = nullptr;
    const float* y = nullptr;
    const float* thresholds = nullptr;
    const int32_t* stats = nullptr;
    int T = 0, act = 0;
    float threshold = 0, break_even = 0;
    int64_t generation = 0;
    bool operator==(const GraphKey& o) const {
      return x == o.x && y == o.y && thresholds == o.thresholds && stats == o.stats && T == o.T &&
             act == o.act && threshold == o.threshold && break_even == o.break_even &&
             generation == o.generation;
    }
  };

  FfnShape shape_;
  std::shared_ptr<FfnWorkspace> ws_;
  void* graph_exec_ = nullptr;  // cudaGraphExec_t of the last captured call
  GraphKey graph_key_;
  bool use_graphs_ = true;
  int last_tiles_ = 0;
  void* gate_ = nullptr;
  void* up_ = nullptr;
  void* down_t_ = nullptr;
  int32_t* stats_ = nullptr;  // [stats_tiles_ × 2] {union_size, active_sum}
  int stats_tiles_ = 0;
};

}  // namespace sparsed::cuda
