#include "engine/backend/cuda/cuda_backend.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <bit>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/backend/cuda/cuda_backend_internal.h"
#include "engine/common/dtype.h"

namespace sparsed {
namespace {

using namespace cuda::detail;  // W, Err and the operation kinds

// Exact mode's union ratio above which a tile reads every row (the gathered kernels lose their
// edge there; ffn_gpu_bench's every-row rows).
constexpr double kDefaultCudaBreakEven = 0.9;

// Block-table uploads are rounded up to this many bytes, so a growing table keeps a step's
// signature (and graph) until it crosses a multiple.
constexpr size_t kTableUploadQuantum = 4096;

// Per-tile FFN statistics folded into one call's FfnStats: actives summed, the union as the
// mean over tiles, dense when every tile read every row.
struct TileTotals {
  int64_t active = 0, union_sum = 0, tiles = 0;
  bool dense = true;
  void Add(int64_t union_size, int64_t active_count, int64_t neurons) {
    active += active_count;
    union_sum += union_size;
    dense = dense && union_size == neurons;
    ++tiles;
  }
  void Into(FfnStats* s) const {
    s->active_sum += active;
    if (tiles == 0) return;
    s->union_size = union_sum / tiles;
    s->rows_skipped = s->neurons - s->union_size;
    s->dense = dense;
  }
};

}  // namespace

absl::StatusOr<std::unique_ptr<CudaBackend>> CudaBackend::Create(const BackendOptions& options) {
  RETURN_IF_ERROR(cuda::ProbeDevice());
  auto b = std::unique_ptr<CudaBackend>(new CudaBackend(options));
  cudaDeviceProp p{};
  if (const cudaError_t e = cudaGetDeviceProperties(&p, 0); e != cudaSuccess) {
    return absl::FailedPreconditionError(Err("cudaGetDeviceProperties", e).message());
  }
  size_t free_b = 0, total_b = 0;
  cudaMemGetInfo(&free_b, &total_b);
  b->description_ =
      absl::StrFormat("cuda %s sm_%d%d, %d SMs, %.1f GiB free of %.1f", p.name, p.major, p.minor,
                      p.multiProcessorCount, free_b / 1073741824.0, total_b / 1073741824.0);
  absl::StatusOr<std::shared_ptr<cuda::Context>> context = cuda::Context::Create();
  if (!context.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot set up a CUDA stream: ", context.status().message()));
  }
  b->context_ = *std::move(context);
  absl::StatusOr<std::shared_ptr<cuda::FfnWorkspace>> workspace =
      cuda::FfnWorkspace::Create(b->context_);
  if (!workspace.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot set up the CUDA FFN: ", workspace.status().message()));
  }
  b->ffn_workspace_ = *std::move(workspace);
  b->stream_ = b->context_->stream();
  b->graphs_ = std::make_unique<cuda::StepGraphs>(b->stream_, options.cuda_graphs);
  return b;
}

CudaBackend::~CudaBackend() {
  cudaDeviceSynchronize();
  graphs_.reset();  // destroys the cached graphs while their stream lives
  ffns_.clear();
  for (auto& [host, dev] : weights_) cudaFree(dev);
  for (auto& [host, u] : vectors_) cudaFree(u.device);
  for (Scratch* s : {&ints_, &trig_, &ids_, &rows_, &x_bf16_, &y_bf16_, &attn_part_}) {
    cudaFree(s->p);
  }
  for (Staging* s : {&ids_host_, &ints_host_, &trig_host_, &stats_host_}) {
    cudaFreeHost(s->buffer.p);
  }
  cudaFree(kv_);
  ffn_workspace_.reset();
  context_.reset();  // last: everything above launched on its stream
}

std::string CudaBackend::Describe() const {
  std::string d = description_;
  if (const size_t ws = ffn_workspace_ ? ffn_workspace_->bytes() : 0; ws > 0) {
    absl::StrAppendFormat(&d, ", FFN scratch %.1f MiB", ws / 1048576.0);
  }
  if (!options_.cuda_graphs) return d;
  return absl::StrCat(d, ", ", graphs_->Describe());
}

bool CudaBackend::Failed(const absl::Status& status) {
  if (!status.ok() && error_.ok()) error_ = status;
  return !error_.ok();
}

absl::Status CudaBackend::PrepareFfn(const FfnLayer& layer) {
  if (IsBlockQuantized(layer.up->dtype)) {
    return absl::UnimplementedError(
        absl::StrCat("the CUDA backend runs bf16, fp16 and fp32 FFN weights; ",
                     DTypeName(layer.up->dtype), " weights run on the CPU backend (--device=cpu)"));
  }
  if (layer.gate == nullptr) {
    return absl::UnimplementedError(
        "the CUDA backend runs gated FFNs (gate, up, down) only; this model has no gate_proj");
  }
  if (layer.hidden() % 8 != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the CUDA backend needs a hidden size that is a multiple of 8; this model's is ",
        layer.hidden()));
  }
  if (ffns_.count(layer.up->data)) return absl::OkStatus();
  std::vector<uint16_t> g, u, d;
  cuda::FfnShape shape{layer.neurons(), layer.hidden()};
  absl::StatusOr<std::unique_ptr<cuda::CudaFfn>> f =
      cuda::CudaFfn::Create(shape, AsBf16(*layer.gate, &g), AsBf16(*layer.up, &u),
                            AsBf16(*layer.down_t, &d), ffn_workspace_);
  // The scratch of the largest call (one slab) is claimed now, before the KV cache is sized from
  // the memory left free.
  absl::Status status = f.ok() ? (*f)->Reserve(kFfnSlabTokens) : f.status();
  if (!status.ok()) {
    return cuda::WithContext(absl::StrCat("cannot place an FFN layer (", shape.neurons, "×",
                                          shape.hidden, ") on the GPU"),
                             status);
  }
  ffns_[layer.up->data] = *std::move(f);
  return absl::OkStatus();
}

