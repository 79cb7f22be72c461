#include "tests/reference/reference.h"

#include <algorithm>
#include <cmath>

#include "engine/backend/mask.h"
#include "engine/common/panel.h"

namespace sparsed::ref {

namespace {

// x [T × K] as the quantized dot reads it: per token and block of 32, d = max|x| / 127, code =
// x · (1/d) rounded to nearest even; the values code · d.
std::vector<double> QuantizedActivations(const std::vector<float>& x, int T, int64_t K) {
  std::vector<double> out(static_cast<size_t>(T) * K);
  for (int64_t b = 0; b < T * K; b += 32) {
    float amax = 0;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[b + j]));
    const float d = amax / 127.f, inv = d != 0 ? 1.f / d : 0.f;
    for (int j = 0; j < 32; ++j) out[b + j] = double(std::nearbyint(x[b + j] * inv)) * d;
  }
  return out;
}

}  // namespace

std::vector<float> MatMul(const std::vector<float>& x, int T, const Matrix& w) {
  std::vector<float> y(static_cast<size_t>(T) * w.rows);
  // Block-quantized weights meet activations quantized per token (KernelTable::dot_rows_q).
  std::vector<double> xs = IsBlockQuantized(w.dtype)
                               ? QuantizedActivations(x, T, w.cols)
                               : std::vector<double>(x.begin(), x.begin() + T * w.cols);
  for (int t = 0; t < T; ++t) {
    for (int64_t r = 0; r < w.rows; ++r) {
      double s = 0;
      for (int64_t c = 0; c < w.cols; ++c) s += xs[t * w.cols + c] * MatrixElementAsF32(w, r, c);
      y[t * w.rows + r] = static_cast<float>(s);
    }
  }
  return y;
}

std::vector<float> RmsNorm(const std::vector<float>& x, int T, const std::vector<float>& w,
                           double eps) {
  const size_t d = w.size();
  std::vector<float> y(x.size());
  for (int t = 0; t < T; ++t) {
    double ss = 0;
    for (size_t i = 0; i < d; ++i) ss += double(x[t * d + i]) * x[t * d + i];
    const double inv = 1.0 / std::sqrt(ss / d + eps);
    for (size_t i = 0; i < d; ++i) y[t * d + i] = static_cast<float>(x[t * d + i] * inv * w[i]);
  }
  return y;
}

std::vector<float> Ffn(const std::vector<float>& x, int T, const Matrix* gate, const Matrix& up,
                       const Matrix& down_t, Activation act, float threshold) {
  const int64_t F = up.rows, d = up.cols;
  std::vector<float> g = MatMul(x, T, gate ? *gate : up);
  std::vector<float> u = gate ? MatMul(x, T, up) : std::vector<float>(g.size(), 1.f);
  std::vector<float> y(static_cast<size_t>(T) * d);
  for (int t = 0; t < T; ++t) {
    std::vector<double> acc(d, 0.0);
    for (int64_t i = 0; i < F; ++i) {
      const double h = double(Activate(g[t * F + i], act, threshold)) * u[t * F + i];
      if (h == 0) continue;
      for (int64_t c = 0; c < d; ++c) acc[c] += h * LoadAsF32(down_t.Row(i), down_t.dtype, c);
    }
    for (int64_t c = 0; c < d; ++c) y[t * d + c] = static_cast<float>(acc[c]);
  }
  return y;
}

void Rope(float* v, int head_dim, int pos, double theta, double linear_factor) {
  const int half = head_dim / 2;
  for (int i = 0; i < half; ++i) {
    const double inv_freq = 1.0 / std::pow(theta, 2.0 * i / head_dim);
    const double a = (pos / linear_factor) * inv_freq;
    const double x1 = v[i], x2 = v[i + half];
    v[i] = static_cast<float>(x1 * std::cos(a) - x2 * std::sin(a));
    v[i + half] = static_cast<float>(x2 * std::cos(a) + x1 * std::sin(a));
  }
}

void RopeTables(const std::vector<int>& positions, int head_dim, double theta,
                std::vector<float>* cos, std::vector<float>* sin) {
  const int half = head_dim / 2;
  cos->assign(positions.size() * half, 0.f);
  sin->assign(positions.size() * half, 0.f);
  for (size_t t = 0; t < positions.size(); ++t) {
    for (int i = 0; i < half; ++i) {
      const double a = positions[t] / std::pow(theta, 2.0 * i / head_dim);
      (*cos)[t * half + i] = static_cast<float>(std::cos(a));
      (*sin)[t * half + i] = static_cast<float>(std::sin(a));
    }
  }
}

void RopeHeads(std::vector<float>& q, std::vector<float>& k, const std::vector<int>& positions,
               int H, int KV, int head_dim, double theta) {
  for (size_t t = 0; t < positions.size(); ++t) {
    for (int h = 0; h < H; ++h)
      Rope(&q[(t * H + h) * head_dim], head_dim, positions[t], theta, 1.0);
    for (int h = 0; h < KV; ++h)
      Rope(&k[(t * KV + h) * head_dim], head_dim, positions[t], theta, 1.0);
  }
}

