// Start-up checks of command-line flags. Every binary states each numeric flag's range in its
// --help text ("[lo, hi]") and checks it here before doing any work; the first value outside its
// range, or outside its list of choices, is a usage error.
//
// Exit status: every usage error exits with kUsageExit. That is 1 because Abseil's own parser
// exits with 1 on an unknown flag or an unparsable value, and an operator should see one code for
// every mistake on the command line.
#pragma once

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <type_traits>

#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"

namespace sparsed {

inline constexpr int kUsageExit = 1;

// Collects the first failed check. Usage:
//   absl::Status s = FlagChecks().Range(FLAGS_threads, 0, 1024).OneOf(FLAGS_mode, {"a", "b"})
//                        .Parses(FLAGS_sparsity, ParseSparsityMode).status();
class FlagChecks {
 public:
  // value in [lo, hi] (inclusive).
  template <typename T, typename B>
  FlagChecks& Range(const absl::Flag<T>& flag, B lo, B hi) {
    static_assert(std::is_arithmetic_v<T> && std::is_arithmetic_v<B>);
    const T v = absl::GetFlag(flag);
    // long double holds every int64/uint64 exactly, so mixed signedness compares correctly.
    const long double x = static_cast<long double>(v);
    bool bad = x < static_cast<long double>(lo) || x > static_cast<long double>(hi);
    if constexpr (std::is_floating_point_v<T>) bad = bad || std::isnan(v);
    if (status_.ok() && bad) {
      status_ = absl::InvalidArgumentError(
          absl::StrCat("--", absl::GetFlagReflectionHandle(flag).Name(), "=", v,
                       " is out of range: it must be in [", lo, ", ", hi, "]"));
    }
    return *this;
  }

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
