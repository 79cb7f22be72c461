#include "engine/backend/mask.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace sparsed {

namespace {

// Calls f(g ↦ act(g)) with the activation chosen once, so that a loop inside f runs one
// activation's arithmetic (and the ReLU family's vectorises).
template <class F>
auto WithActivation(Activation act, float threshold, F&& f) {
  switch (act) {
    case Activation::kRelu:
      return f([](float g) { return g > 0.f ? g : 0.f; });
    case Activation::kRelu2:
      return f([](float g) { return g > 0.f ? g * g : 0.f; });
    case Activation::kFatRelu:
      return f([threshold](float g) { return g >= threshold && g > 0.f ? g : 0.f; });
    case Activation::kGelu:
      return f([](float g) { return 0.5f * g * (1.f + std::erf(g * 0.70710678118654752f)); });
    case Activation::kGeluTanh:
      return f([](float g) {
        return 0.5f * g * (1.f + std::tanh(0.7978845608028654f * (g + 0.044715f * g * g * g)));
      });
    case Activation::kSilu:
      return f([](float g) { return g / (1.f + std::exp(-g)); });
  }
  return f([](float g) { return g; });
}

}  // namespace

float Activate(float g, Activation act, float threshold) {
  return WithActivation(act, threshold, [g](auto act_of) { return act_of(g); });
}

int64_t ActivateInPlace(float* a, int64_t n, Activation act, float threshold) {
  return WithActivation(act, threshold, [a, n](auto act_of) {
    int64_t nz = 0;
    for (int64_t i = 0; i < n; ++i) {
      a[i] = act_of(a[i]);
      nz += a[i] != 0.f;
    }
    return nz;
  });
}

uint64_t NonZeroBits(const float* a, int n) {
  uint64_t word = 0;
  for (int b = 0; b < n; ++b) word |= static_cast<uint64_t>(a[b] != 0.f) << b;
  return word;
}

uint64_t ThresholdBits(float* h, const float* threshold, int n) {
  // On the bits: a compiler turns a float select into a branch, which threshold masks (a quarter
  // of the values pass, at random) mispredict half the time.
  uint64_t word = 0;
  for (int b = 0; b < n; ++b) {
    uint32_t u;
    std::memcpy(&u, h + b, sizeof u);
    u &= 0u - static_cast<uint32_t>(!(std::fabs(h[b]) < threshold[b]));  // +0 below threshold
    std::memcpy(h + b, &u, sizeof u);
    word |= static_cast<uint64_t>((u << 1) != 0) << b;  // non-zero: any bit but the sign
  }
  return word;
}

void NeuronUnion::AddNonZero(const float* a) {
  for (int64_t w = 0; w < static_cast<int64_t>(bits_.size()); ++w) {
    const int64_t base = w * 64;
    bits_[w] |= NonZeroBits(a + base, static_cast<int>(std::min<int64_t>(64, neurons_ - base)));
  }
}

void NeuronUnion::Compact(std::vector<int32_t>* out) const {
  out->clear();
  for (size_t w = 0; w < bits_.size(); ++w) {
    for (uint64_t word = bits_[w]; word; word &= word - 1) {
      out->push_back(static_cast<int32_t>(w * 64 + __builtin_ctzll(word)));
    }
  }
}

int64_t NeuronUnion::Count() const {
  int64_t c = 0;
  for (uint64_t w : bits_) c += __builtin_popcountll(w);
  return c;
}

}  // namespace sparsed
