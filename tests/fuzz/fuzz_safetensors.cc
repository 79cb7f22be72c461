// libFuzzer target: the safetensors header parser on arbitrary bytes. Any input must either
// parse into entries that lie inside the buffer or fail with a status — never crash or read out
// of bounds (run under ASan/UBSan).
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "absl/strings/string_view.h"
#include "engine/model/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto r = sparsed::ParseSafetensorsHeader(bytes, "fuzz.safetensors");
  if (r.ok()) {
    for (const auto& [name, e] : *r) {
      if (e.begin > e.end || e.end > size) std::abort();  // the parser promised bounds
    }
  }
  return 0;
}
