#include "engine/backend/ffn_types.h"

#include "absl/strings/str_cat.h"

namespace sparsed {

absl::string_view SparsityModeName(SparsityMode m) {
  switch (m) {
    case SparsityMode::kOff:
      return "off";
    case SparsityMode::kExact:
      return "exact";
    case SparsityMode::kThreshold:
      return "threshold";
  }
  return "?";
}

absl::StatusOr<SparsityMode> ParseSparsityMode(absl::string_view s) {
  if (s == "off" || s == "dense") return SparsityMode::kOff;
  if (s == "exact") return SparsityMode::kExact;
  if (s == "threshold") return SparsityMode::kThreshold;
  return absl::InvalidArgumentError(
      absl::StrCat("sparsity mode '", s, "' is not one of: off, exact, threshold"));
}

}  // namespace sparsed