absl::Status CudaBackend::AllocKvCache(const KvCacheShape& shape) {
  if (shape.dtype != DType::kF32 && shape.dtype != DType::kBF16) {
    return absl::InvalidArgumentError("the KV cache holds fp32 or bf16");
  }
  Flush();
  graphs_->Drop();
  cudaFree(kv_);
  kv_ = nullptr;
  const size_t bytes = shape.BytesPerBlock() * shape.blocks;
  if (const cudaError_t e = cudaMalloc(&kv_, bytes); e != cudaSuccess) {
    cudaGetLastError();
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    return absl::ResourceExhaustedError(absl::StrCat("cannot allocate a KV cache of ", bytes >> 20,
                                                     " MiB on the GPU (", free_b >> 20,
                                                     " MiB free): lower --kv_cache_mb"));
  }
  cudaMemset(kv_, 0, bytes);
  kv_shape_ = shape;
  return absl::OkStatus();
}

cuda::PagedLayer CudaBackend::Layer(int layer) const {
  const size_t plane =  // bytes of one layer's K (or V)
      kv_shape_.BytesPerBlock() / 2 / kv_shape_.layers * static_cast<size_t>(kv_shape_.blocks);
  char* base = static_cast<char*>(kv_) + static_cast<size_t>(layer) * 2 * plane;
  return {base,
          base + plane,
          kv_shape_.block_size,
          kv_shape_.kv_heads,
          kv_shape_.head_dim,
          kv_shape_.dtype == DType::kBF16};
}

void CudaBackend::Embed(const Matrix& table, const int32_t* ids, int T, float scale, float* out) {
  if (!error_.ok()) return;
  const uint16_t* w = DeviceWeights(table);
  auto* dev = static_cast<int32_t*>(Grow(ids_, sizeof(int32_t) * T));
  if (!w || !dev) return;
  if (!Upload(ids_host_, dev, {{ids, sizeof(int32_t) * T}}, 0, "uploading token ids")) return;
  const int64_t d = table.cols;
  void* st = stream_;
  Enqueue({kOpEmbed, W(w), W(d), W(dev), W(T), W(scale), W(out)},
          [=] { return cuda::Embed(w, d, dev, T, scale, out, st); });
}

void CudaBackend::RmsNorm(const float* x, const float* weight, int T, int d, float eps,
                          float* out) {
  if (!error_.ok()) return;
  const float* w = DeviceVector(weight, d);
  if (!w) return;
  void* st = stream_;
  Enqueue({kOpRmsNorm, W(x), W(w), W(T), W(d), W(eps), W(out)},
          [=] { return cuda::RmsNorm(x, w, T, d, eps, out, st); });
}

