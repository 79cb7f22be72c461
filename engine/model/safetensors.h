// Parser for the safetensors format: an 8-byte little-endian header length, a JSON header
// {"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}, then data.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/common/dtype.h"
#include "engine/model/mapped_file.h"

namespace sparsed {

struct TensorView {
  const void* data = nullptr;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
};

struct SafetensorsEntry {
  std::string dtype_name;  // as written in the header
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // offsets relative to the start of the data section
  uint64_t end = 0;
};

// Parses and validates the header of a safetensors file held in `bytes`. `file_name` is used in
// error messages. Checks: header length within the file, valid JSON object, every entry's dtype
// string, shape (non-negative), data_offsets inside the data section, size == numel * element
// size for supported dtypes, element alignment. Never reads outside `bytes`.
absl::StatusOr<std::map<std::string, SafetensorsEntry>> ParseSafetensorsHeader(
    absl::string_view bytes, absl::string_view file_name);

// A memory-mapped safetensors file. Thread-safety: immutable after Open().
class SafetensorsFile {
 public:
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);

  const std::map<std::string, SafetensorsEntry>& entries() const { return entries_; }
  bool Has(const std::string& name) const { return entries_.count(name) != 0; }
  // The tensor's view into the mapping; error names the file and tensor when the tensor is
  // missing or its dtype is not one the engine loads.
  absl::StatusOr<TensorView> Get(const std::string& name) const;
  const std::string& path() const { return file_.path(); }

 private:
  MappedFile file_;
  std::map<std::string, SafetensorsEntry> entries_;
  size_t data_start_ = 0;
};

}  // namespace sparsed
