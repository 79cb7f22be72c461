// The CUDA backend: the whole forward pass on one GPU, behind the Backend interface.
//
// Weights are uploaded once, as bf16 (fp32 and fp16 checkpoints are rounded at upload);
// activations, the paged KV cache and all arithmetic are fp32. Dense products and attention run
// in our own kernels (cuda_ops.h) and the FFN in the union sparse kernels (cuda_ffn.h), all with
// reduction orders fixed by the shapes, so a sequence's output is bitwise the same whatever its
// batch-mates — unless BackendOptions::cublas_min_tokens routes large FFN calls to cuBLAS.
//
// Operations are asynchronous: they queue work on one stream and record the first error; the
// engine's FinishStep() waits for the device and returns that error. This library is loaded with
// dlopen (libsparsed_cuda.so, see device.h) and never linked into the daemon.
//
// Step graphs (BackendOptions::cuda_graphs): between BeginStep() and the step's first
// synchronising call (CopyToHost of the logits, FinishStep), each operation does its host work at
// once (growing buffers, filling pinned staging memory, uploading weights) and defers its device
// work as a closure with a signature of every argument. The flush then replays a cached CUDA
// graph whose signatures match, captures one when the step's shape (all signatures combined) is
// among the last few steps' (a shape that recurs), or launches the closures as they are. Anything
// that frees or moves memory a deferred closure or cached graph uses (buffer growth,
// ForgetHostData) flushes first and drops the cached graphs. Bitwise the same results as without
// graphs: the same kernels, the same arguments. Thread-safety: one thread at a time, as every
// Backend.
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/backend/backend.h"
#include "engine/backend/cuda/cuda_ffn.h"
#include "engine/backend/cuda/cuda_ops.h"
#include "engine/backend/cuda/cuda_step_graphs.h"

namespace sparsed {

class CudaBackend final : public Backend {
 public:
  // FAILED_PRECONDITION when no CUDA device is usable.
  static absl::StatusOr<std::unique_ptr<CudaBackend>> Create(const BackendOptions& options);
  ~CudaBackend() override;

  absl::string_view name() const override { return "cuda"; }
  std::string Describe() const override;
  absl::StatusOr<DeviceBuffer> Alloc(size_t floats) override;
  void CopyToHost(const float* src, size_t n, float* dst) override;
  void CopyFromHost(const float* src, size_t n, float* dst) override;
  absl::Status PrepareWeights(const std::vector<const Matrix*>& matrices) override;
  absl::Status AllocKvCache(const KvCacheShape& shape) override;

  void Embed(const Matrix& table, const int32_t* ids, int T, float scale, float* out) override;
  void RmsNorm(const float* x, const float* weight, int T, int d, float eps, float* out) override;
  void MatMul(const float* x, int T, const Matrix& w, float* y) override;
  void MatMulRows(const float* x, int T, const Matrix& w, const int32_t* rows, int n_rows,
                  float* y) override;
  void MatMul3(const float* x, int T, const Matrix& a, float* ya, const Matrix& b, float* yb,
               const Matrix& c, float* yc) override;
  void AddScaled(float* y, const float* x, size_t n, float scale) override;
  void Rope(float* q, float* k, const float* cos, const float* sin, int T, int heads, int kv_heads,
            int head_dim) override;
  void Attention(int layer, const float* q, const float* k, const float* v,
                 const AttentionBatch& batch, int heads, float* out) override;
  void Ffn(const FfnLayer& layer, const float* x, int T, SparsityMode mode, float* y,
           FfnStats* stats) override;

  absl::Status PrepareFfn(const FfnLayer& layer) override;
  void BeginStep(const AttentionBatch& batch, const float* cos, const float* sin) override;
  absl::Status FinishStep() override;
  int64_t FreeMemoryBytes() const override;
  void ForgetHostData(const float* data) override;

  // Largest FFN call; longer ones run in slabs of this many tokens (bounds the scratch memory).
  static constexpr int kFfnSlabTokens = 64;

 private:
  explicit CudaBackend(const BackendOptions& options) : options_(options) {}

