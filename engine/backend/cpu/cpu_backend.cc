#include "engine/backend/cpu/cpu_backend.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "absl/strings/str_cat.h"
#include "engine/common/cpu_quota.h"
#include "engine/common/panel.h"
#include "engine/common/quantize.h"

namespace sparsed {
namespace {

// From bench/ffn_bench (bench/results/cpu_ffn_bench.md): the gathered path wins at a union of
// 69% (1.11-1.16x) and loses at 93-94% (0.92-0.99x); past this ratio the fallback reads every
// up row (still skipping all-zero down rows in exact mode).
constexpr double kDefaultCpuBreakEven = 0.85;
// Exact mode runs per-token products when the tokens' mean active neurons are below this
// fraction of the union (bench/results: the union tiles run near the FMA peak, per-token dots at
// a fraction of it).
constexpr double kDefaultPerTokenBreakEven = 0.5;
constexpr int64_t kRowsPerTask = 32;
constexpr int64_t kTokensPerTask = 12;  // a multiple of every table's token tile

// The CPUs the process may use (affinity and cgroup quota), not the node's count.
int DefaultThreads() { return UsableCpus(); }

}  // namespace

std::unique_ptr<Backend> MakeCpuBackend(const BackendOptions& options) {
  return std::make_unique<CpuBackend>(options);
}

CpuBackend::CpuBackend(const BackendOptions& options)
    : kernels_(cpu::SelectKernels(options.cpu_isa)),
      pool_(options.threads > 0 ? options.threads : DefaultThreads()),
      dense_break_even_(options.dense_break_even >= 0 ? options.dense_break_even
                                                      : kDefaultCpuBreakEven),
      per_token_break_even_(options.per_token_break_even >= 0 ? options.per_token_break_even
                                                              : kDefaultPerTokenBreakEven) {}

std::string CpuBackend::Describe() const {
  return absl::StrCat("cpu isa=", kernels_.isa, " threads=", pool_.num_threads());
}

absl::StatusOr<DeviceBuffer> CpuBackend::Alloc(size_t floats) {
  const size_t bytes = ((std::max<size_t>(floats, 1) * sizeof(float)) + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, bytes);
  if (p == nullptr)
    return absl::ResourceExhaustedError(absl::StrCat("cannot allocate ", bytes, " bytes"));
  std::memset(p, 0, bytes);
  return DeviceBuffer(static_cast<float*>(p), [](float* f) { std::free(f); });
}

void CpuBackend::CopyToHost(const float* src, size_t n, float* dst) {
  std::memcpy(dst, src, n * sizeof(float));
}

void CpuBackend::CopyFromHost(const float* src, size_t n, float* dst) {
  std::memcpy(dst, src, n * sizeof(float));
}

absl::Status CpuBackend::AllocKvCache(const KvCacheShape& shape) {
  if (shape.dtype != DType::kF32 && shape.dtype != DType::kBF16) {
    return absl::InvalidArgumentError("the KV cache holds fp32 or bf16");
  }
  kv_shape_ = shape;
  const size_t bytes = shape.BytesPerBlock() * shape.blocks;
  try {
    kv_.clear();
    kv16_.clear();
    if (shape.dtype == DType::kBF16) {
      kv16_.assign(bytes / sizeof(uint16_t), 0);
    } else {
      kv_.assign(bytes / sizeof(float), 0.f);
    }
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot allocate a KV cache of ", bytes, " bytes"));
  }
  return absl::OkStatus();
}

void CpuBackend::Embed(const Matrix& table, const int32_t* ids, int T, float scale, float* out) {
  const int64_t d = table.cols;
  for (int t = 0; t < T; ++t) {
    const void* row = table.Row(ids[t]);
    for (int64_t i = 0; i < d; ++i) out[t * d + i] = LoadAsF32(row, table.dtype, i) * scale;
  }
}

void CpuBackend::RmsNorm(const float* x, const float* weight, int T, int d, float eps, float* out) {
  for (int t = 0; t < T; ++t) {
    const float* xt = x + static_cast<size_t>(t) * d;
    double ss = 0;
    for (int i = 0; i < d; ++i) ss += static_cast<double>(xt[i]) * xt[i];
    const float inv = static_cast<float>(1.0 / std::sqrt(ss / d + eps));
    float* ot = out + static_cast<size_t>(t) * d;
    for (int i = 0; i < d; ++i) ot[i] = xt[i] * inv * weight[i];
  }
}

void CpuBackend::DotRows(const float* x, int T, const Matrix& w, const int32_t* rows, int64_t n,
                         float* y, int64_t ldy, const float* need, int64_t ld_need) {
  DotRowsOn(x, T, w, rows, n, y, ldy, need, ld_need, /*quantize=*/true);
}

void CpuBackend::DotRowsOn(const float* x, int T, const Matrix& w, const int32_t* rows, int64_t n,
                           float* y, int64_t ldy, const float* need, int64_t ld_need,
                           bool quantize) {
  // Tasks are blocks of rows, split further by tokens when rows alone give fewer than four tasks
  // per thread (a narrow product over many tokens: k and v of a long prompt). Every (token, row)
  // pair is computed the same way whatever task holds it.
  const int64_t row_tasks = (n + kRowsPerTask - 1) / kRowsPerTask;
  const int64_t want = 4 * static_cast<int64_t>(pool_.num_threads());
  int64_t tok_tasks = 1;
  if (row_tasks < want && T > kTokensPerTask)
    tok_tasks = std::min<int64_t>((T + kTokensPerTask - 1) / kTokensPerTask,
                                  (want + row_tasks - 1) / row_tasks);
  const int64_t per_task = (T + tok_tasks - 1) / tok_tasks;
  const int64_t tok_chunk = (per_task + kTokensPerTask - 1) / kTokensPerTask * kTokensPerTask;
  tok_tasks = (T + tok_chunk - 1) / tok_chunk;
  const bool quantized = IsBlockQuantized(w.dtype);
  if (quantized && quantize) QuantizeActivations(x, T, w.cols);
  pool_.ParallelFor(static_cast<int>(row_tasks * tok_tasks), [&](int task) {
    const int64_t rt = task / tok_tasks, tt = task % tok_tasks;
    const int64_t i0 = rt * kRowsPerTask, i1 = std::min(n, i0 + kRowsPerTask);
    const int64_t t0 = tt * tok_chunk, t1 = std::min<int64_t>(T, t0 + tok_chunk);
    if (w.panels) {  // the dense products: rows and need are null (cpu_backend.h)
      kernels_.dot_panels_q(xq_.data() + t0 * w.cols, xd_.data() + t0 * (w.cols / kQuantBlock),
                            xs_.data() + t0 * (w.cols / kQuantBlock), static_cast<int>(t1 - t0),
                            w.data, w.dtype, w.cols, n, i0 / kPanelRows,
                            (i1 + kPanelRows - 1) / kPanelRows, y + t0 * ldy, ldy);
      return;
    }
    if (quantized) {
      kernels_.dot_rows_q(xq_.data() + t0 * w.cols, xd_.data() + t0 * (w.cols / kQuantBlock),
                          static_cast<int>(t1 - t0), w.data, w.dtype, w.cols, rows, i0, i1,
                          y + t0 * ldy, ldy, need ? need + t0 * ld_need : nullptr, ld_need);
      return;
    }
    kernels_.dot_rows(x + t0 * w.cols, w.cols, static_cast<int>(t1 - t0), w.data, w.dtype, w.cols,
                      rows, i0, i1, y + t0 * ldy, ldy, need ? need + t0 * ld_need : nullptr,
                      ld_need);
  });
}

void CpuBackend::QuantizeActivations(const float* x, int T, int64_t K) {
  const int64_t nb = K / kQuantBlock;
  xq_.resize(static_cast<size_t>(T) * K);
  xd_.resize(static_cast<size_t>(T) * nb);
  xs_.resize(static_cast<size_t>(T) * nb);
  auto rows = [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int8_t* q = xq_.data() + t * K;
      QuantizeActivationRow(x + t * K, K, xq_.data() + t * K, xd_.data() + t * nb);
      for (int64_t b = 0; b < nb; ++b) {
        int32_t sum = 0;
        for (int64_t j = 0; j < kQuantBlock; ++j) sum += q[b * kQuantBlock + j];
        xs_[t * nb + b] = sum;
      }
    }
  };
  if (T < 8) return rows(0, T);
  const int tasks = std::min(T, 4 * pool_.num_threads());
  pool_.ParallelFor(tasks,
                    [&](int k) { rows(int64_t{T} * k / tasks, int64_t{T} * (k + 1) / tasks); });
}

