// A 64-bit mixing function (SplitMix64's step and finaliser): well-spread hashes and seeds from
// counters, signatures and other seeds.
#pragma once

#include <cstdint>

namespace sparsed {

constexpr uint64_t Mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

}  // namespace sparsed
