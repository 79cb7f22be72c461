// libFuzzer target: the sparsity.json parser on arbitrary text. A profile that parses must hold
// what the engine relies on (one finite, non-negative ε per layer), and must survive a write and
// re-parse unchanged.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "engine/sparse/sparsity_profile.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto p = sparsed::ParseSparsityProfile(text, "fuzz/sparsity.json");
  if (!p.ok()) return 0;
  if (p->num_layers <= 0 || static_cast<int>(p->layers.size()) != p->num_layers) std::abort();
  for (const auto& l : p->layers) {
    if (!(l.epsilon >= 0) || std::isinf(l.epsilon) || !(l.active_ratio >= 0) ||
        l.active_ratio > 1) {
      std::abort();
    }
  }
  const std::string again = sparsed::SparsityProfileToJson(*p);
  auto q = sparsed::ParseSparsityProfile(again, "fuzz/again.json");
  if (!q.ok() || sparsed::SparsityProfileToJson(*q) != again) std::abort();
  return 0;
}
