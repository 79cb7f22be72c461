#include "engine/backend/mask.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

namespace sparsed {

namespace {

// e^x for SiLU, in operations a compiler vectorises (no library call): x = n·ln2 + r with n
// rounded to nearest and |r| <= ln2/2 (ln2 split in two for an exact n·ln2_hi), e^r by the
// Cephes polynomial (SiLU within 4 ulp of double precision: tests/cett_test.cc), 2^n built in the
// exponent bits as 2^(n-1)·2 so that n = 128 stays representable. Saturates like the library: +inf
// above 88.72283 (SiLU gives -0 there); below -86.5, e^x < 2^-124 and 1 + e^x rounds to 1 either
// way, so x is clamped there; NaN gives NaN. One loop computes it for scalar and vector lanes
// alike, so a value's bits never depend on which lane it took.
__attribute__((always_inline)) inline float ExpForSilu(float x) {
  constexpr float kMax = 88.72283f, kMin = -86.5f;
  const bool nan = !(x == x);
  float c = nan ? 0.f : x;
  c = c > kMax ? kMax : c;
  c = c < kMin ? kMin : c;
  constexpr float kRound = 12582912.f;  // 1.5·2^23: adding it rounds to an integer
  const float n = (c * 1.44269504088896341f + kRound) - kRound;
  float r = c - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float er = p * r * r + r + 1.f;
  const uint32_t bits = static_cast<uint32_t>(static_cast<int32_t>(n) + 126) << 23;  // 2^(n-1)
  float half_scale;
  std::memcpy(&half_scale, &bits, sizeof half_scale);
  const float e = er * half_scale * 2.f;
  return nan ? x : (x > kMax ? std::numeric_limits<float>::infinity() : e);
}

__attribute__((always_inline)) inline float SiluOf(float g) { return g / (1.f + ExpForSilu(-g)); }

// SiLU over n values in place; returns the non-zero outputs. The loop is compiled once per vector
// width and the widest the CPU runs is chosen at the first call: ~3.9× faster in AVX-512 lanes
// than the library's expf (kernel_bench). Chosen by a plain function pointer rather than an
// ifunc, which runs before ThreadSanitizer's runtime is up.
__attribute__((always_inline)) inline int64_t SiluLoop(float* a, int64_t n) {
  int64_t nz = 0;
  for (int64_t i = 0; i < n; ++i) {
    a[i] = SiluOf(a[i]);
    nz += a[i] != 0.f;
  }
  return nz;
}

int64_t SiluBaseline(float* a, int64_t n) { return SiluLoop(a, n); }

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx2"))) int64_t SiluAvx2(float* a, int64_t n) { return SiluLoop(a, n); }
__attribute__((target("avx512f"))) int64_t SiluAvx512(float* a, int64_t n) {
  return SiluLoop(a, n);
}
#endif

int64_t SiluInPlace(float* a, int64_t n) {
  using Fn = int64_t (*)(float*, int64_t);
  static const Fn fn = [] {
#if defined(__x86_64__) && defined(__GNUC__)
    if (__builtin_cpu_supports("avx512f")) return static_cast<Fn>(&SiluAvx512);
    if (__builtin_cpu_supports("avx2")) return static_cast<Fn>(&SiluAvx2);
#endif
    return static_cast<Fn>(&SiluBaseline);
  }();
  return fn(a, n);
}

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
      return f([](float g) { return SiluOf(g); });
  }
  return f([](float g) { return g; });
}

}  // namespace

float Activate(float g, Activation act, float threshold) {
  return WithActivation(act, threshold, [g](auto act_of) { return act_of(g); });
}

int64_t ActivateInPlace(float* a, int64_t n, Activation act, float threshold) {
  if (act == Activation::kSilu) return SiluInPlace(a, n);
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
  // On the bits: a compiler turns a float select into a branch, and threshold masks (a quarter
  // of the values pass, at random) mispredict it often.
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