  // A growable device buffer.
  struct Scratch {
    void* p = nullptr;
    size_t bytes = 0;
  };
  // Device copy of host data reused across calls (norm weights, neuron thresholds).
  struct Uploaded {
    void* device = nullptr;
    size_t n = 0;
  };
  struct StepInputs {
    const int32_t* positions_host = nullptr;  // identifies the AttentionBatch uploaded
    const float* cos_host = nullptr;
    int T = 0;
    int max_len = 0;
    int32_t* positions = nullptr;  // device, inside ints_
    int32_t* slots = nullptr;
    int32_t* table_start = nullptr;
    int32_t* tables = nullptr;
    float* cos = nullptr;  // device, inside trig_
    float* sin = nullptr;
  };
  struct PendingStats {
    cuda::CudaFfn* ffn;
    FfnStats* stats;
    int tiles;  // tile stats the call leaves at ffn->stats_device()
  };
  // Pinned host memory that host → device copies go through asynchronously; `pending` while a
  // copy from it may still be running (cleared when the step finishes).
  struct Staging {
    Scratch buffer;  // pinned host memory
    bool pending = false;
  };
  struct Piece {
    const void* src;
    size_t bytes;
  };

  // Records the first failure; true when one is recorded (this one or an earlier one).
  bool Failed(const absl::Status& status);
  // Runs `run` now, or defers it while a step's graphable prefix is being recorded
  // (cuda_step_graphs.h).
  void Enqueue(std::initializer_list<uint64_t> args, cuda::StepGraphs::Op run) {
    Failed(graphs_->Enqueue(args, std::move(run)));
  }
  // Launches the deferred operations (graph replay, capture, or one by one); later operations
  // of the step launch directly.
  void Flush() { Failed(graphs_->Flush(/*launch=*/error_.ok())); }
  // Device memory, or pinned host memory; the old contents are not kept. Moving a buffer
  // flushes deferred work and drops cached graphs first.
  void* Grow(Scratch& s, size_t bytes, bool pinned_host = false);
  const uint16_t* DeviceWeights(const Matrix& m);
  // The device copy of host fp32 data (norm weights, neuron thresholds), uploaded on first use
  // and kept until ForgetHostData.
  const float* DeviceVector(const float* host, size_t n);
  bool UploadAttention(const AttentionBatch& batch);
  bool UploadTrig(const float* cos, const float* sin, int T, int half);
  // Copies the pieces, back to back, to device `dst` through `s`: the host copy into pinned
  // memory now, the device copy queued (`bytes` ≥ their total, so a size can be held steady
  // across steps; the excess is whatever the staging holds).
  bool Upload(Staging& s, void* dst, std::initializer_list<Piece> pieces, size_t bytes,
              const char* what);
  void* GrowPinned(Staging& s, size_t bytes);
  cuda::CudaFfn* FfnFor(const FfnLayer& layer);
  cuda::PagedLayer Layer(int layer) const;
  bool UseCublas(int T) const {
    return options_.cublas_min_tokens > 0 && T >= options_.cublas_min_tokens;
  }
  // Stops deferring for the rest of the step (work that cannot be captured follows).
  void Undefer() {
    if (graphs_->deferring()) Flush();
  }

  BackendOptions options_;
  std::string description_;
  absl::Status error_;                              // the first failure since the last FinishStep
  std::unordered_map<const void*, void*> weights_;  // host data → device bf16
  std::unordered_map<const void*, std::unique_ptr<cuda::CudaFfn>> ffns_;  // by up->data
  // The stream and cuBLAS handle of every operation (cuda_context.h).
  std::shared_ptr<cuda::Context> context_;
  // FFN scratch all layers share, on context_.
  std::shared_ptr<cuda::FfnWorkspace> ffn_workspace_;
  std::unordered_map<const float*, Uploaded> vectors_;
  KvCacheShape kv_shape_;
  void* kv_ = nullptr;
  bool step_active_ = false;
  StepInputs step_;
  Scratch ints_, trig_, ids_, rows_, x_bf16_, y_bf16_, attn_part_;
  std::vector<PendingStats> pending_;
  Staging ids_host_, ints_host_, trig_host_, stats_host_;
  void* stream_ = nullptr;  // context_'s cudaStream_t, which every operation runs on
  std::unique_ptr<cuda::StepGraphs> graphs_;  // on stream_
};

}  // namespace sparsed
