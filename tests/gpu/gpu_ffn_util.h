// Host-side helpers for the CUDA FFN test and benchmark: random bf16 layers whose neurons fire
// at chosen rates, inputs, and a double-precision reference FFN. Standard library only.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "engine/backend/cuda/cuda_ffn.h"
#include "tools/neuron_rates.h"

namespace sparsed::gpu {

inline uint16_t ToBf16(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  b += 0x7fffu + ((b >> 16) & 1u);
  return static_cast<uint16_t>(b >> 16);
}
inline float FromBf16(uint16_t h) {
  const uint32_t b = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}

// N(0, std²) bf16 values, generated on all cores (deterministic per seed).
inline std::vector<uint16_t> RandomBf16(size_t n, float std, uint64_t seed) {
  std::vector<uint16_t> v(n);
  const unsigned threads = std::max(1u, std::thread::hardware_concurrency());
  std::vector<std::thread> pool;
  for (unsigned w = 0; w < threads; ++w) {
    pool.emplace_back([&, w] {
      std::mt19937_64 rng(seed * 1000003 + w);
      std::normal_distribution<float> nd(0.f, std);
      for (size_t i = w; i < n; i += threads) v[i] = ToBf16(nd(rng));
    });
  }
  for (auto& t : pool) t.join();
  return v;
}

struct HostFfn {
  int64_t F = 0, d = 0;
  std::vector<uint16_t> gate, up, down_t;  // bf16 [F × d]
  std::vector<double> gate_norm;           // ‖gate_i[1:]‖ as stored

  HostFfn(int64_t F_, int64_t d_, uint64_t seed) : F(F_), d(d_) {
    const float std = 1.f / std::sqrt(static_cast<float>(d));
    gate = RandomBf16(F * d, std, seed);
    up = RandomBf16(F * d, std, seed + 1);
    down_t = RandomBf16(F * d, std, seed + 2);
    gate_norm.resize(F);
    for (int64_t i = 0; i < F; ++i) {
      double n2 = 0;
      for (int64_t c = 1; c < d; ++c) n2 += double(FromBf16(gate[i * d + c])) * FromBf16(gate[i * d + c]);
      gate_norm[i] = std::sqrt(n2);
    }
  }
  // Column 0 of the gate: bias for neuron rates (inputs have x[0] = 1).
  std::vector<uint16_t> BiasColumn(const std::vector<double>& rates) const {
    std::vector<uint16_t> col(F);
    for (int64_t i = 0; i < F; ++i) col[i] = ToBf16(static_cast<float>(-NormalQuantile(1.0 - rates[i]) * gate_norm[i]));
    return col;
  }
  void SetRates(const std::vector<double>& rates) {
    const auto col = BiasColumn(rates);
    for (int64_t i = 0; i < F; ++i) gate[i * d] = col[i];
  }
};

inline std::vector<float> Inputs(int T, int64_t d, std::mt19937_64& rng) {
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> x(T * d);
  for (int t = 0; t < T; ++t) {
    x[t * d] = 1.f;
    for (int64_t c = 1; c < d; ++c) x[t * d + c] = nd(rng);
  }
  return x;
}

inline float RefAct(float g, cuda::FfnActivation a, float thr) {
  switch (a) {
    case cuda::FfnActivation::kRelu:
      return g > 0 ? g : 0;
    case cuda::FfnActivation::kRelu2:
      return g > 0 ? g * g : 0;
    case cuda::FfnActivation::kFatRelu:
      return g >= thr && g > 0 ? g : 0;
    case cuda::FfnActivation::kSilu:
      return g / (1 + std::exp(-g));
  }
  return g;
}

// Dense FFN in double precision over the bf16 weights.
inline std::vector<float> RefFfn(const HostFfn& f, const std::vector<float>& x, int T, cuda::FfnActivation a, float thr) {
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
