#include "engine/model/fingerprint.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>

#include "engine/common/status_macros.h"
#include "engine/model/mapped_file.h"

namespace sparsed {
namespace {

class Fnv1a64 {
 public:
  void Add(const void* data, size_t n) {
    const auto* p = static_cast<const unsigned char*>(data);
    for (size_t i = 0; i < n; ++i) {
      h_ ^= p[i];
      h_ *= 0x100000001b3ull;
    }
  }
  void Add(const std::string& s) { Add(s.data(), s.size() + 1); }  // with the terminator
  uint64_t value() const { return h_; }

 private:
  uint64_t h_ = 0xcbf29ce484222325ull;
};

constexpr size_t kSampleBytes = 4096;

}  // namespace

absl::StatusOr<std::string> ModelFingerprint(const Checkpoint& checkpoint) {
  Fnv1a64 h;
  h.Add(checkpoint.config_text());
  for (const std::string& name : checkpoint.TensorNames()) {
    ASSIGN_OR_RETURN(TensorView t, checkpoint.Get(name));
    h.Add(name);
    const uint8_t dtype = static_cast<uint8_t>(t.dtype);
    h.Add(&dtype, 1);
    h.Add(t.shape.data(), t.shape.size() * sizeof(int64_t));
    const int64_t last = t.shape.empty() ? 1 : t.shape.back();
    const size_t bytes =
        static_cast<size_t>(t.numel() / std::max<int64_t>(last, 1)) * SpanBytes(t.dtype, last);
    const auto* data = static_cast<const unsigned char*>(t.data);
    const size_t head = std::min(bytes, kSampleBytes);
    h.Add(data, head);
    const size_t tail = std::min(bytes - head, kSampleBytes);
    h.Add(data + bytes - tail, tail);
  }
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h.value()));
  return std::string("fnv1a64:") + hex;
}

}  // namespace sparsed