void CudaBackend::MatMul(const float* x, int T, const Matrix& w, float* y) {
  if (!error_.ok()) return;
  const uint16_t* dw = DeviceWeights(w);
  if (!dw) return;
  const int64_t cols = w.cols, rows = w.rows;
  if (UseCublas(T)) {
    Undefer();  // cuBLAS calls stay out of step graphs
    void* xb = Grow(x_bf16_, static_cast<size_t>(T) * cols * 2);
    if (xb) Failed(cuda::CublasMatMul(context_->cublas(), x, T, dw, cols, rows, xb, y, stream_));
    return;
  }
  void* st = stream_;
  Enqueue({kOpMatMul, W(x), W(T), W(dw), W(cols), W(rows), W(y)},
          [=] { return cuda::MatMul(x, T, dw, cols, nullptr, rows, y, 0, st); });
}

void CudaBackend::MatMul3(const float* x, int T, const Matrix& a, float* ya, const Matrix& b,
                          float* yb, const Matrix& c, float* yc) {
  if (!error_.ok()) return;
  if (UseCublas(T) || a.cols != b.cols || a.cols != c.cols) {
    MatMul(x, T, a, ya);
    MatMul(x, T, b, yb);
    MatMul(x, T, c, yc);
    return;
  }
  const uint16_t *wa = DeviceWeights(a), *wb = DeviceWeights(b), *wc = DeviceWeights(c);
  if (!wa || !wb || !wc) return;
  const cuda::MatMulOut oa{wa, a.rows, ya}, ob{wb, b.rows, yb}, oc{wc, c.rows, yc};
  const int64_t cols = a.cols;
  void* st = stream_;
  Enqueue({kOpMatMul3, W(x), W(T), W(cols), W(wa), W(a.rows), W(ya), W(wb), W(b.rows), W(yb), W(wc),
           W(c.rows), W(yc)},
          [=] { return cuda::MatMul3(x, T, cols, oa, ob, oc, st); });
}

void CudaBackend::MatMulRows(const float* x, int T, const Matrix& w, const int32_t* rows,
                             int n_rows, float* y) {
  Undefer();
  if (!error_.ok()) return;
  const uint16_t* dw = DeviceWeights(w);
  auto* dev = static_cast<int32_t*>(Grow(rows_, sizeof(int32_t) * std::max(n_rows, 1)));
  if (!dw || !dev) return;
  if (const cudaError_t e = cudaMemcpy(dev, rows, sizeof(int32_t) * n_rows, cudaMemcpyHostToDevice);
      e != cudaSuccess) {
    Failed(Err("uploading row ids", e));
    return;
  }
  Failed(cuda::MatMul(x, T, dw, w.cols, dev, n_rows, y, 0, stream_));
}

void CudaBackend::AddScaled(float* y, const float* x, size_t n, float scale) {
  if (!error_.ok()) return;
  void* st = stream_;
  Enqueue({kOpAddScaled, W(y), W(x), W(n), W(scale)},
          [=] { return cuda::AddScaled(y, x, n, scale, st); });
}

bool CudaBackend::UploadTrig(const float* cos, const float* sin, int T, int half) {
  const size_t n = static_cast<size_t>(T) * half;
  auto* dev = static_cast<float*>(Grow(trig_, 2 * n * sizeof(float)));
  if (!dev) return false;
  if (!Upload(trig_host_, dev, {{cos, n * sizeof(float)}, {sin, n * sizeof(float)}}, 0,
              "uploading rotary tables")) {
    return false;
  }
  step_.cos_host = cos;
  step_.cos = dev;
  step_.sin = dev + n;
  return true;
}

bool CudaBackend::UploadAttention(const AttentionBatch& batch) {
  const int T = batch.num_tokens, bs = kv_shape_.block_size;
  // [positions T][slots T][table_start T][tables...]; tokens of one sequence share its table.
  std::vector<int32_t> h(3 * static_cast<size_t>(T));
  std::unordered_map<const std::vector<int32_t>*, int32_t> start;
  int max_len = 0;
  for (int t = 0; t < T; ++t) {
    const std::vector<int32_t>* table = batch.block_tables[t];
    const int32_t pos = batch.positions[t];
    h[t] = pos;
    h[T + t] = (*table)[pos / bs] * bs + pos % bs;
    auto [it, fresh] = start.emplace(table, static_cast<int32_t>(h.size()));
    if (fresh) h.insert(h.end(), table->begin(), table->end());
    h[2 * T + t] = it->second - 3 * T;
    max_len = std::max(max_len, pos + 1);
  }
  const size_t used = h.size() * sizeof(int32_t);
  const size_t bytes = (used + kTableUploadQuantum - 1) / kTableUploadQuantum * kTableUploadQuantum;
  auto* dev = static_cast<int32_t*>(Grow(ints_, bytes));
  if (!dev) return false;
  if (!Upload(ints_host_, dev, {{h.data(), used}}, bytes, "uploading block tables")) {
    return false;
  }
  step_.positions_host = batch.positions;
  step_.T = T;
  step_.max_len = max_len;
  step_.positions = dev;
  step_.slots = dev + T;
  step_.table_start = dev + 2 * T;
  step_.tables = dev + 3 * T;
  return true;
}

