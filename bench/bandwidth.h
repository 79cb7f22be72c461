// Measures this machine's memory read bandwidth: every thread streams its share of a buffer much
// larger than the last-level cache. The roofline the benchmarks compare against.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

namespace sparsed::bench {

// GB/s read (1 GB = 1e9 bytes), best of `reps` passes over `bytes` with `threads` threads.
inline double MeasureReadBandwidthGBs(size_t bytes, int threads, int reps = 5) {
  std::vector<uint64_t> buf(bytes / 8);
  for (size_t i = 0; i < buf.size(); ++i) buf[i] = i * 0x9e3779b97f4a7c15ull;
  double best = 0;
  volatile uint64_t sink = 0;
  for (int r = 0; r < reps; ++r) {
    std::vector<uint64_t> partial(threads, 0);
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<std::thread> pool;
    for (int w = 0; w < threads; ++w) {
      pool.emplace_back([&, w] {
        const size_t n = buf.size() / threads, b = w * n;
        uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
        for (size_t i = b; i + 4 <= b + n; i += 4) {
          a0 ^= buf[i];
          a1 ^= buf[i + 1];
          a2 ^= buf[i + 2];
          a3 ^= buf[i + 3];
        }
        partial[w] = a0 ^ a1 ^ a2 ^ a3;
      });
    }
    for (auto& t : pool) t.join();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    for (uint64_t p : partial) sink = sink ^ p;
    best = std::max(best, static_cast<double>(bytes) / s / 1e9);
  }
  return best;
}

}  // namespace sparsed::bench
