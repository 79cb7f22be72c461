// Records every FFN layer's per-token neuron masks while the engine runs windows of text: exact
// zeros (ReLU family) or the threshold rule |x1|·‖down column‖ ≥ ε of the loaded sparsity
// profile. Used by sparsed-profile and sparsed-reorder.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/engine.h"
#include "tools/union_profile.h"

namespace sparsed {

// Runs each window as one sequence (window i is sequence i of every layer's masks), with
// progress on stderr. `threshold`: masks by the profile's thresholds, else non-zero x1.
absl::StatusOr<std::vector<LayerMasks>> RecordMasks(
    Engine& engine, const std::vector<std::vector<int32_t>>& windows, bool threshold);

// What sparsed-profile and sparsed-reorder record masks from.
struct MaskSource {
  // Model, device, threads and sparsity mode: exact | threshold; an empty mode is exact for the
  // ReLU family, else threshold. The KV cache is sized here, for one window.
  EngineOptions engine;
  std::string text;
  int window = 128;
  int64_t tokens = 8192;
};

struct RecordedMasks {
  std::unique_ptr<Engine> engine;
  bool threshold = false;
  std::vector<std::vector<int32_t>> windows;
  std::vector<LayerMasks> layers;
};

// Loads the model, cuts the text into windows and records every layer's masks. INVALID_ARGUMENT
// when the sparsity mode is neither exact nor threshold.
absl::StatusOr<RecordedMasks> LoadAndRecordMasks(const MaskSource& source);

}  // namespace sparsed