std::vector<float> CausalAttention(const std::vector<float>& q, const std::vector<float>& k,
                                   const std::vector<float>& v, const std::vector<int>& first,
                                   int H, int KV, int hd) {
  const int T = static_cast<int>(first.size());
  std::vector<float> out(static_cast<size_t>(T) * H * hd);
  for (int t = 0; t < T; ++t) {
    for (int h = 0; h < H; ++h) {
      const int g = h / (H / KV);
      std::vector<double> s;
      double mx = -1e300;
      for (int j = first[t]; j <= t; ++j) {
        double dot = 0;
        for (int i = 0; i < hd; ++i)
          dot += double(q[(size_t(t) * H + h) * hd + i]) * k[(size_t(j) * KV + g) * hd + i];
        s.push_back(dot / std::sqrt(double(hd)));
        mx = std::max(mx, s.back());
      }
      double z = 0;
      for (double& e : s) z += (e = std::exp(e - mx));
      for (int i = 0; i < hd; ++i) {
        double o = 0;
        for (int j = first[t]; j <= t; ++j)
          o += s[j - first[t]] / z * v[(size_t(j) * KV + g) * hd + i];
        out[(size_t(t) * H + h) * hd + i] = static_cast<float>(o);
      }
    }
  }
  return out;
}

std::vector<float> ModelLogits(const ModelConfig& c, const ModelWeights& w,
                               const std::vector<int32_t>& tokens) {
  const int T = static_cast<int>(tokens.size());
  const int64_t d = c.hidden_size, H = c.num_heads, KV = c.num_kv_heads, hd = c.head_dim;
  std::vector<float> x(static_cast<size_t>(T) * d);
  for (int t = 0; t < T; ++t) {
    for (int64_t i = 0; i < d; ++i)
      x[t * d + i] =
          static_cast<float>(LoadAsF32(w.embed.Row(tokens[t]), w.embed.dtype, i) * c.scale_emb);
  }
  for (const LayerWeights& l : w.layers) {
    std::vector<float> n = RmsNorm(x, T, l.attn_norm, c.rms_norm_eps);
    std::vector<float> q = MatMul(n, T, l.q), k = MatMul(n, T, l.k), v = MatMul(n, T, l.v);
    for (int t = 0; t < T; ++t) {
      for (int64_t h = 0; h < H; ++h)
        Rope(&q[(t * H + h) * hd], hd, t, c.rope_theta, c.rope_linear_factor);
      for (int64_t h = 0; h < KV; ++h)
        Rope(&k[(t * KV + h) * hd], hd, t, c.rope_theta, c.rope_linear_factor);
    }
    std::vector<float> attn(static_cast<size_t>(T) * H * hd);
    for (int t = 0; t < T; ++t) {
      for (int64_t h = 0; h < H; ++h) {
        const int64_t g = h / (H / KV);
        std::vector<double> s(t + 1);
        double mx = -1e300;
        for (int j = 0; j <= t; ++j) {
          double dot = 0;
          for (int64_t i = 0; i < hd; ++i)
            dot += double(q[(t * H + h) * hd + i]) * k[(j * KV + g) * hd + i];
          s[j] = dot / std::sqrt(double(hd));
          mx = std::max(mx, s[j]);
        }
        double z = 0;
        for (double& e : s) z += (e = std::exp(e - mx));
        for (int64_t i = 0; i < hd; ++i) {
          double o = 0;
          for (int j = 0; j <= t; ++j) o += s[j] / z * v[(j * KV + g) * hd + i];
          attn[(t * H + h) * hd + i] = static_cast<float>(o);
        }
      }
    }
    std::vector<float> o = MatMul(attn, T, l.o);
    for (size_t i = 0; i < x.size(); ++i) x[i] += static_cast<float>(c.residual_scale * o[i]);
    n = RmsNorm(x, T, l.ffn_norm, c.rms_norm_eps);
    std::vector<float> f = Ffn(n, T, l.gate.data ? &l.gate : nullptr, l.up, l.down_t, c.activation,
                               c.activation_threshold);
    for (size_t i = 0; i < x.size(); ++i) x[i] += static_cast<float>(c.residual_scale * f[i]);
  }
  std::vector<float> n = RmsNorm(x, T, w.final_norm, c.rms_norm_eps);
  std::vector<float> logits = MatMul(n, T, w.lm_head);
  for (float& v : logits) v = static_cast<float>(v * c.logit_scale);
  return logits;
}

double RelMaxError(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 1e-6;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    if (!std::isfinite(a[i])) return INFINITY;  // NaN would slip through std::max
    num = std::max(num, double(std::fabs(a[i] - b[i])));
    den = std::max(den, double(std::fabs(b[i])));
  }
  if (a.size() != b.size()) return INFINITY;
  return num / den;
}

}  // namespace sparsed::ref