void CpuBackend::AxpyRows(const float* h, int64_t ldh, int T, int64_t n, const int32_t* rows,
                          const Matrix& w, float* y, bool skip_zero_rows) {
  const int64_t F = w.rows, cols = w.cols;
  int64_t bounds[kDownChunks + 1];
  for (int c = 0; c <= kDownChunks; ++c) {
    const int64_t neuron = DownChunkStart(F, c);
    bounds[c] = rows
                    ? std::lower_bound(rows, rows + n,
                                       static_cast<int32_t>(std::min<int64_t>(neuron, INT32_MAX))) -
                          rows
                    : std::min(neuron, n);
  }
  DownByRanges(T, cols, y, /*direct=*/T <= kDirectDownTokens,
               [&](int c, int64_t cg0, int64_t cg1, float* p) {
                 const int64_t b = bounds[c], cnt = bounds[c + 1] - bounds[c];
                 if (cnt == 0) return;
                 const void* base = rows ? w.data : w.Row(b);
                 kernels_.axpy_rows(h + b, ldh, T, cnt, rows ? rows + b : nullptr, base, w.dtype,
                                    cols, cg0, cg1, p, cols, skip_zero_rows);
               });
}

void CpuBackend::DownByRanges(
    int T, int64_t cols, float* y, bool direct,
    const std::function<void(int range, int64_t c0, int64_t c1, float* partial)>& fn) {
  // Neurons are split into kDownChunks fixed ranges of neuron ids. Each range's rows are summed
  // (in order) into its own partial, then partials are added in range order: every output
  // element's summation order depends on neuron ids only — not on the union, the batch or the
  // thread count. Tasks are (range, column group) pairs: columns are independent, so splitting
  // them changes no sum and lets more threads share a range.
  // Column groups: as many as the threads need for ~4 tasks each — except for the kernel's
  // direct path (few tokens, weights read straight from memory), which streams whole rows
  // fastest: there, only as many groups as leave two tasks per thread (one on 2 threads).
  const int64_t most = std::max<int64_t>(1, cols / 256);
  const int groups = static_cast<int>(
      direct
          ? std::clamp<int64_t>((2 * pool_.num_threads() + kDownChunks - 1) / kDownChunks, 1, most)
          : std::min<int64_t>(2 * pool_.num_threads(), most));
  // Group bounds are whole quantization blocks (32 columns), so every weight type splits alike.
  auto col_bound = [&](int g) { return cols * g / groups / kQuantBlock * kQuantBlock; };
  const size_t slab = static_cast<size_t>(T) * cols;
  partial_.resize(kDownChunks * slab);
  pool_.ParallelFor(kDownChunks * groups, [&](int task) {
    const int c = task / groups, g = task % groups;
    const int64_t cg0 = col_bound(g), cg1 = g + 1 == groups ? cols : col_bound(g + 1);
    float* p = partial_.data() + c * slab;
    for (int t = 0; t < T; ++t) std::fill(p + t * cols + cg0, p + t * cols + cg1, 0.f);
    fn(c, cg0, cg1, p);
  });
  const int64_t total = static_cast<int64_t>(slab);
  const int tasks = static_cast<int>(
      std::min<int64_t>(pool_.num_threads() * 4, std::max<int64_t>(1, total / 1024)));
  pool_.ParallelFor(tasks, [&](int task) {
    const int64_t i0 = total * task / tasks, i1 = total * (task + 1) / tasks;
    for (int64_t i = i0; i < i1; ++i) {
      float s = y[i];
      for (int c = 0; c < kDownChunks; ++c) s += partial_[c * slab + i];
      y[i] = s;
    }
  });
}

