// How the command-line tools report a failed absl::Status: one line on stderr, exit code 1.
#pragma once

#include <cstdio>
#include <string>

#include "absl/status/status.h"
#include "cli/flag_checks.h"

namespace sparsed {

inline int FailWith(const absl::Status& s) {
  std::fprintf(stderr, "error: %s\n", std::string(s.message()).c_str());
  return 1;
}

// A usage error (a flag value the binary refuses: cli/flag_checks.h): the same line, and the
// exit status every usage error has.
inline int UsageFail(const absl::Status& s) {
  FailWith(s);
  return kUsageExit;
}

}  // namespace sparsed
