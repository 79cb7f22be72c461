// The operations the forward pass needs, implemented per device (cpu/, cuda/).
//
// Pointers named x, y, q, k, v, out, h are activation buffers obtained from Alloc() of the same
// backend (host memory on CPU, device memory on CUDA). Weight matrices are host views; a backend
// uploads them once in PrepareWeights(). Token ids, positions and block tables are host memory.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/backend/ffn_types.h"
#include "engine/common/matrix.h"

namespace sparsed {

// An activation buffer in the backend's memory, freed by its deleter.
using DeviceBuffer = std::unique_ptr<float, std::function<void(float*)>>;

struct KvCacheShape {
  int layers = 0;
  int blocks = 0;
  int block_size = 16;  // tokens per block
  int kv_heads = 0;
  int head_dim = 0;
  // Element type of the cached K and V: kF32, or kBF16 (rounded to nearest even when written,
  // half the memory per token; attention arithmetic stays fp32).
  DType dtype = DType::kF32;
  size_t BytesPerBlock() const {
    return static_cast<size_t>(2) * layers * block_size * kv_heads * head_dim * DTypeSize(dtype);
  }
};

// Per token of a batch: its position and its sequence's block table.
struct AttentionBatch {
  int num_tokens = 0;
  const int32_t* positions = nullptr;                         // [num_tokens]
  const std::vector<int32_t>* const* block_tables = nullptr;  // [num_tokens] → that token's table
};

// Thread-safety: a backend is used by one thread (the engine thread) at a time.
class Backend {
 public:
  virtual ~Backend() = default;
  virtual absl::string_view name() const = 0;
  // A short description (ISA and threads, or GPU name) for start-up logs.
  virtual std::string Describe() const = 0;

  virtual absl::StatusOr<DeviceBuffer> Alloc(size_t floats) = 0;
  virtual void CopyToHost(const float* src, size_t n, float* dst) = 0;
  // dst (a buffer of this backend) ← host src, n floats.
  virtual void CopyFromHost(const float* src, size_t n, float* dst) = 0;
  // Makes the matrices usable by this backend (upload, layout); called once at load.
  virtual absl::Status PrepareWeights(const std::vector<const Matrix*>& matrices) = 0;
  // Allocates the paged KV cache.
  virtual absl::Status AllocKvCache(const KvCacheShape& shape) = 0;

  // out[t] = table[ids[t]] · scale.
  virtual void Embed(const Matrix& table, const int32_t* ids, int T, float scale, float* out) = 0;
  // out[t] = x[t] / rms(x[t]) · weight (weight host fp32 [d]).
  virtual void RmsNorm(const float* x, const float* weight, int T, int d, float eps,
                       float* out) = 0;
  // y[T × w.rows] = x[T × w.cols] · wᵀ; rows != null computes only y[:, i] for w.row(rows[i]) into
  // y[T × n_rows].
  virtual void MatMul(const float* x, int T, const Matrix& w, float* y) = 0;
  virtual void MatMulRows(const float* x, int T, const Matrix& w, const int32_t* rows, int n_rows,
                          float* y) = 0;
  // Three products of the same x (attention's q, k, v): the same results as three MatMul calls;
  // a device backend may run them as one launch.
  virtual void MatMul3(const float* x, int T, const Matrix& a, float* ya, const Matrix& b,
                       float* yb, const Matrix& c, float* yc) {
    MatMul(x, T, a, ya);
    MatMul(x, T, b, yb);
    MatMul(x, T, c, yc);
  }
  // y += scale · x over n floats.
  virtual void AddScaled(float* y, const float* x, size_t n, float scale) = 0;
  // Rotary embeddings (rotate-half convention) on q [T × H·hd] and k [T × KV·hd];
  // cos/sin are host [T × hd/2].
  virtual void Rope(float* q, float* k, const float* cos, const float* sin, int T, int heads,
                    int kv_heads, int head_dim) = 0;
  // Writes k, v [T × KV·hd] into the cache of `layer` at the tokens' positions, then computes
  // causal attention of q [T × H·hd] over each token's sequence into out [T × H·hd].
  virtual void Attention(int layer, const float* q, const float* k, const float* v,
                         const AttentionBatch& batch, int heads, float* out) = 0;
  // y [T × d] = FFN(x [T × d]); exact mode skips inactive neurons through union sparse GEMMs.
  // A token's y is bitwise the same whatever the other T − 1 rows hold. `stats` is complete once
  // FinishStep() has returned.
  virtual void Ffn(const FfnLayer& layer, const float* x, int T, SparsityMode mode, float* y,
                   FfnStats* stats) = 0;

  // Optional hooks around the engine's step; the defaults do nothing.
  // Called once per FFN layer at load (after PrepareWeights), so a device backend can upload the
  // layer's weights in its own layout; errors name what the backend cannot run.
  virtual absl::Status PrepareFfn(const FfnLayer&) { return absl::OkStatus(); }
  // Called before a step's first operation with the host data the step's Rope and Attention
  // calls will pass, so a device backend uploads it once instead of once per layer.
  virtual void BeginStep(const AttentionBatch&, const float* /*cos*/, const float* /*sin*/) {}
  // Called after a step's last operation: waits for the device, completes FfnStats, and reports
  // the first error any operation of the step met (the void operations cannot).
  virtual absl::Status FinishStep() { return absl::OkStatus(); }
  // Host data passed to earlier operations (neuron thresholds) is about to change or be freed: a
  // device backend drops its copy, so a later call with the same address uploads afresh.
  virtual void ForgetHostData(const float* /*data*/) {}
  // Device memory free now, in bytes; -1 for host-memory backends.
  virtual int64_t FreeMemoryBytes() const { return -1; }
};

struct BackendOptions {
  int threads = 0;      // CPU: 0 = all cores
  std::string cpu_isa;  // CPU: force "avx512" | "avx2" | "generic"
  double dense_break_even =
      -1;  // union ratio above which exact mode runs dense; <0 = backend default
  // CPU: exact mode computes each token's own active neurons instead of the batch's union when
  // (mean active neurons per token) < this × (union size); the same bits either way. 0 = never,
  // <0 = backend default.
  double per_token_break_even = -1;
  // CUDA: calls of at least this many tokens run the FFN and the dense products in cuBLAS (bf16
  // tensor cores; faster for large batches, but a token's result then depends on the batch
  // size). 0 = never.
  int cublas_min_tokens = 0;
  // CUDA: replay each repeated step shape (the same batch size, attention length bucket and
  // buffers as a step before) as one CUDA graph instead of launching its kernels one by one.
  // Results are bitwise the same as without; steps that synchronise midway (an FFN observer),
  // route products to cuBLAS or run FFN slabs launch as usual.
  bool cuda_graphs = false;
};

std::unique_ptr<Backend> MakeCpuBackend(const BackendOptions& options);

}  // namespace sparsed
