// Exact mode's per-token products on the CPU backend. Once a batch's union is much wider than a
// token's own mask (decode batches of 8-64, prefill), the union products compute mostly products
// that per-token masking then multiplies by zero. Here each token computes only its own active
// neurons: its up products (a dot of its row of x with each active row of W_up) and its down
// sum over its own non-zero coefficients. Each of those values is computed by the same kernel
// instruction sequence as in the union products (kernels.h: the dot's order depends on K only;
// the down sum adds a token's non-zero terms in neuron order within the same fixed ranges), so a
// token's output is bitwise the same on either path, and the cost model may pick per step.
#include <algorithm>
#include <chrono>

#include "engine/backend/cpu/cpu_backend.h"

namespace sparsed {
namespace {

// Bytes of up rows a task keeps in cache while every token passes over them.
constexpr int64_t kUpRangeBytes = 1024 * 1024;

}  // namespace

void CpuBackend::FfnPerToken(const FfnLayer& layer, const float* x, int T, float* y) {
  const auto start = std::chrono::steady_clock::now();
  const int64_t F = layer.neurons(), d = layer.hidden();
  const Matrix& up = *layer.up;
  const Matrix& down = *layer.down_t;
  // 1. Each token's active neurons, ascending.
  tok_off_.assign(static_cast<size_t>(T) + 1, 0);
  tok_rows_.clear();
  const int64_t W = (F + 63) / 64;
  for (int t = 0; t < T; ++t) {
    const uint64_t* bits = tok_bits_.data() + static_cast<size_t>(t) * W;
    for (int64_t w = 0; w < W; ++w)
      for (uint64_t b = bits[w]; b != 0; b &= b - 1)
        tok_rows_.push_back(static_cast<int32_t>(w * 64 + __builtin_ctzll(b)));
    tok_off_[t + 1] = static_cast<int64_t>(tok_rows_.size());
  }
  tok_up_.resize(std::max<size_t>(tok_rows_.size(), 1));
  tok_h_.resize(tok_up_.size());
  auto range_of = [&](int t, int64_t lo, int64_t hi) {
    const int32_t* b = tok_rows_.data() + tok_off_[t];
    const int32_t* e = tok_rows_.data() + tok_off_[t + 1];
    return std::pair<int64_t, int64_t>(
        std::lower_bound(b, e, static_cast<int32_t>(lo)) - b,
        std::lower_bound(b, e, static_cast<int32_t>(std::min<int64_t>(hi, F))) - b);
  };
  // 2. Up: tasks are ranges of neuron ids small enough to stay in cache while every token reads
  // its rows among them.
  // Quantized weights: xq_ holds each token's codes (quantized by Ffn), the ones the union
  // products use (a token's quantization depends on it alone).
  const bool quantized = IsBlockQuantized(up.dtype);
  const int64_t per_range =
      std::max<int64_t>(16, kUpRangeBytes / static_cast<int64_t>(up.row_bytes()));
  const int ranges = static_cast<int>((F + per_range - 1) / per_range);
  pool_.ParallelFor(ranges, [&](int task) {
    const int64_t lo = task * per_range, hi = lo + per_range;
    for (int t = 0; t < T; ++t) {
      const auto [j0, j1] = range_of(t, lo, hi);
      if (j0 == j1) continue;
      const int64_t off = tok_off_[t];
      if (quantized) {
        kernels_.dot_rows_q(xq_.data() + t * d, xd_.data() + t * (d / kQuantBlock), 1, up.data,
                            up.dtype, d, tok_rows_.data() + off, j0, j1, tok_up_.data() + off, 0,
                            nullptr, 0);
      } else {
        kernels_.dot_rows(x + t * d, d, 1, up.data, up.dtype, d, tok_rows_.data() + off, j0, j1,
                          tok_up_.data() + off, 0, nullptr, 0);
      }
    }
  });
  for (int t = 0; t < T; ++t) {
    const float* a = act_.data() + static_cast<size_t>(t) * F;
    for (int64_t j = tok_off_[t]; j < tok_off_[t + 1]; ++j)
      tok_h_[j] = a[tok_rows_[j]] * tok_up_[j];
  }
  const auto up_done = std::chrono::steady_clock::now();
  phase_ns_.up += std::chrono::duration_cast<std::chrono::nanoseconds>(up_done - start).count();
  // 3. Down: per neuron range, each token's own rows into its partial.
  std::fill(y, y + static_cast<size_t>(T) * d, 0.f);
  DownByRanges(T, d, y, /*direct=*/true, [&](int c, int64_t c0, int64_t c1, float* p) {
    for (int t = 0; t < T; ++t) {
      const auto [j0, j1] = range_of(t, DownChunkStart(F, c), DownChunkStart(F, c + 1));
      if (j0 == j1) continue;
      const int64_t off = tok_off_[t] + j0;
      kernels_.axpy_rows(tok_h_.data() + off, 0, 1, j1 - j0, tok_rows_.data() + off, down.data,
                         down.dtype, d, c0, c1, p + t * d, d, /*skip_zero_rows=*/true);
    }
  });
  phase_ns_.down += std::chrono::duration_cast<std::chrono::nanoseconds>(
                        std::chrono::steady_clock::now() - up_done)
                        .count();
}

}  // namespace sparsed
