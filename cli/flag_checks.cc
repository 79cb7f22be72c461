#include "cli/flag_checks.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"

namespace sparsed {
namespace {

// The whole of `text` as a number (no sign-less junk, no trailing characters).
std::optional<long double> ToNumber(absl::string_view text) {
  const std::string s(absl::StripAsciiWhitespace(text));
  if (s.empty()) return std::nullopt;
  char* end = nullptr;
  errno = 0;
  const long double v = std::strtold(s.c_str(), &end);
  if (end != s.c_str() + s.size() || errno == ERANGE) return std::nullopt;
  return v;
}

// Flags whose values are numbers: the ones a stated range applies to.
bool IsNumeric(const absl::CommandLineFlag& f) {
  return f.IsOfType<int>() || f.IsOfType<unsigned>() || f.IsOfType<long>() ||
         f.IsOfType<unsigned long>() || f.IsOfType<long long>() ||
         f.IsOfType<unsigned long long>() || f.IsOfType<short>() || f.IsOfType<unsigned short>() ||
         f.IsOfType<double>() || f.IsOfType<float>();
}

}  // namespace

std::optional<StatedRange> FindStatedRange(absl::string_view help) {
  std::optional<StatedRange> found;
  for (size_t open = help.find('['); open != absl::string_view::npos;
       open = help.find('[', open + 1)) {
    const size_t close = help.find(']', open);
    if (close == absl::string_view::npos) break;
    const absl::string_view inside = help.substr(open + 1, close - open - 1);
    const size_t comma = inside.find(", ");
    if (comma == absl::string_view::npos) continue;
    const absl::string_view lo = inside.substr(0, comma), hi = inside.substr(comma + 2);
    if (lo != absl::StripAsciiWhitespace(lo) || hi != absl::StripAsciiWhitespace(hi)) continue;
    const std::optional<long double> lo_value = ToNumber(lo), hi_value = ToNumber(hi);
    if (!lo_value || !hi_value) continue;
    found = StatedRange{std::string(lo), std::string(hi), *lo_value, *hi_value};
  }
  return found;
}

absl::Status CheckStatedRanges() {
  std::vector<std::pair<absl::string_view, absl::CommandLineFlag*>> flags;
  for (const auto& entry : absl::GetAllFlags()) flags.emplace_back(entry.first, entry.second);
  std::sort(flags.begin(), flags.end());
  for (const auto& [name, flag] : flags) {
    if (!IsNumeric(*flag)) continue;
    const std::optional<StatedRange> range = FindStatedRange(flag->Help());
    if (!range) continue;
    const std::string value = flag->CurrentValue();
    const std::optional<long double> v = ToNumber(value);
    const bool inside = v && !std::isnan(*v) && *v >= range->lo_value && *v <= range->hi_value;
    if (!inside) {
      return absl::InvalidArgumentError(absl::StrCat("--", name, "=", value,
                                                     " is out of range: it must be in [", range->lo,
                                                     ", ", range->hi, "]"));
    }
  }
  return absl::OkStatus();
}

}  // namespace sparsed
