// CETT calibration of a loaded model (cumulative error of tail truncation, README "Tools"):
// per-layer activations on calibration
// text, CETT(ε) curves, thresholds for a target CETT, and the CETT-PPL-p% search.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/engine.h"
#include "engine/sparse/cett.h"
#include "engine/sparse/sparsity_profile.h"

namespace sparsed {

struct LayerCalibration {
  LayerActivations activations;
  std::vector<double> epsilons;  // ascending grid
  std::vector<double> cett;      // CETT at each grid ε
};

// (what, done, total) progress of long steps.
using CalibrationProgress = std::function<void(const std::string&, int, int)>;

// Runs `windows` through the engine (CPU backend, any mode) capturing every layer's FFN input,
// then computes x1 and the CETT curve of each layer on a grid of `grid_points` ε values.
absl::StatusOr<std::vector<LayerCalibration>> CollectCalibration(
    Engine& engine, const std::vector<std::vector<int32_t>>& windows, int grid_points,
    const CalibrationProgress& progress);

// Per-layer ε giving CETT `target` (interpolated on each layer's curve).
std::vector<double> EpsilonsForCett(const std::vector<LayerCalibration>& layers, double target);

struct CalibrationResult {
  double cett = 0;
  std::vector<double> epsilons;
  std::vector<double> active_ratios;  // per layer, on the calibration tokens
  double dense_ppl = 0, sparse_ppl = 0;
  int evaluations = 0;  // perplexity runs of the PPL-p% search
  double increase_percent() const { return dense_ppl > 0 ? 100 * (sparse_ppl / dense_ppl - 1) : 0; }
};

struct CalibrationOptions {
  double cett = 0.2;  // used when ppl_increase_percent is unset
  std::optional<double> ppl_increase_percent;
  double tolerance_pp = 0.05;  // PPL-p% search stops within this many points below P
  int max_evaluations = 24;
  int batch = 8;  // windows per engine step for perplexity
};

// Fixed CETT, or the largest CETT whose perplexity over `eval_windows` rises by at most P% over
// dense (bisection over CETT ∈ [0, 1]; perplexity grows with CETT): the bracket's lower end, the
// largest CETT evaluated within the target, stopping once it is within tolerance_pp points below
// it (CETT 0, the dense perplexity, when no evaluated CETT is within it). Leaves the engine in
// threshold mode with the result's thresholds.
absl::StatusOr<CalibrationResult> Calibrate(Engine& engine,
                                            const std::vector<LayerCalibration>& layers,
                                            const std::vector<std::vector<int32_t>>& eval_windows,
                                            const CalibrationOptions& options,
                                            const CalibrationProgress& progress);

}  // namespace sparsed
