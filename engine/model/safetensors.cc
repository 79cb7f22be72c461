#include "engine/model/safetensors.h"

#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "engine/common/status_macros.h"
#include "nlohmann/json.hpp"

namespace sparsed {
namespace {

constexpr uint64_t kMaxHeaderBytes = 100ull << 20;  // same bound as the reference implementation

size_t RawDTypeSize(absl::string_view name) {
  if (name == "F64" || name == "I64" || name == "U64") return 8;
  if (name == "F32" || name == "I32" || name == "U32") return 4;
  if (name == "F16" || name == "BF16" || name == "I16" || name == "U16") return 2;
  if (name == "I8" || name == "U8" || name == "BOOL" || name == "F8_E4M3" || name == "F8_E5M2")
    return 1;
  return 0;
}

}  // namespace

absl::StatusOr<std::map<std::string, SafetensorsEntry>> ParseSafetensorsHeader(
    absl::string_view bytes, absl::string_view file_name) {
  auto err = [&](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat(file_name, ": ", what));
  };
  if (bytes.size() < 8) return err("truncated: shorter than the 8-byte header length");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | static_cast<uint8_t>(bytes[i]);
  if (header_len > kMaxHeaderBytes)
    return err(absl::StrCat("header length ", header_len, " is too large"));
  if (header_len > bytes.size() - 8) {
    return err(absl::StrCat("truncated: header length ", header_len, " exceeds the file size ",
                            bytes.size()));
  }
  const absl::string_view header = bytes.substr(8, header_len);
  const uint64_t data_size = bytes.size() - 8 - header_len;

  nlohmann::json j = nlohmann::json::parse(header, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return err("header is not valid JSON");
  if (!j.is_object()) return err("header is not a JSON object");

  std::map<std::string, SafetensorsEntry> out;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& name = it.key();
    if (name == "__metadata__") continue;
    const nlohmann::json& v = it.value();
    auto terr = [&](absl::string_view what) {
      return err(absl::StrCat("tensor '", name, "': ", what));
    };
    if (!v.is_object()) return terr("entry is not an object");
    SafetensorsEntry e;
    auto dt = v.find("dtype");
    if (dt == v.end() || !dt->is_string()) return terr("missing or non-string 'dtype'");
    e.dtype_name = dt->get<std::string>();
    const size_t esize = RawDTypeSize(e.dtype_name);
    if (esize == 0) return terr(absl::StrCat("unknown dtype '", e.dtype_name, "'"));
    auto sh = v.find("shape");
    if (sh == v.end() || !sh->is_array()) return terr("missing or non-array 'shape'");
    uint64_t numel = 1;
    for (const auto& d : *sh) {
      if (!d.is_number_integer() || d.get<int64_t>() < 0)
        return terr("shape has a non-integer or negative dimension");
      const uint64_t dim = d.get<uint64_t>();
      if (dim != 0 && numel > std::numeric_limits<uint64_t>::max() / 16 / dim)
        return terr("shape overflows");
      numel *= dim;
      e.shape.push_back(static_cast<int64_t>(dim));
    }
    auto off = v.find("data_offsets");
    if (off == v.end() || !off->is_array() || off->size() != 2 || !(*off)[0].is_number_unsigned() ||
        !(*off)[1].is_number_unsigned()) {
      return terr("'data_offsets' must be two non-negative integers");
    }
    e.begin = (*off)[0].get<uint64_t>();
    e.end = (*off)[1].get<uint64_t>();
    if (e.begin > e.end) return terr("data_offsets begin > end");
    if (e.end > data_size) {
      return terr(absl::StrCat("data_offsets [", e.begin, ", ", e.end,
                               "] lie outside the data section of ", data_size,
                               " bytes (file truncated?)"));
    }
    if (e.end - e.begin != numel * esize) {
      return terr(absl::StrCat("data size ", e.end - e.begin,
                               " bytes does not match shape and dtype (", numel * esize,
                               " bytes)"));
    }
    if ((8 + header_len + e.begin) % esize != 0)
      return terr("data is not aligned to its element size");
    out.emplace(name, std::move(e));
  }
  return out;
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  auto f = std::unique_ptr<SafetensorsFile>(new SafetensorsFile());
  ASSIGN_OR_RETURN(f->file_, MappedFile::Open(path));
  ASSIGN_OR_RETURN(f->entries_, ParseSafetensorsHeader(f->file_.bytes(), path));
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i)
    header_len = (header_len << 8) | static_cast<uint8_t>(f->file_.bytes()[i]);
  f->data_start_ = 8 + header_len;
  return f;
}

absl::StatusOr<TensorView> SafetensorsFile::Get(const std::string& name) const {
  auto it = entries_.find(name);
  if (it == entries_.end()) {
    return absl::NotFoundError(absl::StrCat(path(), ": missing tensor '", name, "'"));
  }
  auto dt = ParseSafetensorsDType(it->second.dtype_name);
  if (!dt) {
    return absl::InvalidArgumentError(absl::StrCat(path(), ": tensor '", name, "' has dtype ",
                                                   it->second.dtype_name,
                                                   "; supported: F32, BF16, F16"));
  }
  TensorView v;
  v.data = file_.bytes().data() + data_start_ + it->second.begin;
  v.dtype = *dt;
  v.shape = it->second.shape;
  return v;
}

}  // namespace sparsed
