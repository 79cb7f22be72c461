// libFuzzer target: the config.json parser on arbitrary text. A config that parses must be
// internally consistent (the engine sizes buffers from it).
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "absl/strings/string_view.h"
#include "engine/model/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view text(reinterpret_cast<const char*>(data), size);
  auto c = sparsed::ParseModelConfig(text, "fuzz/config.json");
  if (c.ok()) {
    if (c->hidden_size <= 0 || c->num_heads <= 0 || c->num_kv_heads <= 0 || c->head_dim <= 0 ||
        c->num_heads % c->num_kv_heads != 0 || c->head_dim % 2 != 0 || c->vocab_size <= 0 ||
        c->intermediate_size <= 0 || c->num_layers <= 0) {
      std::abort();
    }
  }
  return 0;
}