void CudaBackend::BeginStep(const AttentionBatch& batch, const float* cos, const float* sin) {
  if (!error_.ok()) return;
  graphs_->Begin();
  step_active_ =
      UploadAttention(batch) && UploadTrig(cos, sin, batch.num_tokens, kv_shape_.head_dim / 2);
}

void CudaBackend::Rope(float* q, float* k, const float* cos, const float* sin, int T, int heads,
                       int kv_heads, int head_dim) {
  if (!error_.ok()) return;
  if (!(step_active_ && step_.cos_host == cos && step_.T == T) &&
      !UploadTrig(cos, sin, T, head_dim / 2)) {
    return;
  }
  const float *c = step_.cos, *s = step_.sin;
  void* st = stream_;
  Enqueue({kOpRope, W(q), W(k), W(c), W(s), W(T), W(heads), W(kv_heads), W(head_dim)},
          [=] { return cuda::Rope(q, k, c, s, T, heads, kv_heads, head_dim, st); });
}

void CudaBackend::Attention(int layer, const float* q, const float* k, const float* v,
                            const AttentionBatch& batch, int heads, float* out) {
  if (!error_.ok()) return;
  if (!(step_active_ && step_.positions_host == batch.positions && step_.T == batch.num_tokens) &&
      !UploadAttention(batch)) {
    return;
  }
  const cuda::PagedLayer pl = Layer(layer);
  const int T = batch.num_tokens, max_len = step_.max_len;
  const size_t scratch = cuda::AttentionScratchFloats(T, heads, kv_shape_.head_dim, max_len);
  auto* part = static_cast<float*>(scratch ? Grow(attn_part_, scratch * sizeof(float)) : nullptr);
  if (scratch && !part) return;
  const int32_t *slots = step_.slots, *positions = step_.positions,
                *table_start = step_.table_start, *tables = step_.tables;
  void* st = stream_;
  // The kernels' arguments depend on max_len only through the number of splits.
  Enqueue({kOpAttention, W(pl.k), W(pl.v), W(pl.block_size), W(pl.kv_heads), W(pl.head_dim),
           W(pl.bf16), W(q), W(k), W(v), W(slots), W(positions), W(table_start), W(tables), W(T),
           W(heads), W(cuda::AttentionSplits(max_len)), W(part), W(out)},
          [=] {
            RETURN_IF_ERROR(cuda::WriteKv(pl, k, v, slots, T, st));
            return cuda::Attention(pl, q, positions, table_start, tables, T, heads, max_len, part,
                                   out, st);
          });
}

cuda::CudaFfn* CudaBackend::FfnFor(const FfnLayer& layer) {
  auto it = ffns_.find(layer.up->data);
  if (it == ffns_.end()) {
    if (Failed(PrepareFfn(layer))) return nullptr;
    it = ffns_.find(layer.up->data);
  }
  return it->second.get();
}

