// Shared by the CUDA backend's tests (cuda_backend_test.cc, cuda_ops_test.cc).
#pragma once

#include <cstdint>
#include <random>
#include <vector>

namespace sparsed {

// n normal floats of standard deviation `scale`, the same for the same seed.
inline std::vector<float> RandomFloats(size_t n, uint64_t seed, float scale = 1.f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd(0.f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = nd(rng);
  return v;
}

}  // namespace sparsed
