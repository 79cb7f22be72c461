// Neuron-activation patterns with a chosen active ratio and hot-neuron skew. Header-only, standard
// library only.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

namespace sparsed {

// Per-neuron activation probabilities with mean `active_ratio`. skew = 0 gives every neuron the
// same rate; larger skew concentrates activity on a few hot neurons (rate ∝ u^skew, u uniform).
// Rates are capped at 0.98, the excess spread over the others.
inline std::vector<double> NeuronRates(int64_t neurons, double active_ratio, double skew,
                                       uint64_t seed) {
  std::mt19937_64 rng(seed ^ 0x5eedull);
  std::uniform_real_distribution<double> uni(0.0, 1.0);
  std::vector<double> r(neurons);
  for (double& v : r) v = skew <= 0 ? 1.0 : std::pow(uni(rng), skew);
  for (int iter = 0; iter < 20; ++iter) {
    double sum = 0;
    for (double v : r) sum += v;
    const double scale = active_ratio * static_cast<double>(neurons) / std::max(sum, 1e-12);
    bool capped = false;
    for (double& v : r) {
      v *= scale;
      if (v > 0.98) {
        v = 0.98;
        capped = true;
      }
    }
    if (!capped) break;
  }
  return r;
}

// Inverse of the standard normal CDF (Acklam's rational approximation, |error| < 1.2e-9).
inline double NormalQuantile(double p) {
  static constexpr double a[] = {-3.969683028665376e+01, 2.209460984245205e+02,
                                 -2.759285104469687e+02, 1.383577518672690e+02,
                                 -3.066479806614716e+01, 2.506628277459239e+00};
  static constexpr double b[] = {-5.447609879822406e+01, 1.615858368580409e+02,
                                 -1.556989798598866e+02, 6.680131188771972e+01,
                                 -1.328068155288572e+01};
  static constexpr double c[] = {-7.784894002430293e-03, -3.223964580411365e-01,
                                 -2.400758277161838e+00, -2.549671010050049e+00,
                                 4.374664141464968e+00,  2.938163982698783e+00};
  static constexpr double d[] = {7.784695709041462e-03, 3.224671290700398e-01,
                                 2.445134137142996e+00, 3.754408661907416e+00};
  p = std::clamp(p, 1e-12, 1 - 1e-12);
  if (p < 0.02425) {
    const double q = std::sqrt(-2 * std::log(p));
    return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
           ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  }
  if (p > 1 - 0.02425) return -NormalQuantile(1 - p);
  const double q = p - 0.5, r = q * q;
  return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
         (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
}

// Gate weight rows [F × d] (row-major, fp32) whose neuron i fires with probability rates[i] on
// inputs x with x[0] = 1 and x[1:] ~ N(0, 1): channel 0 carries the bias −Φ⁻¹(1 − rate)·‖w_i[1:]‖.
inline void SetGateBias(std::vector<float>* gate, int64_t d, const std::vector<double>& rates) {
  const int64_t F = static_cast<int64_t>(rates.size());
  for (int64_t i = 0; i < F; ++i) {
    double n2 = 0;
    for (int64_t c = 1; c < d; ++c) n2 += double((*gate)[i * d + c]) * (*gate)[i * d + c];
    (*gate)[i * d] = static_cast<float>(-NormalQuantile(1.0 - rates[i]) * std::sqrt(n2));
  }
}

}  // namespace sparsed
