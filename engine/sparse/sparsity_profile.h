// sparsity.json: the calibrated thresholds of threshold mode, written by sparsed-calibrate beside
// the model and read at load.
//
//   {"format": "sparsed-sparsity", "version": 1,
//    "model": {"fingerprint": "fnv1a64:…", "num_layers": L, "intermediate_size": F},
//    "mode": "threshold", "cett": 0.2,
//    "layers": [{"epsilon": ε, "active_ratio": a}, …],           // one per layer, in order
//    "perplexity": {"dense": p0, "sparse": p1, "target_increase_percent": P},  // optional
//    "calibration": {"text": "…", "tokens": N}}                     // optional, informative
//
// Neuron i of layer l is active for a token when |x1_i| ≥ ε_l / ‖W_down[:, i]‖ (cett.h); the
// per-neuron vectors are derived from the weights at load rather than stored.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace sparsed {

struct SparsityLayer {
  double epsilon = 0;       // ε: threshold on a neuron's output norm ‖n_i‖
  double active_ratio = 0;  // measured on the calibration text
};

struct SparsityPerplexity {
  double dense = 0, sparse = 0;
  std::optional<double> target_increase_percent;  // set by --ppl-increase
};

struct SparsityProfile {
  static constexpr int kVersion = 1;
  std::string fingerprint;
  int num_layers = 0;
  int intermediate_size = 0;
  double cett = 0;
  std::vector<SparsityLayer> layers;
  std::optional<SparsityPerplexity> perplexity;
  std::string calibration_text;
  int64_t calibration_tokens = 0;
};

// Parses the JSON text of `file_name`. INVALID_ARGUMENT naming the file and the field for
// malformed JSON, a wrong format/version, missing or mistyped fields, negative or non-finite
// values, or a layer count that disagrees with model.num_layers.
absl::StatusOr<SparsityProfile> ParseSparsityProfile(const std::string& text,
                                                     const std::string& file_name);
absl::StatusOr<SparsityProfile> ReadSparsityProfile(const std::string& path);
std::string SparsityProfileToJson(const SparsityProfile& profile);
absl::Status WriteSparsityProfile(const SparsityProfile& profile, const std::string& path);

// FAILED_PRECONDITION naming `file_name` when the profile was made for another model.
absl::Status CheckProfileMatchesModel(const SparsityProfile& profile, const std::string& file_name,
                                      const std::string& fingerprint, int num_layers,
                                      int intermediate_size);

}  // namespace sparsed
