#include "engine/sparse/cett.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "engine/sparse/mask.h"

namespace sparsed {

std::vector<float> DownColumnNorms(const Matrix& down_t) {
  std::vector<float> norms(down_t.rows);
  for (int64_t i = 0; i < down_t.rows; ++i) {
    double s = 0;
    for (int64_t c = 0; c < down_t.cols; ++c) {
      const double v = LoadAsF32(down_t.Row(i), down_t.dtype, c);
      s += v * v;
    }
    norms[i] = static_cast<float>(std::sqrt(s));
  }
  return norms;
}

LayerActivations ComputeLayerActivations(Backend& backend, const FfnLayer& layer, const float* x,
                                         int T) {
  LayerActivations a;
  a.tokens = T;
  a.neurons = layer.neurons();
  a.hidden = layer.hidden();
  a.x1.resize(static_cast<size_t>(T) * a.neurons);
  const bool gated = layer.gate != nullptr;
  backend.MatMul(x, T, gated ? *layer.gate : *layer.up, a.x1.data());
  std::vector<float> up;
  if (gated) {
    up.resize(a.x1.size());
    backend.MatMul(x, T, *layer.up, up.data());
  }
  for (size_t i = 0; i < a.x1.size(); ++i) {
    const float act = Activate(a.x1[i], layer.activation, layer.threshold);
    a.x1[i] = gated ? act * up[i] : act;
  }
  a.down_norms = DownColumnNorms(*layer.down_t);
  return a;
}

double Cett(const LayerActivations& a, const Matrix& down_t, double epsilon) {
  const int64_t F = a.neurons, d = a.hidden;
  std::vector<double> full(d), tail(d);
  double sum = 0;
  int64_t counted = 0;
  for (int64_t t = 0; t < a.tokens; ++t) {
    std::fill(full.begin(), full.end(), 0.0);
    std::fill(tail.begin(), tail.end(), 0.0);
    const float* x1 = a.x1.data() + t * F;
    for (int64_t i = 0; i < F; ++i) {
      if (x1[i] == 0.f) continue;
      const bool dropped = std::fabs(x1[i]) * a.down_norms[i] < epsilon;
      const void* row = down_t.Row(i);
      for (int64_t c = 0; c < d; ++c) {
        const double v = double(x1[i]) * LoadAsF32(row, down_t.dtype, c);
        full[c] += v;
        if (dropped) tail[c] += v;
      }
    }
    double nf = 0, nt = 0;
    for (int64_t c = 0; c < d; ++c) {
      nf += full[c] * full[c];
      nt += tail[c] * tail[c];
    }
    if (nf > 0) {
      sum += std::sqrt(nt / nf);
      ++counted;
    }
  }
  return counted ? sum / counted : 0.0;
}

double FindEpsilon(const LayerActivations& a, const Matrix& down_t, double target,
                   double tolerance) {
  double hi = 0;
  for (int64_t t = 0; t < a.tokens; ++t) {
    for (int64_t i = 0; i < a.neurons; ++i) {
      hi = std::max(hi, double(std::fabs(a.x1[t * a.neurons + i])) * a.down_norms[i]);
    }
  }
  hi *= 1.0000001;
  double lo = 0;
  for (int it = 0; it < 60; ++it) {
    const double mid = 0.5 * (lo + hi);
    const double c = Cett(a, down_t, mid);
    if (std::fabs(c - target) <= tolerance) return mid;
    (c < target ? lo : hi) = mid;
  }
  return 0.5 * (lo + hi);
}

std::vector<float> NeuronThresholds(const std::vector<float>& down_norms, double epsilon) {
  std::vector<float> t(down_norms.size());
  for (size_t i = 0; i < t.size(); ++i) {
    t[i] = down_norms[i] > 0 ? static_cast<float>(epsilon / down_norms[i])
                             : std::numeric_limits<float>::infinity();
  }
  return t;
}

}  // namespace sparsed
