// Test helper: GGUF bytes built field by field (engine/model/gguf.h describes the layout), so
// tests can write valid files and break them on purpose. Little-endian hosts.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace sparsed::testing {

class GgufBytes {
 public:
  template <class T>
  GgufBytes& Raw(T v) {
    char b[sizeof(T)];
    std::memcpy(b, &v, sizeof(T));
    s_.append(b, sizeof(T));
    return *this;
  }
  GgufBytes& Str(const std::string& v) {
    Raw<uint64_t>(v.size());
    s_ += v;
    return *this;
  }
  const std::string& bytes() const { return s_; }
  std::string& bytes() { return s_; }

 private:
  std::string s_;
};

// One metadata entry, its value already encoded (type id + value).
struct GgufKv {
  std::string key;
  std::string value;  // uint32 type, then the value
};

inline GgufKv KvU32(const std::string& k, uint32_t v) {
  GgufBytes b;
  b.Raw<uint32_t>(4).Raw(v);
  return {k, b.bytes()};
}
inline GgufKv KvF32(const std::string& k, float v) {
  GgufBytes b;
  b.Raw<uint32_t>(6).Raw(v);
  return {k, b.bytes()};
}
inline GgufKv KvStr(const std::string& k, const std::string& v) {
  GgufBytes b;
  b.Raw<uint32_t>(8).Str(v);
  return {k, b.bytes()};
}
inline GgufKv KvStrArray(const std::string& k, const std::vector<std::string>& v) {
  GgufBytes b;
  b.Raw<uint32_t>(9).Raw<uint32_t>(8).Raw<uint64_t>(v.size());
  for (const std::string& s : v) b.Str(s);
  return {k, b.bytes()};
}
inline GgufKv KvF32Array(const std::string& k, const std::vector<float>& v) {
  GgufBytes b;
  b.Raw<uint32_t>(9).Raw<uint32_t>(6).Raw<uint64_t>(v.size());
  for (float f : v) b.Raw(f);
  return {k, b.bytes()};
}

struct GgufTensorSpec {
  std::string name;
  std::vector<int64_t> ne;  // ggml order (ne[0] fastest)
  uint32_t type = 0;        // ggml type id: 0 F32, 1 F16, 2 Q4_0, 8 Q8_0, 30 BF16
  std::string data;         // its bytes
};

// A whole file: header, metadata, tensor infos, padding, data (each tensor aligned).
inline std::string BuildGguf(const std::vector<GgufKv>& kvs,
                             const std::vector<GgufTensorSpec>& tensors, uint64_t alignment = 32,
                             uint32_t version = 3) {
  GgufBytes b;
  b.Raw<uint32_t>(0x46554747).Raw(version).Raw<uint64_t>(tensors.size()).Raw<uint64_t>(kvs.size());
  for (const GgufKv& kv : kvs) {
    b.Str(kv.key);
    b.bytes() += kv.value;
  }
  uint64_t offset = 0;
  std::vector<uint64_t> offsets;
  for (const GgufTensorSpec& t : tensors) {
    b.Str(t.name).Raw<uint32_t>(static_cast<uint32_t>(t.ne.size()));
    for (int64_t n : t.ne) b.Raw<uint64_t>(static_cast<uint64_t>(n));
    b.Raw(t.type).Raw(offset);
    offsets.push_back(offset);
    offset = (offset + t.data.size() + alignment - 1) / alignment * alignment;
  }
  std::string& s = b.bytes();
  s.resize((s.size() + alignment - 1) / alignment * alignment, '\0');
  const size_t data_start = s.size();
  for (size_t i = 0; i < tensors.size(); ++i) {
    s.resize(data_start + offsets[i], '\0');
    s += tensors[i].data;
  }
  return s;
}

}  // namespace sparsed::testing
