// Every binary's command-line prologue: --help/--helpshort list the flags defined in the calling
// binary's main file and the shared flags it uses (cli/engine_flags.h; Abseil's default only
// matches files named after the binary), and no flag gets past parsing outside its stated range.
#pragma once

#include <cstdlib>
#include <vector>

#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "cli/cli_status.h"
#include "cli/flag_checks.h"

namespace sparsed {

// `main_file` (a string literal) is the basename of the file defining the flags, e.g. "main.cc".
inline void ListHelpFlagsFrom(const char* main_file) {
  absl::FlagsUsageConfig config;
  config.contains_help_flags = [main_file](absl::string_view f) {
    return absl::EndsWith(f, main_file) || absl::EndsWith(f, "cli/engine_flags.cc") ||
           absl::EndsWith(f, "cli/sparsity_flag.cc") ||
           absl::EndsWith(f, "cli/mask_source_flags.cc");
  };
  config.contains_helpshort_flags = config.contains_help_flags;
  absl::SetFlagsUsageConfig(config);
}

// How a binary reports a usage error before it exits (default: one "error: ..." line on stderr).
using UsageReporter = void (*)(const absl::Status&);

// Every binary's start: --help lists `main_file`'s flags and the shared ones, `usage` heads it,
// and the command line is parsed (Abseil exits with 1 on an unknown flag or a bad value). Then
// every flag is checked against the range its help states (cli/flag_checks.h): a value outside it
// is passed to `report` and the program exits with kUsageExit, as for an unparsable value. Returns
// the positional arguments, argv[0] first.
inline std::vector<char*> ParseFlags(
    int argc, char** argv, const char* main_file, absl::string_view usage,
    UsageReporter report = [](const absl::Status& s) { FailWith(s); }) {
  ListHelpFlagsFrom(main_file);
  absl::SetProgramUsageMessage(usage);
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (const absl::Status s = CheckStatedRanges(); !s.ok()) {
    report(s);
    std::exit(kUsageExit);
  }
  return args;
}

}  // namespace sparsed
