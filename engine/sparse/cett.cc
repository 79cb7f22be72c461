#include "engine/sparse/cett.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "engine/backend/mask.h"

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
                                         int T, const std::vector<float>* down_norms) {
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
  a.down_norms = down_norms ? *down_norms : DownColumnNorms(*layer.down_t);
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

std::vector<double> CettCurve(const LayerActivations& a, const Matrix& down_t,
                              const std::vector<double>& epsilons) {
  const int64_t F = a.neurons, d = a.hidden;
  const size_t G = epsilons.size();
  std::vector<double> sum(G, 0.0), full(d), tail(d);
  std::vector<std::pair<float, int32_t>> order;
  int64_t counted = 0;
  auto add_row = [&](std::vector<double>& acc, int64_t i, float x) {
    const void* row = down_t.Row(i);
    for (int64_t c = 0; c < d; ++c) acc[c] += double(x) * LoadAsF32(row, down_t.dtype, c);
  };
  auto norm2 = [](const std::vector<double>& v) {
    double n = 0;
    for (double x : v) n += x * x;
    return n;
  };
  for (int64_t t = 0; t < a.tokens; ++t) {
    const float* x1 = a.x1.data() + t * F;
    order.clear();
    std::fill(full.begin(), full.end(), 0.0);
    for (int64_t i = 0; i < F; ++i) {
      if (x1[i] == 0.f) continue;
      order.emplace_back(std::fabs(x1[i]) * a.down_norms[i], static_cast<int32_t>(i));
      add_row(full, i, x1[i]);
    }
    const double nf = norm2(full);
    if (nf <= 0) continue;
    ++counted;
    std::sort(order.begin(), order.end());
    std::fill(tail.begin(), tail.end(), 0.0);
    size_t next = 0;
    for (size_t g = 0; g < G; ++g) {
      while (next < order.size() && order[next].first < epsilons[g]) {
        add_row(tail, order[next].second, x1[order[next].second]);
        ++next;
      }
      sum[g] += std::sqrt(norm2(tail) / nf);
    }
  }
  for (double& v : sum) v = counted ? v / counted : 0.0;
  return sum;
}

std::vector<double> EpsilonGrid(const LayerActivations& a, int points) {
  std::vector<float> norms;
  for (int64_t t = 0; t < a.tokens; ++t) {
    for (int64_t i = 0; i < a.neurons; ++i) {
      const float x = a.x1[t * a.neurons + i];
      if (x != 0.f) norms.push_back(std::fabs(x) * a.down_norms[i]);
    }
  }
  std::vector<double> grid = {0.0};
  if (norms.empty()) return grid;
  std::sort(norms.begin(), norms.end());
  for (int p = 1; p <= points; ++p) {
    const size_t k = std::min(norms.size() - 1, norms.size() * p / (points + 1));
    if (norms[k] > grid.back()) grid.push_back(norms[k]);
  }
  grid.push_back(double(norms.back()) * 1.0000001 + 1e-30);
  return grid;
}

double InterpolateEpsilon(const std::vector<double>& epsilons, const std::vector<double>& cett,
                          double target) {
  if (epsilons.empty()) return 0.0;
  if (target <= cett.front()) return epsilons.front();
  for (size_t g = 1; g < epsilons.size(); ++g) {
    if (cett[g] >= target) {
      const double span = cett[g] - cett[g - 1];
      const double f = span > 0 ? (target - cett[g - 1]) / span : 1.0;
      return epsilons[g - 1] + f * (epsilons[g] - epsilons[g - 1]);
    }
  }
  return epsilons.back();
}

double ActiveRatio(const LayerActivations& a, double epsilon) {
  int64_t active = 0;
  for (int64_t t = 0; t < a.tokens; ++t) {
    for (int64_t i = 0; i < a.neurons; ++i) {
      // An exact zero contributes nothing and is never active, even at ε = 0.
      const float x = a.x1[t * a.neurons + i];
      active += x != 0.f && double(std::fabs(x)) * a.down_norms[i] >= epsilon;
    }
  }
  const double n = double(a.tokens) * double(a.neurons);
  return n > 0 ? double(active) / n : 0.0;
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
