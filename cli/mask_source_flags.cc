#include "cli/mask_source_flags.h"

#include <cstdint>
#include <string>

#include "absl/flags/flag.h"
#include "cli/engine_flags.h"

ABSL_FLAG(std::string, text, "models/corpus/heldout.txt", "Text, one document per line.");
ABSL_FLAG(int64_t, tokens, 8192, "Tokens of --text to record [2, 1073741824].");
ABSL_FLAG(int, window, 128, "Tokens per sequence (window of text) [1, 65536].");
ABSL_FLAG(int, samples, 400, "Random batches per batch size in the union reports [1, 1048576].");

namespace sparsed {

absl::StatusOr<MaskSource> MaskSourceFromFlags() {
  MaskSource source{
      {}, absl::GetFlag(FLAGS_text), absl::GetFlag(FLAGS_window), absl::GetFlag(FLAGS_tokens)};
  if (absl::Status s = ApplySparsityFlag(source.engine); !s.ok()) return s;
  if (auto d = ApplyEngineFlags(source.engine); !d.ok()) return d.status();
  return source;
}

int UnionSamplesFlag() { return absl::GetFlag(FLAGS_samples); }

}  // namespace sparsed
