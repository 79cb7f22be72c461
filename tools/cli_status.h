// How the command-line tools report a failed absl::Status: one line on stderr, exit code 1.
#pragma once

#include <cstdio>
#include <string>

#include "absl/status/status.h"

namespace sparsed {

inline int FailWith(const absl::Status& s) {
  std::fprintf(stderr, "error: %s\n", std::string(s.message()).c_str());
  return 1;
}

}  // namespace sparsed
