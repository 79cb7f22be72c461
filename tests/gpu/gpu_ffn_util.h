// Host-side helpers for the CUDA FFN test and benchmark: random bf16 layers whose neurons fire
// at chosen rates, inputs, and a double-precision reference FFN.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/backend/cuda/cuda_ffn.h"
#include "tools/ffn_fixture.h"

namespace sparsed::gpu {

inline float FromBf16(uint16_t h) { return FixtureFromBf16(h); }

// Benchmarks: a CUDA helper's error ends the program with the message.
inline void Check(const absl::Status& status) {
  if (!status.ok()) {
    std::fprintf(stderr, "error: %s\n", status.ToString().c_str());
    std::exit(1);
  }
}
// The value, or the error ends the program as above.
template <typename T>
T Check(absl::StatusOr<T> value) {
  Check(value.status());
  return *std::move(value);
}
using HostFfn = SyntheticFfn;

inline float RefAct(float g, Activation a, float thr) {
  switch (a) {
    case Activation::kRelu:
      return g > 0 ? g : 0;
    case Activation::kRelu2:
      return g > 0 ? g * g : 0;
    case Activation::kFatRelu:
      return g >= thr && g > 0 ? g : 0;
    case Activation::kSilu:
      return g / (1 + std::exp(-g));
    case Activation::kGelu:
      return 0.5f * g * (1 + std::erf(g * 0.70710678118654752f));
    case Activation::kGeluTanh:
      return 0.5f * g * (1 + std::tanh(0.7978845608028654f * (g + 0.044715f * g * g * g)));
  }
  return g;
}

// Dense FFN in double precision over the bf16 weights.
inline std::vector<float> RefFfn(const HostFfn& f, const std::vector<float>& x, int T, Activation a,
                                 float thr) {
  std::vector<float> y(T * f.d);
  for (int t = 0; t < T; ++t) {
    std::vector<double> acc(f.d, 0.0);
    for (int64_t i = 0; i < f.F; ++i) {
      double g = 0, u = 0;
      for (int64_t c = 0; c < f.d; ++c) {
        g += double(FromBf16(f.gate[i * f.d + c])) * x[t * f.d + c];
        u += double(FromBf16(f.up[i * f.d + c])) * x[t * f.d + c];
      }
      const double h = RefAct(static_cast<float>(g), a, thr) * u;
      if (h == 0) continue;
      for (int64_t c = 0; c < f.d; ++c) acc[c] += h * FromBf16(f.down_t[i * f.d + c]);
    }
    for (int64_t c = 0; c < f.d; ++c) y[t * f.d + c] = static_cast<float>(acc[c]);
  }
  return y;
}

inline double RelMaxError(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 1e-6;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(a[i])) return INFINITY;
    num = std::max(num, std::fabs(double(a[i]) - b[i]));
    den = std::max(den, std::fabs(double(b[i])));
  }
  return num / den;
}

}  // namespace sparsed::gpu
