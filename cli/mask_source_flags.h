// The flags of the tools that record FFN masks from text (sparsed-profile, sparsed-reorder),
// declared once with one help text (cli/mask_source_flags.cc):
//   --text, --tokens, --window   what is recorded
//   --samples                    random batches per batch size in the union reports
// plus the engine flags (cli/engine_flags.h) every model-loading binary has.
#pragma once

#include "absl/status/statusor.h"
#include "tools/mask_recorder.h"

namespace sparsed {

// A MaskSource from --text, --window, --tokens, --sparsity, --model, --device and --threads.
// Errors: those of ApplySparsityFlag and ApplyEngineFlags (cli/engine_flags.h).
absl::StatusOr<MaskSource> MaskSourceFromFlags();

// --samples: random batches drawn per batch size when a union curve is estimated.
int UnionSamplesFlag();

}  // namespace sparsed
