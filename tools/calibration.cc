#include "tools/calibration.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "engine/common/status_macros.h"
#include "tools/text_eval.h"

namespace sparsed {
absl::StatusOr<std::vector<LayerCalibration>> CollectCalibration(
    Engine& engine, const std::vector<std::vector<int32_t>>& windows, int grid_points,
    const CalibrationProgress& progress) {
  const int L = static_cast<int>(engine.config().num_layers);
  const int64_t d = engine.config().hidden_size;
  std::vector<std::vector<float>> inputs(L);
  engine.set_ffn_observer([&](int layer, const float* x, int tokens) {
    inputs[layer].insert(inputs[layer].end(), x, x + tokens * d);
  });
  for (size_t w = 0; w < windows.size(); ++w) {
    auto out = StepWindow(engine, windows[w]);
    if (!out.ok()) {
      engine.set_ffn_observer(nullptr);
      return out.status();
    }
    if (progress) progress("forward", static_cast<int>(w + 1), static_cast<int>(windows.size()));
  }
  engine.set_ffn_observer(nullptr);
  std::vector<LayerCalibration> layers(L);
  for (int l = 0; l < L; ++l) {
    const int T = static_cast<int>(inputs[l].size() / d);
    layers[l].activations = ComputeLayerActivations(engine.backend(), engine.FfnOf(l),
                                                    inputs[l].data(), T, &engine.DownNorms(l));
    std::vector<float>().swap(inputs[l]);
    layers[l].epsilons = EpsilonGrid(layers[l].activations, grid_points);
    layers[l].cett =
        CettCurve(layers[l].activations, engine.weights().layers[l].down_t, layers[l].epsilons);
    if (progress) progress("cett curves", l + 1, L);
  }
  return layers;
}

std::vector<double> EpsilonsForCett(const std::vector<LayerCalibration>& layers, double target) {
  std::vector<double> eps;
  for (const LayerCalibration& l : layers) {
    eps.push_back(InterpolateEpsilon(l.epsilons, l.cett, target));
  }
  return eps;
}

absl::StatusOr<CalibrationResult> Calibrate(Engine& engine,
                                            const std::vector<LayerCalibration>& layers,
                                            const std::vector<std::vector<int32_t>>& eval_windows,
                                            const CalibrationOptions& options,
                                            const CalibrationProgress& progress) {
  CalibrationResult r;
  RETURN_IF_ERROR(engine.SetSparsityMode(SparsityMode::kOff));
  ASSIGN_OR_RETURN(PerplexityResult dense, Perplexity(engine, eval_windows, options.batch));
  r.dense_ppl = dense.perplexity();
  auto evaluate = [&](double cett) -> absl::StatusOr<double> {
    RETURN_IF_ERROR(engine.SetThresholds(EpsilonsForCett(layers, cett)));
    RETURN_IF_ERROR(engine.SetSparsityMode(SparsityMode::kThreshold));
    ASSIGN_OR_RETURN(PerplexityResult p, Perplexity(engine, eval_windows, options.batch));
    ++r.evaluations;
    if (progress) progress("perplexity search", r.evaluations, options.max_evaluations);
    return p.perplexity();
  };
  if (!options.ppl_increase_percent) {
    r.cett = options.cett;
    ASSIGN_OR_RETURN(r.sparse_ppl, evaluate(r.cett));
  } else {
    const double target = *options.ppl_increase_percent;
    if (target <= 0) return absl::InvalidArgumentError("--ppl_increase must be positive");
    // Bisection keeping lo at a CETT whose increase is within the target (CETT 0 drops nothing:
    // the dense perplexity) and hi above it. The result is the bracket's lower end, the largest
    // CETT evaluated whose increase is at most P%, never a value past the target.
    double lo = 0, hi = 1;
    r.cett = 0;
    r.sparse_ppl = r.dense_ppl;
    while (r.evaluations < options.max_evaluations) {
      const double mid = 0.5 * (lo + hi);
      ASSIGN_OR_RETURN(double ppl, evaluate(mid));
      const double inc = 100 * (ppl / r.dense_ppl - 1);
      if (inc <= target) {
        lo = mid;
        r.cett = mid;
        r.sparse_ppl = ppl;
        if (target - inc <= options.tolerance_pp) break;
      } else {
        hi = mid;
      }
    }
    RETURN_IF_ERROR(engine.SetThresholds(EpsilonsForCett(layers, r.cett)));
    RETURN_IF_ERROR(engine.SetSparsityMode(SparsityMode::kThreshold));
  }
  r.epsilons = EpsilonsForCett(layers, r.cett);
  for (size_t l = 0; l < layers.size(); ++l) {
    r.active_ratios.push_back(ActiveRatio(layers[l].activations, r.epsilons[l]));
  }
  return r;
}

}  // namespace sparsed
