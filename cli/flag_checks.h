// Start-up checks of command-line flags. Every binary states each numeric flag's range in its
// --help text ("[lo, hi]", the last such pair in the text) and nowhere else: ParseFlags
// (cli/help_flags.h) checks every flag linked into the binary against the range its help states,
// so what --help says and what is enforced cannot drift apart. A value outside its range, or
// outside its list of choices (FlagChecks), is a usage error.
//
// Exit status: every usage error exits with kUsageExit. That is 1 because Abseil's own parser
// exits with 1 on an unknown flag or an unparsable value, and an operator should see one code for
// every mistake on the command line.
#pragma once

#include <initializer_list>
#include <optional>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"

namespace sparsed {

inline constexpr int kUsageExit = 1;

// The range a flag's help text states: the last "[lo, hi]" whose ends are both numbers, or
// nullopt when there is none. The ends as written (an integer bound keeps every digit) and their
// values (long double holds every int64/uint64 exactly).
struct StatedRange {
  std::string lo, hi;
  long double lo_value = 0, hi_value = 0;
};
std::optional<StatedRange> FindStatedRange(absl::string_view help);

// Every numeric flag (int, int64_t, uint64_t, double, ...) linked into the binary whose help states
// a range holds a value inside it (NaN never does). Error: InvalidArgument
// "--NAME=VALUE is out of range: it must be in [LO, HI]" for the first such flag by name.
absl::Status CheckStatedRanges();

// Checks beyond the stated ranges; collects the first that fails. Usage:
//   absl::Status s = FlagChecks().OneOf(FLAGS_mode, {"a", "b"})
//                        .Parses(FLAGS_sparsity, ParseSparsityMode).status();
class FlagChecks {
 public:
  // One of `choices` (exact match).
  FlagChecks& OneOf(const absl::Flag<std::string>& flag,
                    std::initializer_list<absl::string_view> choices) {
    const std::string v = absl::GetFlag(flag);
    for (absl::string_view c : choices) {
      if (v == c) return *this;
    }
    if (status_.ok()) {
      status_ = absl::InvalidArgumentError(
          absl::StrCat("--", absl::GetFlagReflectionHandle(flag).Name(), "=", v,
                       " is not one of: ", absl::StrJoin(choices, ", ")));
    }
    return *this;
  }

  // A value `parse` (returning absl::StatusOr) accepts, such as a mode name the library parses
  // itself; an empty value means the binary's default and is not checked.
  template <typename Parse>
  FlagChecks& Parses(const absl::Flag<std::string>& flag, Parse parse) {
    const std::string v = absl::GetFlag(flag);
    if (status_.ok() && !v.empty()) {
      if (const absl::Status s = parse(v).status(); !s.ok()) {
        status_ = absl::InvalidArgumentError(absl::StrCat(
            "--", absl::GetFlagReflectionHandle(flag).Name(), "=", v, ": ", s.message()));
      }
    }
    return *this;
  }

  // A check the caller computed (e.g. one flag against another).
  FlagChecks& Require(bool ok, absl::string_view message) {
    if (status_.ok() && !ok) status_ = absl::InvalidArgumentError(message);
    return *this;
  }

  const absl::Status& status() const { return status_; }

 private:
  absl::Status status_;
};

}  // namespace sparsed