void CpuBackend::MatMul(const float* x, int T, const Matrix& w, float* y) {
  DotRows(x, T, w, nullptr, w.rows, y, w.rows, nullptr, 0);
}

void CpuBackend::MatMulRows(const float* x, int T, const Matrix& w, const int32_t* rows, int n_rows,
                            float* y) {
  DotRows(x, T, w, rows, n_rows, y, n_rows, nullptr, 0);
}

void CpuBackend::MatMul3(const float* x, int T, const Matrix& a, float* ya, const Matrix& b,
                         float* yb, const Matrix& c, float* yc) {
  const bool once = IsBlockQuantized(a.dtype) && IsBlockQuantized(b.dtype) &&
                    IsBlockQuantized(c.dtype) && a.cols == b.cols && b.cols == c.cols;
  if (once) QuantizeActivations(x, T, a.cols);
  for (auto [w, y] : {std::pair{&a, ya}, std::pair{&b, yb}, std::pair{&c, yc}})
    DotRowsOn(x, T, *w, nullptr, w->rows, y, w->rows, nullptr, 0, /*quantize=*/!once);
}

void CpuBackend::AddScaled(float* y, const float* x, size_t n, float scale) {
  if (scale == 1.f) {
    for (size_t i = 0; i < n; ++i) y[i] += x[i];
  } else {
    for (size_t i = 0; i < n; ++i) y[i] += scale * x[i];
  }
}

void CpuBackend::Rope(float* q, float* k, const float* cos, const float* sin, int T, int heads,
                      int kv_heads, int head_dim) {
  const int half = head_dim / 2;
  auto rotate = [&](float* v, const float* c, const float* s) {
    for (int i = 0; i < half; ++i) {
      const float a = v[i], b = v[i + half];
      v[i] = a * c[i] - b * s[i];
      v[i + half] = b * c[i] + a * s[i];
    }
  };
  for (int t = 0; t < T; ++t) {
    const float* c = cos + static_cast<size_t>(t) * half;
    const float* s = sin + static_cast<size_t>(t) * half;
    for (int h = 0; h < heads; ++h)
      rotate(q + (static_cast<size_t>(t) * heads + h) * head_dim, c, s);
    for (int h = 0; h < kv_heads; ++h)
      rotate(k + (static_cast<size_t>(t) * kv_heads + h) * head_dim, c, s);
  }
}

}  // namespace sparsed
