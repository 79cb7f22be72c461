// The FFN's activation and mask pass on the CPU backend, over the thread pool: each task owns a
// range of 64-neuron words and, for every token, applies the activation to those neurons of
// act_, records the token's non-zero bits (tok_bits_) and ORs them into the union. Tasks write
// disjoint words, so the result is the same whatever the thread count. Threshold mode's pass over
// the products (h_) is split the same way.
#include <algorithm>
#include <atomic>
#include <bit>
#include <vector>

#include "engine/backend/cpu/cpu_backend.h"

namespace sparsed {

int64_t CpuBackend::SumOverWords(int64_t W,
                                 const std::function<int64_t(int64_t w0, int64_t w1)>& fn) {
  // Enough tasks to balance two threads on a step of one token, few enough that each still
  // sweeps a few KiB of every token's row.
  const int tasks = static_cast<int>(
      std::clamp<int64_t>(W / 4, 1, 4 * static_cast<int64_t>(pool_.num_threads())));
  std::atomic<int64_t> sum{0};
  pool_.ParallelFor(tasks, [&](int task) {
    sum.fetch_add(fn(W * task / tasks, W * (task + 1) / tasks), std::memory_order_relaxed);
  });
  return sum.load(std::memory_order_relaxed);
}

int64_t CpuBackend::ActivateAndMask(const FfnLayer& layer, int T, bool masks, NeuronUnion* uni) {
  const int64_t F = layer.neurons();
  const int64_t W = (F + 63) / 64;
  if (masks) tok_bits_.assign(static_cast<size_t>(T) * W, 0);
  return SumOverWords(W, [&](int64_t w0, int64_t w1) {
    const int64_t n0 = w0 * 64, n1 = std::min(F, w1 * 64);
    int64_t nz = 0;
    for (int t = 0; t < T; ++t) {
      float* a = act_.data() + static_cast<size_t>(t) * F;
      nz += ActivateInPlace(a + n0, n1 - n0, layer.activation, layer.threshold);
      if (!masks) continue;
      uint64_t* bits = tok_bits_.data() + static_cast<size_t>(t) * W;
      for (int64_t w = w0; w < w1; ++w) {
        const int64_t b = w * 64;
        bits[w] = NonZeroBits(a + b, static_cast<int>(std::min<int64_t>(64, F - b)));
      }
    }
    if (masks) {
      for (int64_t w = w0; w < w1; ++w) {
        uint64_t u = 0;
        for (int t = 0; t < T; ++t) u |= tok_bits_[static_cast<size_t>(t) * W + w];
        uni->OrWord(w, u);
      }
    }
    return nz;
  });
}

int64_t CpuBackend::Coefficients(const FfnLayer& layer, int T, const int32_t* rows, int64_t n,
                                 bool threshold) {
  const int64_t F = layer.neurons();
  const bool gated = layer.gate != nullptr;
  const int64_t W = (n + 63) / 64;
  if (threshold && down_union_.words() != W) down_union_ = NeuronUnion(n);
  return SumOverWords(W, [&](int64_t w0, int64_t w1) {
    const int64_t k0 = w0 * 64, k1 = std::min(n, w1 * 64);
    std::vector<uint64_t> any(threshold ? static_cast<size_t>(w1 - w0) : 0, 0);
    int64_t nz = 0;
    // Token by token, so each pass reads one contiguous stretch of act_, up_ and h_.
    for (int t = 0; t < T; ++t) {
      const float* a = act_.data() + static_cast<size_t>(t) * F;
      float* h = h_.data() + static_cast<size_t>(t) * n;
      if (gated) {
        const float* u = up_.data() + static_cast<size_t>(t) * n;
        for (int64_t k = k0; k < k1; ++k) {
          const float ak = a[rows ? rows[k] : k];
          h[k] = ak == 0.f ? 0.f : ak * u[k];
        }
      } else {
        for (int64_t k = k0; k < k1; ++k) h[k] = a[rows ? rows[k] : k];
      }
      if (!threshold) continue;
      for (int64_t w = w0; w < w1; ++w) {
        const int64_t b = w * 64;
        const uint64_t bits = ThresholdBits(h + b, layer.neuron_thresholds + b,
                                            static_cast<int>(std::min<int64_t>(64, n - b)));
        nz += std::popcount(bits);
        any[w - w0] |= bits;
      }
    }
    for (int64_t w = w0; w < w1 && threshold; ++w) down_union_.SetWord(w, any[w - w0]);
    return nz;
  });
}

}  // namespace sparsed
