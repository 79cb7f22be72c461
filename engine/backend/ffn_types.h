// Types shared by every backend's FFN: the layer's weights, the sparsity mode, statistics.
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/common/activation.h"
#include "engine/common/matrix.h"

namespace sparsed {

enum class SparsityMode {
  kOff,    // dense FFN
  kExact,  // skip neurons whose activation is exactly zero (ReLU family)
  // any activation: a neuron counts as active when |x1| reaches its calibrated threshold
  // (ε / ‖W_down[:, i]‖, see cett.h); gate and up stay dense, the down projection is sparse
  kThreshold,
};

absl::string_view SparsityModeName(SparsityMode m);
absl::StatusOr<SparsityMode> ParseSparsityMode(absl::string_view s);

struct FfnLayer {
  const Matrix* gate = nullptr;    // [F × d]; null for a non-gated FFN
  const Matrix* up = nullptr;      // [F × d]
  const Matrix* down_t = nullptr;  // [F × d]
  Activation activation = Activation::kSilu;
  float threshold = 0.f;                     // FATReLU threshold
  const float* neuron_thresholds = nullptr;  // [F] thresholds on |x1| (threshold mode)
  int64_t neurons() const { return up->rows; }
  int64_t hidden() const { return up->cols; }
};

// Per-layer counts of one FFN call; summed over steps by the caller.
struct FfnStats {
  int64_t tokens = 0;
  int64_t neurons = 0;       // F
  int64_t active_sum = 0;    // Σ over tokens of active neurons
  int64_t union_size = 0;    // |∪ masks| (F when dense)
  int64_t rows_skipped = 0;  // F − rows of up and down actually read
  bool dense = true;         // the dense path ran
  double active_ratio() const {
    return tokens && neurons ? double(active_sum) / (double(tokens) * neurons) : 0;
  }
  double union_ratio() const { return neurons ? double(union_size) / neurons : 0; }
};

}  // namespace sparsed
