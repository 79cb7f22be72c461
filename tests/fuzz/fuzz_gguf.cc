// libFuzzer target: the GGUF parser on arbitrary bytes. Any input must either parse into
// tensors that lie inside the buffer's data section or fail with a status — never crash or read
// out of bounds (run under ASan/UBSan).
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "absl/strings/string_view.h"
#include "engine/model/gguf.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto r = sparsed::ParseGguf(bytes, "fuzz.gguf");
  if (r.ok()) {
    for (const auto& [name, t] : r->tensors) {
      // The parser promised bounds.
      if (r->data_start + t.offset + t.bytes > size || t.offset % r->alignment != 0) std::abort();
    }
  }
  return 0;
}
