// The union sparse FFN on the CPU backend (README, "How the sparse FFN works (CPU)").
#include <algorithm>
#include <chrono>

#include "engine/backend/cpu/cpu_backend.h"
#include "engine/backend/mask.h"

namespace sparsed {
namespace {

// Share of non-zero activations below which the up products test them for zero first.
constexpr double kZeroTestBelow = 0.9;

}  // namespace

void CpuBackend::Ffn(const FfnLayer& layer, const float* x, int T, SparsityMode mode, float* y,
                     FfnStats* stats) {
  using Clock = std::chrono::steady_clock;
  auto lap = [t = Clock::now()](int64_t* acc) mutable {
    const auto now = Clock::now();
    *acc += std::chrono::duration_cast<std::chrono::nanoseconds>(now - t).count();
    t = now;
  };
  const int64_t F = layer.neurons(), d = layer.hidden();
  const bool gated = layer.gate != nullptr;
  act_.resize(static_cast<size_t>(T) * F);
  // 1. Dense gate (or the up projection itself when not gated), then the activation. With a
  // block-quantized up projection x is quantized once, here, for gate, up and the per-token path.
  const bool up_quantized = IsBlockQuantized(layer.up->dtype);
  if (up_quantized) QuantizeActivations(x, T, d);
  DotRowsOn(x, T, gated ? *layer.gate : *layer.up, nullptr, F, act_.data(), F, nullptr, 0,
            /*quantize=*/!up_quantized);
  lap(&phase_ns_.gate);
  NeuronUnion uni(F);
  int64_t active_sum = ActivateAndMask(layer, T, mode == SparsityMode::kExact, &uni);
  // 2. Union of the batch's masks; the cost model falls back to every row when it is too dense.
  const int64_t union_size = mode == SparsityMode::kExact ? uni.Count() : F;
  auto record = [&](int64_t union_rows, int64_t rows_skipped, bool dense) {
    if (stats == nullptr) return;
    stats->tokens += T;
    stats->neurons = F;
    stats->active_sum += active_sum;
    stats->union_size = union_rows;
    stats->rows_skipped = rows_skipped;
    stats->dense = dense;
  };
  // Per-token products when the tokens' own masks are much narrower than their union (the same
  // bits either way, cpu_ffn_tokens.cc).
  if (mode == SparsityMode::kExact && gated && T > 1 &&
      static_cast<double>(active_sum) <
          per_token_break_even_ * static_cast<double>(union_size) * T) {
    lap(&phase_ns_.mask);
    FfnPerToken(layer, x, T, y);  // adds its own up and down times
    ++per_token_steps_;
    record(union_size, F - union_size, /*dense=*/false);
    return;
  }
  // Threshold mode computes every row: its mask is known only after the up products.
  const bool dense = mode != SparsityMode::kExact || union_size > dense_break_even_ * F;
  const int32_t* rows = nullptr;
  int64_t n = F;
  if (!dense) {
    uni.Compact(&union_rows_);
    rows = union_rows_.data();
    n = static_cast<int64_t>(union_rows_.size());
  }
  lap(&phase_ns_.mask);
  // 3. H[t, k] = act[t, rows[k]] · up[t, rows[k]]: zero wherever token t's own mask is off.
  h_.resize(static_cast<size_t>(T) * std::max<int64_t>(n, 1));
  if (gated) {
    up_.resize(h_.size());
    // A token's up products are needed only where its own activation is non-zero (h = a · u
    // below): tiles whose activations are all zero are skipped (the skipped products would be
    // multiplied by zero: same results). The test pays only where many activations are exact
    // zeros (the ReLU family; SiLU's almost never are). `off` computes every product, as a dense
    // FFN does.
    const bool zeros = static_cast<double>(active_sum) < kZeroTestBelow * T * F;
    DotRowsOn(x, T, *layer.up, rows, n, up_.data(), n,
              mode == SparsityMode::kOff || !zeros ? nullptr : act_.data(), F, /*quantize=*/false);
  }
  // Threshold mode: a neuron is active for a token when |x1| reaches its threshold; the rest
  // are zeroed in the same pass, so the down projection below skips rows inactive for the whole
  // batch (n == F there: every row was computed).
  const bool threshold = mode == SparsityMode::kThreshold && layer.neuron_thresholds != nullptr;
  const int64_t survivors = Coefficients(layer, T, rows, n, threshold);
  int64_t down_rows = n;
  if (threshold) {
    active_sum = survivors;
    down_rows = down_union_.Count();
  }
  lap(&phase_ns_.up);
  // 4. Down: rows of W_downᵀ summed in neuron order.
  std::fill(y, y + static_cast<size_t>(T) * d, 0.f);
  // Skipping zero coefficients pays while the rows they leave are sparse enough: threshold masks
  // of a batch past a few tokens cover nearly every row (the same sums either way).
  const bool skip_zero_rows =
      mode == SparsityMode::kExact ||
      (threshold && static_cast<double>(down_rows) <= dense_break_even_ * F);
  AxpyRows(h_.data(), n, T, n, rows, *layer.down_t, y, skip_zero_rows);
  lap(&phase_ns_.down);
  // Threshold mode reads every up row: only down rows are skipped (counted as half a neuron).
  if (mode == SparsityMode::kThreshold) {
    record(down_rows, (F - down_rows) / 2, dense);
  } else {
    record(union_size, F - n, dense);
  }
}

}  // namespace sparsed
