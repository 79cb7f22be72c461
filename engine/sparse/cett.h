// CETT (cumulative error of tail truncation) of one FFN layer, and the threshold search.
//
// For a token x, neuron i's output is n_i = x1_i · W_down[:, i] with x1 = act(W_gate·x) ⊙ (W_up·x),
// so ‖n_i‖ = |x1_i| · ‖W_down[:, i]‖. Dropping the neurons with ‖n_i‖ < ε leaves the error
// ‖Σ_{‖n_i‖<ε} n_i‖; CETT(ε) is that error over ‖FFN(x)‖, averaged over tokens. It grows with ε,
// so ε for a target CETT is found by bisection.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/backend/backend.h"

namespace sparsed {

// Per-token neuron activations and output norms of one layer on calibration inputs.
struct LayerActivations {
  int64_t tokens = 0, neurons = 0, hidden = 0;
  std::vector<float> x1;          // [T × F]: act(gate) · up (or act(up) when not gated)
  std::vector<float> down_norms;  // [F]: ‖W_down[:, i]‖ (row norms of W_downᵀ)
};

// Runs the layer's gate/up on x [T × d] through `backend` (host memory: the CPU backend).
// `down_norms`, when given, are the layer's DownColumnNorms (callers that run many batches cache
// them, e.g. Engine::DownNorms); otherwise they are computed here.
LayerActivations ComputeLayerActivations(Backend& backend, const FfnLayer& layer, const float* x,
                                         int T, const std::vector<float>* down_norms = nullptr);

// CETT(ε) averaged over the tokens. Reads the down weights row by row (exact, fp32 sums).
double Cett(const LayerActivations& a, const Matrix& down_t, double epsilon);

// The ε whose CETT is `target` within `tolerance` (bisection between 0 and the largest neuron
// output norm; 60 halvings at most).
double FindEpsilon(const LayerActivations& a, const Matrix& down_t, double target,
                   double tolerance = 1e-3);

// CETT at every ε of `epsilons` (ascending) in one pass over the tokens: per token, neurons are
// taken in increasing order of output norm and the truncated sum grows along that order, so the
// whole curve costs two passes over the active down rows per token (Cett() costs one per ε).
std::vector<double> CettCurve(const LayerActivations& a, const Matrix& down_t,
                              const std::vector<double>& epsilons);

// An ascending ε grid for CettCurve: 0, `points` quantiles of the non-zero neuron output norms,
// and just above the largest.
std::vector<double> EpsilonGrid(const LayerActivations& a, int points);

// The ε at which the piecewise-linear curve (epsilons ascending, cett non-decreasing) reaches
// `target`; the last ε when it never does.
double InterpolateEpsilon(const std::vector<double>& epsilons, const std::vector<double>& cett,
                          double target);

// Share of (token, neuron) pairs whose output norm reaches ε (active in threshold mode); an exact
// zero of x1 is never active, at ε = 0 too.
double ActiveRatio(const LayerActivations& a, double epsilon);

// Per-neuron thresholds on |x1| for threshold mode: ε / ‖W_down[:, i]‖ (infinite for a zero
// column).
std::vector<float> NeuronThresholds(const std::vector<float>& down_norms, double epsilon);

// Row norms of W_downᵀ [F × d], i.e. column norms of W_down.
std::vector<float> DownColumnNorms(const Matrix& down_t);

}  // namespace sparsed
