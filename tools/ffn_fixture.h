// A synthetic bf16 FFN layer whose neurons fire at chosen rates, for benchmarks and GPU tests.
// Header-only, standard library only.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "tools/neuron_rates.h"

namespace sparsed {

inline uint16_t FixtureToBf16(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  b += 0x7fffu + ((b >> 16) & 1u);
  return static_cast<uint16_t>(b >> 16);
}
inline float FixtureFromBf16(uint16_t h) {
  const uint32_t b = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}

// N(0, std²) bf16 values, generated on all cores (deterministic per seed and core count).
inline std::vector<uint16_t> RandomBf16(size_t n, float std, uint64_t seed) {
  std::vector<uint16_t> v(n);
  const unsigned threads = std::max(1u, std::thread::hardware_concurrency());
  std::vector<std::thread> pool;
  for (unsigned w = 0; w < threads; ++w) {
    pool.emplace_back([&, w] {
      std::mt19937_64 rng(seed * 1000003 + w);
      std::normal_distribution<float> nd(0.f, std);
      for (size_t i = w; i < n; i += threads) v[i] = FixtureToBf16(nd(rng));
    });
  }
  for (auto& t : pool) t.join();
  return v;
}

// T input rows of width d for the fixtures' gates: x[0] = 1 (the bias channel), x[1:] ~ N(0, 1).
inline std::vector<float> BiasChannelInputs(int T, int64_t d, std::mt19937_64& rng) {
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> x(T * d);
  for (int t = 0; t < T; ++t) {
    x[t * d] = 1.f;
    for (int64_t c = 1; c < d; ++c) x[t * d + c] = nd(rng);
  }
  return x;
}

// Gate and up [F × d], down transposed [F × d], all bf16. Inputs() draws x with x[0] = 1, which
// the gate's column 0 turns into a per-neuron bias set by SetRates().
struct SyntheticFfn {
  int64_t F = 0, d = 0;
  std::vector<uint16_t> gate, up, down_t;
  std::vector<double> gate_norm;  // ‖gate_i[1:]‖ as stored

  SyntheticFfn(int64_t F_, int64_t d_, uint64_t seed) : F(F_), d(d_) {
    const float std = 1.f / std::sqrt(static_cast<float>(d));
    gate = RandomBf16(F * d, std, seed);
    up = RandomBf16(F * d, std, seed + 1);
    down_t = RandomBf16(F * d, std, seed + 2);
    gate_norm.resize(F);
    for (int64_t i = 0; i < F; ++i) {
      double n2 = 0;
      for (int64_t c = 1; c < d; ++c)
        n2 += double(FixtureFromBf16(gate[i * d + c])) * FixtureFromBf16(gate[i * d + c]);
      gate_norm[i] = std::sqrt(n2);
    }
  }
  // Neuron i fires with probability rates[i] on Inputs().
  void SetRates(const std::vector<double>& rates) {
    for (int64_t i = 0; i < F; ++i) {
      gate[i * d] =
          FixtureToBf16(static_cast<float>(-NormalQuantile(1.0 - rates[i]) * gate_norm[i]));
    }
  }
  std::vector<float> Inputs(int T, std::mt19937_64& rng) const {
    return BiasChannelInputs(T, d, rng);
  }
};

}  // namespace sparsed
