// --sparsity, for the binaries that run the FFN in a chosen mode (cli/engine_flags.h).
#include <string>

#include "absl/flags/flag.h"
#include "cli/engine_flags.h"
#include "cli/flag_checks.h"

ABSL_FLAG(std::string, sparsity, "",
          "FFN sparsity: exact | threshold | off. exact skips the exact zeros of ReLU-family "
          "activations; threshold skips neurons under sparsity.json's calibrated thresholds. "
          "Default: exact for ReLU-family models, else off (sparsed-profile and sparsed-reorder, "
          "which record masks: else threshold).");

namespace sparsed {

absl::Status ApplySparsityFlag(EngineOptions& options) {
  if (absl::Status s = FlagChecks().Parses(FLAGS_sparsity, ParseSparsityMode).status(); !s.ok())
    return s;
  options.sparsity_mode = absl::GetFlag(FLAGS_sparsity);
  return absl::OkStatus();
}

}  // namespace sparsed
