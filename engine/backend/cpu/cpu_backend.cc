#include "engine/backend/cpu/cpu_backend.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "absl/strings/str_cat.h"

namespace sparsed {
namespace {

// From bench/ffn_bench (bench/results/cpu_ffn_bench.md): the gathered path wins at a union of
// 69% (1.11-1.16x) and loses at 93-94% (0.92-0.99x); past this ratio the fallback reads every
// up row (still skipping all-zero down rows in exact mode).
constexpr double kDefaultCpuBreakEven = 0.85;
constexpr int64_t kRowsPerTask = 32;

int DefaultThreads() {
  const unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

}  // namespace

std::unique_ptr<Backend> MakeCpuBackend(const BackendOptions& options) {
  return std::make_unique<CpuBackend>(options);
}

CpuBackend::CpuBackend(const BackendOptions& options)
    : kernels_(cpu::SelectKernels(options.cpu_isa)),
      pool_(options.threads > 0 ? options.threads : DefaultThreads()),
      dense_break_even_(options.dense_break_even >= 0 ? options.dense_break_even
                                                      : kDefaultCpuBreakEven) {}

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
                         float* y, int64_t ldy) {
  const int tasks = static_cast<int>((n + kRowsPerTask - 1) / kRowsPerTask);
  pool_.ParallelFor(tasks, [&](int task) {
    const int64_t i0 = task * kRowsPerTask, i1 = std::min(n, i0 + kRowsPerTask);
    kernels_.dot_rows(x, w.cols, T, w.data, w.dtype, w.cols, rows, i0, i1, y, ldy);
  });
}

void CpuBackend::AxpyRows(const float* h, int64_t ldh, int T, int64_t n, const int32_t* rows,
                          const Matrix& w, float* y, bool skip_zero_rows) {
  // Neurons are split into kDownChunks fixed ranges of neuron ids. Each range's rows are summed
  // (in order) into its own partial, then partials are added in range order: every output
  // element's summation order depends on neuron ids only — not on the union, the batch or the
  // thread count — and each thread streams whole rows.
  const int64_t F = w.rows, cols = w.cols;
  const size_t es = DTypeSize(w.dtype);
  int64_t bounds[kDownChunks + 1];
  for (int c = 0; c <= kDownChunks; ++c) {
    const int64_t neuron = F * c / kDownChunks;
    bounds[c] = rows
                    ? std::lower_bound(rows, rows + n,
                                       static_cast<int32_t>(std::min<int64_t>(neuron, INT32_MAX))) -
                          rows
                    : std::min(neuron, n);
  }
  const size_t slab = static_cast<size_t>(T) * cols;
  partial_.resize(kDownChunks * slab);
  pool_.ParallelFor(kDownChunks, [&](int c) {
    float* p = partial_.data() + c * slab;
    std::fill(p, p + slab, 0.f);
    const int64_t b = bounds[c], cnt = bounds[c + 1] - bounds[c];
    if (cnt == 0) return;
    const void* base =
        rows ? w.data : static_cast<const char*>(w.data) + static_cast<size_t>(b * cols) * es;
    kernels_.axpy_rows(h + b, ldh, T, cnt, rows ? rows + b : nullptr, base, w.dtype, cols, 0, cols,
                       p, cols, skip_zero_rows);
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
  DotRows(x, T, w, nullptr, w.rows, y, w.rows);
}

void CpuBackend::MatMulRows(const float* x, int T, const Matrix& w, const int32_t* rows, int n_rows,
                            float* y) {
  DotRows(x, T, w, rows, n_rows, y, n_rows);
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
