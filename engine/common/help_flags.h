// Makes --help/--helpshort list the flags defined in the calling binary's main file. Abseil's
// default only matches files named after the binary.
#pragma once

#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/string_view.h"

namespace sparsed {

// `main_file` (a string literal) is the basename of the file defining the flags, e.g. "main.cc".
inline void ListHelpFlagsFrom(const char* main_file) {
  absl::FlagsUsageConfig config;
  config.contains_help_flags = [main_file](absl::string_view f) {
    return absl::EndsWith(f, main_file);
  };
  config.contains_helpshort_flags = config.contains_help_flags;
  absl::SetFlagsUsageConfig(config);
}

}  // namespace sparsed
