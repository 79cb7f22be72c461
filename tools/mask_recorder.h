// Records every FFN layer's per-token neuron masks while the engine runs windows of text: exact
// zeros (ReLU family) or the threshold rule |x1|·‖down column‖ ≥ ε of the loaded sparsity
// profile. Used by sparsed-profile and sparsed-reorder.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/engine.h"
#include "tools/union_profile.h"

namespace sparsed {

// Runs each window as one sequence (window i is sequence i of every layer's masks), with
// progress on stderr. `threshold`: masks by the profile's thresholds, else non-zero x1.
absl::StatusOr<std::vector<LayerMasks>> RecordMasks(
    Engine& engine, const std::vector<std::vector<int32_t>>& windows, bool threshold);

}  // namespace sparsed
