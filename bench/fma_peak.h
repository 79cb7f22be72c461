// Measures this machine's fp32 fused multiply-add peak: independent FMA chains that live in
// registers (no memory traffic), on the widest vectors the kernels use, per thread and on all
// threads. The compute roofline the benchmarks compare against.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

namespace sparsed::bench {

// FLOPs done by one call: 12 chains × lanes × 2 per FMA × iterations.
__attribute__((target("avx512f"))) inline float FmaLoop512(int64_t iters) {
  __m512 a[12];
  for (int i = 0; i < 12; ++i) a[i] = _mm512_set1_ps(1.f + 1e-3f * i);
  const __m512 m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
  for (int64_t k = 0; k < iters; ++k) {
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) a[i] = _mm512_fmadd_ps(a[i], m, c);
  }
  __m512 s = a[0];
  for (int i = 1; i < 12; ++i) s = _mm512_add_ps(s, a[i]);
  float f[16];
  _mm512_storeu_ps(f, s);
  return f[0] + f[15];
}

__attribute__((target("avx2,fma"))) inline float FmaLoop256(int64_t iters) {
  __m256 a[12];
  for (int i = 0; i < 12; ++i) a[i] = _mm256_set1_ps(1.f + 1e-3f * i);
  const __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
  for (int64_t k = 0; k < iters; ++k) {
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) a[i] = _mm256_fmadd_ps(a[i], m, c);
  }
  __m256 s = a[0];
  for (int i = 1; i < 12; ++i) s = _mm256_add_ps(s, a[i]);
  float f[8];
  _mm256_storeu_ps(f, s);
  return f[0] + f[7];
}

// GFLOP/s (1e9 FLOP/s, an FMA counting 2), best of `reps`, with `threads` threads each running
// the loop; `isa` is "avx512" or "avx2" (anything else measures avx2).
inline double MeasureFmaPeakGflops(const std::string& isa, int threads, int reps = 5) {
  const bool wide = isa == "avx512";
  const int64_t iters = 20'000'000;
  const double flops = 12.0 * (wide ? 16 : 8) * 2 * static_cast<double>(iters) * threads;
  double best = 0;
  volatile float sink = 0;
  for (int r = 0; r < reps; ++r) {
    std::vector<float> out(threads);
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<std::thread> pool;
    for (int w = 0; w < threads; ++w)
      pool.emplace_back([&, w] { out[w] = wide ? FmaLoop512(iters) : FmaLoop256(iters); });
    for (auto& t : pool) t.join();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    for (float f : out) sink = sink + f;
    best = std::max(best, flops / s / 1e9);
  }
  return best;
}

}  // namespace sparsed::bench
