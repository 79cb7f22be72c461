#include "engine/sparse/ffn_types.h"

#include "absl/strings/str_cat.h"

namespace sparsed {

absl::string_view SparsityModeName(SparsityMode m) {
  return m == SparsityMode::kOff ? "off" : "exact";
}

absl::StatusOr<SparsityMode> ParseSparsityMode(absl::string_view s) {
  if (s == "off" || s == "dense") return SparsityMode::kOff;
  if (s == "exact") return SparsityMode::kExact;
  return absl::InvalidArgumentError(
      absl::StrCat("sparsity mode '", s, "' is not one of: off, exact"));
}

}  // namespace sparsed