void CudaBackend::Ffn(const FfnLayer& layer, const float* x, int T, SparsityMode mode, float* y,
                      FfnStats* stats) {
  if (!error_.ok() || T <= 0) return;
  cuda::CudaFfn* f = FfnFor(layer);
  if (!f) return;
  const Activation act = layer.activation;
  const int64_t F = layer.neurons(), d = layer.hidden();
  if (stats) *stats = FfnStats{T, F, 0, 0, 0, true};
  if (mode != SparsityMode::kThreshold && UseCublas(T)) {
    // Dense cuBLAS: bf16 activations in and out, as a dense server computes it; not captured.
    Undefer();
    void* xb = Grow(x_bf16_, static_cast<size_t>(T) * d * 2);
    void* yb = Grow(y_bf16_, static_cast<size_t>(T) * d * 2);
    if (!xb || !yb) return;
    if (Failed(cuda::ConvertToBf16(x, xb, static_cast<size_t>(T) * d, stream_))) return;
    if (Failed(f->RunDenseCublas(xb, T, act, layer.threshold, yb))) return;
    Failed(cuda::Bf16ToF32(yb, y, static_cast<size_t>(T) * d, stream_));
    if (stats) {
      stats->active_sum = T * F;  // not counted on this path
      stats->union_size = F;
    }
    return;
  }
  const float* thresholds = nullptr;
  if (mode == SparsityMode::kThreshold) {
    if (layer.neuron_thresholds == nullptr) {
      Failed(absl::InvalidArgumentError("threshold mode without neuron thresholds"));
      return;
    }
    thresholds = DeviceVector(layer.neuron_thresholds, F);
    if (!thresholds) return;
  }
  const double be =
      options_.dense_break_even >= 0 ? options_.dense_break_even : kDefaultCudaBreakEven;
  const bool sparse = mode != SparsityMode::kOff;
  const float threshold = layer.threshold;
  if (T <= kFfnSlabTokens) {
    // Buffers first (a growth moves workspace buffers, which the generation in the signature
    // records), then the launch, deferred like every operation.
    if (Failed(f->Reserve(T))) return;
    if (stats) pending_.push_back({f, stats, cuda::CudaFfn::Tiles(T)});
    Enqueue({kOpFfn, W(f), W(x), W(T), W(static_cast<int>(act)), W(threshold), W(sparse), W(be),
             W(y), W(thresholds), W(f->workspace().generation()), W(f->stats_device())},
            [=] {
              return f->Run(x, T, y,
                            cuda::FfnRun{.activation = act,
                                         .threshold = threshold,
                                         .sparse = sparse,
                                         .break_even = be,
                                         .neuron_thresholds = thresholds});
            });
    return;
  }
  // Long prompts: slabs of whole token tiles, each with its own unions (read back at once, so
  // launched directly).
  Undefer();
  std::vector<cuda::FfnTileStats> tiles;
  TileTotals totals;
  for (int s = 0; s < T; s += kFfnSlabTokens) {
    const int n = std::min(kFfnSlabTokens, T - s);
    if (Failed(f->Run(x + static_cast<size_t>(s) * d, n, y + static_cast<size_t>(s) * d,
                      cuda::FfnRun{.activation = act,
                                   .threshold = threshold,
                                   .sparse = sparse,
                                   .break_even = be,
                                   .stats = stats ? &tiles : nullptr,
                                   .neuron_thresholds = thresholds}))) {
      return;
    }
    for (const cuda::FfnTileStats& t : tiles) totals.Add(t.union_size, t.active_sum, F);
  }
  if (stats) totals.Into(stats);
}

int64_t CudaBackend::FreeMemoryBytes() const {
  size_t free_b = 0, total_b = 0;
  if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) return 0;
  return static_cast<int64_t>(free_b);
}

absl::Status CudaBackend::FinishStep() {
  Flush();
  step_active_ = false;
  // Queue every layer's tile-stats copy behind the step, then wait once.
  size_t total = 0;
  for (const PendingStats& p : pending_) total += 2 * sizeof(int32_t) * p.tiles;
  auto* host =
      error_.ok() && total ? static_cast<int32_t*>(GrowPinned(stats_host_, total)) : nullptr;
  if (host) {
    size_t off = 0;
    for (const PendingStats& p : pending_) {
      const size_t bytes = 2 * sizeof(int32_t) * p.tiles;
      if (Failed(
              Err("copying FFN statistics",
                  cudaMemcpyAsync(reinterpret_cast<char*>(host) + off, p.ffn->stats_device(), bytes,
                                  cudaMemcpyDeviceToHost, static_cast<cudaStream_t>(stream_))))) {
        break;
      }
      off += bytes;
    }
  }
  if (const cudaError_t e = cudaDeviceSynchronize(); e != cudaSuccess) {
    Failed(Err("the GPU step failed", e));
  }
  for (Staging* s : {&ids_host_, &ints_host_, &trig_host_, &stats_host_}) s->pending = false;
  if (error_.ok() && host) {
    const int32_t* h = host;
    for (const PendingStats& p : pending_) {
      TileTotals totals;
      for (int i = 0; i < p.tiles; ++i, h += 2) totals.Add(h[0], h[1], p.stats->neurons);
      totals.Into(p.stats);
    }
  }
  pending_.clear();
  return cuda::WithContext("CUDA backend", std::exchange(error_, absl::OkStatus()));
}

}  // namespace sparsed
