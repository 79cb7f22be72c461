// Parser for GGUF files (versions 2 and 3), the single-file model format of the GGML family:
//   magic "GGUF", uint32 version, uint64 tensor count, uint64 metadata count;
//   metadata: (string key, uint32 value type, value) — strings are uint64 length + bytes,
//             arrays are uint32 element type + uint64 count + elements;
//   tensor infos: (string name, uint32 n_dims, uint64 ne[n_dims], uint32 type, uint64 offset);
//   padding to general.alignment (default 32); then the data section, each tensor at its offset.
// ne[0] varies fastest: a 2-D weight of a PyTorch [out, in] tensor has ne = [in, out], stored as
// `out` rows of `in` elements — for Q8_0 and Q4_0 rows of blocks in the layout of dtype.h.
// All integers little-endian. Everything is validated before it is used; the parser never
// reads outside the bytes it is given.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/common/dtype.h"
#include "engine/model/mapped_file.h"
#include "engine/model/safetensors.h"

namespace sparsed {

// A metadata value. Scalars of every integer type are held in `i` (unsigned values above
// INT64_MAX are refused), floats in `f`, booleans in `i` (0/1), strings in `s`. Arrays keep their
// element type and count; arrays of strings keep the strings, numeric arrays are skipped (the
// loader needs none).
struct GgufValue {
  enum class Kind { kInt, kFloat, kBool, kString, kArray };
  Kind kind = Kind::kInt;
  int64_t i = 0;
  double f = 0;
  std::string s;
  uint32_t array_type = 0;
  uint64_t array_count = 0;
  std::vector<std::string> strings;
};

struct GgufTensorInfo {
  std::vector<int64_t> ne;  // ggml order: ne[0] fastest
  uint32_t type = 0;        // ggml type id
  uint64_t offset = 0;      // from the start of the data section
  uint64_t bytes = 0;
  std::optional<DType> dtype;  // set for the types the engine loads (F32, F16, BF16, Q8_0, Q4_0)
};

struct GgufHeader {
  uint32_t version = 0;
  uint64_t alignment = 32;
  uint64_t data_start = 0;  // file offset of the data section
  std::map<std::string, GgufValue> metadata;
  std::map<std::string, GgufTensorInfo> tensors;
};

// The ggml name of a type id ("Q4_K", "F16", …), or "type N" for an id ggml does not define.
std::string GgufTypeName(uint32_t type);

// Parses and validates `bytes` (a whole file; `file_name` in every error): the magic and
// version; counts, string and array lengths within the file; keys unique; n_dims 1…4 and every
// ne ≥ 1 with the element count below 2^48; a type id ggml defines (unknown ids are refused,
// naming the tensor); ne[0] a multiple of the type's block; general.alignment a power of two ≥ 8;
// every offset aligned and every tensor inside the data section, none overlapping.
absl::StatusOr<GgufHeader> ParseGguf(absl::string_view bytes, absl::string_view file_name);

// A memory-mapped GGUF file. Thread-safety: immutable after Open().
class GgufFile {
 public:
  static absl::StatusOr<std::unique_ptr<GgufFile>> Open(const std::string& path);
  const GgufHeader& header() const { return header_; }
  const std::string& path() const { return file_.path(); }
  // The bytes before the data section (magic, metadata, tensor infos).
  absl::string_view header_bytes() const { return file_.bytes().substr(0, header_.data_start); }
  // A tensor as a row-major view: shape reversed from ne ([out, in] for a 2-D weight). Errors
  // name the file and the tensor: missing, or a type the engine does not load (with what to do).
  absl::StatusOr<TensorView> Get(const std::string& name) const;

 private:
  MappedFile file_;
  GgufHeader header_;
};

}  // namespace sparsed
