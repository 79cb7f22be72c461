// CETT against a brute-force computation, its monotonicity, the ε search, and the threshold-mode
// FFN (output error equals CETT, batch invariance).
#include "engine/sparse/cett.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "engine/backend/cpu/cpu_backend.h"
#include "engine/backend/mask.h"
#include "engine/model/config.h"
#include "engine/model/safetensors_writer.h"

namespace sparsed {
namespace {

struct SmallLayer {
  int64_t F = 96, d = 24;
  std::vector<uint8_t> g, u, dn;
  Matrix gate, up, down_t;
  explicit SmallLayer(uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> nd(0.f, 0.3f);
    auto mk = [&](std::vector<uint8_t>* b, Matrix* m) {
      std::vector<float> v(F * d);
      for (float& x : v) x = nd(rng);
      *b = EncodeTensor(v, DType::kF32);
      *m = Matrix{b->data(), DType::kF32, F, d, nullptr};
    };
    mk(&g, &gate);
    mk(&u, &up);
    mk(&dn, &down_t);
  }
  FfnLayer Layer(Activation act, const float* thr = nullptr) const {
    FfnLayer l{&gate, &up, &down_t, act, 0.f};
    l.neuron_thresholds = thr;
    return l;
  }
};

std::vector<float> Inputs(int T, int64_t d, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> x(T * d);
  for (float& v : x) v = nd(rng);
  return x;
}

// Brute force: materialise every neuron's output vector n_i, drop those with ‖n_i‖ < ε.
double BruteCett(const SmallLayer& L, const std::vector<float>& x, int T, Activation act,
                 double eps) {
  double sum = 0;
  for (int t = 0; t < T; ++t) {
    std::vector<double> full(L.d, 0), tail(L.d, 0);
    for (int64_t i = 0; i < L.F; ++i) {
      double gsum = 0, usum = 0;
      for (int64_t c = 0; c < L.d; ++c) {
        gsum += double(x[t * L.d + c]) * LoadAsF32(L.gate.Row(i), DType::kF32, c);
        usum += double(x[t * L.d + c]) * LoadAsF32(L.up.Row(i), DType::kF32, c);
      }
      const double x1 = double(Activate(static_cast<float>(gsum), act, 0.f)) * usum;
      std::vector<double> n(L.d);
      double norm = 0;
      for (int64_t c = 0; c < L.d; ++c) {
        n[c] = x1 * LoadAsF32(L.down_t.Row(i), DType::kF32, c);
        norm += n[c] * n[c];
      }
      for (int64_t c = 0; c < L.d; ++c) {
        full[c] += n[c];
        if (std::sqrt(norm) < eps) tail[c] += n[c];
      }
    }
    double nf = 0, nt = 0;
    for (int64_t c = 0; c < L.d; ++c) nf += full[c] * full[c], nt += tail[c] * tail[c];
    sum += std::sqrt(nt / nf);
  }
  return sum / T;
}

std::unique_ptr<CpuBackend> Cpu() {
  BackendOptions o;
  o.threads = 2;
  return std::make_unique<CpuBackend>(o);
}

TEST(Cett, MatchesBruteForceAndIsMonotone) {
  for (Activation act : {Activation::kSilu, Activation::kRelu, Activation::kRelu2}) {
    SmallLayer L(3);
    const int T = 7;
    const auto x = Inputs(T, L.d, 5);
    auto be = Cpu();
    const LayerActivations a = ComputeLayerActivations(*be, L.Layer(act), x.data(), T);
    double prev = -1;
    for (double eps : {0.0, 0.001, 0.01, 0.03, 0.1, 0.3, 1.0, 10.0}) {
      const double c = Cett(a, L.down_t, eps);
      EXPECT_NEAR(c, BruteCett(L, x, T, act, eps), 1e-5) << ActivationName(act) << " eps " << eps;
      EXPECT_GE(c, prev - 1e-12) << "CETT must not fall as eps grows";
      prev = c;
    }
    EXPECT_EQ(Cett(a, L.down_t, 0.0), 0.0);
    EXPECT_NEAR(Cett(a, L.down_t, 1e9), 1.0, 1e-9);  // everything dropped
  }
}

TEST(Cett, EpsilonSearchHitsTheTarget) {
  SmallLayer L(9);
  const int T = 16;
  const auto x = Inputs(T, L.d, 1);
  auto be = Cpu();
  const LayerActivations a = ComputeLayerActivations(*be, L.Layer(Activation::kSilu), x.data(), T);
  for (double target : {0.05, 0.2, 0.5}) {
    const double eps = FindEpsilon(a, L.down_t, target, 1e-3);
    EXPECT_NEAR(Cett(a, L.down_t, eps), target, 2e-3) << "target " << target;
  }
}

TEST(ThresholdMode, OutputErrorEqualsCettAndSkipsDownRows) {
  SmallLayer L(4);
  const int T = 9;
  const auto x = Inputs(T, L.d, 2);
  auto be = Cpu();
  const FfnLayer dense_layer = L.Layer(Activation::kSilu);
  const LayerActivations a = ComputeLayerActivations(*be, dense_layer, x.data(), T);
  const double eps = FindEpsilon(a, L.down_t, 0.2, 1e-3);
  const std::vector<float> thr = NeuronThresholds(a.down_norms, eps);
  std::vector<float> yd(T * L.d), yt(T * L.d);
  be->Ffn(dense_layer, x.data(), T, SparsityMode::kOff, yd.data(), nullptr);
  FfnStats st;
  be->Ffn(L.Layer(Activation::kSilu, thr.data()), x.data(), T, SparsityMode::kThreshold, yt.data(),
          &st);
  double err = 0;
  for (int t = 0; t < T; ++t) {
    double e = 0, n = 0;
    for (int64_t c = 0; c < L.d; ++c) {
      const double diff = double(yd[t * L.d + c]) - yt[t * L.d + c];
      e += diff * diff;
      n += double(yd[t * L.d + c]) * yd[t * L.d + c];
    }
    err += std::sqrt(e / n) / T;
  }
  EXPECT_NEAR(err, Cett(a, L.down_t, eps), 2e-4);
  EXPECT_LT(st.active_ratio(), 1.0);  // SiLU has no exact zeros: thresholds made it sparse
  EXPECT_GT(st.active_ratio(), 0.0);
}

TEST(ThresholdMode, BitwiseBatchInvariant) {
  SmallLayer L(6);
  auto be = Cpu();
  const auto x0 = Inputs(1, L.d, 11);
  const LayerActivations a = ComputeLayerActivations(*be, L.Layer(Activation::kSilu), x0.data(), 1);
  const std::vector<float> thr = NeuronThresholds(a.down_norms, 0.05);
  const FfnLayer layer = L.Layer(Activation::kSilu, thr.data());
  std::vector<float> y0(L.d);
  FfnStats s0;
  be->Ffn(layer, x0.data(), 1, SparsityMode::kThreshold, y0.data(), &s0);
  // One token skips the rows it leaves at zero; a wide batch's union covers nearly every row and
  // runs the down projection dense (cpu_ffn.cc): both paths are covered, with the same bits.
  EXPECT_LE(s0.union_size, 0.85 * L.F);
  int64_t widest = 0;
  for (int B : {2, 5, 17, 40}) {
    auto xb = Inputs(B, L.d, 100 + B);
    std::memcpy(&xb[(B - 1) * L.d], x0.data(), L.d * sizeof(float));
    std::vector<float> yb(B * L.d);
    FfnStats sb;
    be->Ffn(layer, xb.data(), B, SparsityMode::kThreshold, yb.data(), &sb);
    widest = std::max(widest, sb.union_size);
    EXPECT_EQ(0, std::memcmp(&yb[(B - 1) * L.d], y0.data(), L.d * sizeof(float))) << "batch " << B;
  }
  EXPECT_GT(widest, 0.85 * L.F);
}

// SiLU's exponential is computed without a library call (engine/backend/mask.cc): close to the
// double-precision value everywhere, the library's saturation at both ends, and the same bits
// whether a value goes through the vectorised in-place loop or alone.
TEST(Silu, MatchesDoublePrecisionAndIsLaneIndependent) {
  std::vector<float> g;
  for (float v = -120.f; v <= 120.f; v += 0.0137f) g.push_back(v);
  for (float v : {-88.8f, -88.72f, -88.f, -87.5f, -87.f, -86.9f, 0.f, -0.f, 1e-30f, -1e-30f, 86.9f,
                  87.f, 88.f, 88.8f, 1e30f, -1e30f})
    g.push_back(v);
  g.push_back(std::numeric_limits<float>::infinity());
  g.push_back(-std::numeric_limits<float>::infinity());
  for (float v : g) {
    const double want = double(v) / (1.0 + std::exp(-double(v)));
    const float got = Activate(v, Activation::kSilu, 0.f);
    if (std::isinf(v)) {  // inf / (1 + e^-inf) = inf; -inf / (1 + e^inf) = NaN, as in double
      EXPECT_TRUE(v > 0 ? got == v : std::isnan(got)) << v << " gives " << got;
      continue;
    }
    if (v < -88.7229f) {  // e^-v overflows a float, as the library's expf does: -0
      EXPECT_EQ(got, 0.f) << v;
      continue;
    }
    // 4 ulp of the result, or an absolute 1e-37 where the result is denormal-small.
    EXPECT_NEAR(got, want, std::max(4.0 * std::fabs(want) * 1.1920929e-7, 1e-37)) << "g " << v;
  }
  EXPECT_TRUE(std::isnan(Activate(std::nanf(""), Activation::kSilu, 0.f)));
  EXPECT_TRUE(std::signbit(Activate(-100.f, Activation::kSilu, 0.f)));  // -0, as g / (1 + inf)
  EXPECT_EQ(Activate(-100.f, Activation::kSilu, 0.f), 0.f);
  // The in-place loop (vectorised) gives every value the bits Activate gives it alone, at every
  // offset and length.
  for (size_t off : {size_t{0}, size_t{1}, size_t{3}}) {
    std::vector<float> a(g.begin() + off, g.end());
    const int64_t nz =
        ActivateInPlace(a.data(), static_cast<int64_t>(a.size()), Activation::kSilu, 0.f);
    int64_t want_nz = 0;
    for (size_t i = 0; i < a.size(); ++i) {
      const float one = Activate(g[off + i], Activation::kSilu, 0.f);
      ASSERT_EQ(0, std::memcmp(&a[i], &one, sizeof one)) << "g " << g[off + i];
      want_nz += one != 0.f;
    }
    EXPECT_EQ(nz, want_nz);
  }
}

// The branch-free threshold pass against the rule written plainly: zero below the threshold
// (a NaN stays), a bit for every value left non-zero (-0 is zero, NaN is not).
TEST(ThresholdBits, MatchesThePlainRule) {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.f, 1.f);
  for (int n : {1, 7, 63, 64}) {
    std::vector<float> h(n), thr(n);
    for (int b = 0; b < n; ++b) {
      h[b] = normal(rng);
      thr[b] = std::fabs(normal(rng));
    }
    // The edges: exactly at the threshold (kept), -0, NaN, infinities, a zero threshold.
    h[0] = thr[0];
    if (n > 4) {
      h[1] = -0.f;
      thr[1] = 0.f;
      h[2] = std::nanf("");
      h[3] = -std::numeric_limits<float>::infinity();
      h[4] = 0.f;
      thr[4] = 0.f;
    }
    std::vector<float> want = h;
    uint64_t want_bits = 0;
    for (int b = 0; b < n; ++b) {
      if (std::fabs(want[b]) < thr[b]) want[b] = 0.f;
      if (want[b] != 0.f) want_bits |= uint64_t{1} << b;
    }
    const uint64_t bits = ThresholdBits(h.data(), thr.data(), n);
    EXPECT_EQ(bits, want_bits) << "n " << n;
    EXPECT_EQ(0, std::memcmp(h.data(), want.data(), n * sizeof(float))) << "n " << n;
  }
}

// Threshold mode reports how many values survived, whichever down path the batch takes.
TEST(ThresholdMode, CountsTheSurvivorsOnBothDownPaths) {
  SmallLayer L(5);
  auto be = Cpu();
  for (int T : {1, 3, 20}) {
    const auto x = Inputs(T, L.d, 40 + T);
    const LayerActivations a =
        ComputeLayerActivations(*be, L.Layer(Activation::kSilu), x.data(), T);
    for (double eps : {0.0, 0.02, 0.3}) {
      const std::vector<float> thr = NeuronThresholds(a.down_norms, eps);
      int64_t want = 0;
      for (int t = 0; t < T; ++t)
        for (int64_t k = 0; k < L.F; ++k) {
          const float h = a.x1[t * L.F + k];
          want += !(std::fabs(h) < thr[k]) && h != 0.f;
        }
      std::vector<float> y(T * L.d);
      FfnStats st;
      be->Ffn(L.Layer(Activation::kSilu, thr.data()), x.data(), T, SparsityMode::kThreshold,
              y.data(), &st);
      EXPECT_EQ(st.active_sum, want) << "T " << T << " eps " << eps;
    }
  }
}

// The one-pass curve equals Cett() at every grid point, and interpolation inverts it.
TEST(CettCurveTest, MatchesPointwiseCettAndInterpolationInvertsIt) {
  const SmallLayer L(21);
  auto backend_ptr = Cpu();
  Backend& backend = *backend_ptr;
  for (Activation act : {Activation::kSilu, Activation::kRelu2}) {
    const int T = 24;
    const auto x = Inputs(T, L.d, 5);
    const LayerActivations a = ComputeLayerActivations(backend, L.Layer(act), x.data(), T);
    const std::vector<double> grid = EpsilonGrid(a, 40);
    ASSERT_GE(grid.size(), 10u);
    EXPECT_EQ(grid.front(), 0.0);
    const std::vector<double> curve = CettCurve(a, L.down_t, grid);
    for (size_t g = 0; g < grid.size(); ++g) {
      EXPECT_NEAR(curve[g], Cett(a, L.down_t, grid[g]), 1e-9) << "grid point " << g;
      if (g) {
        EXPECT_GE(curve[g], curve[g - 1] - 1e-12);
      }
    }
    EXPECT_EQ(curve.front(), 0.0);
    EXPECT_NEAR(curve.back(), 1.0, 1e-9);  // everything dropped
    for (double target : {0.05, 0.2, 0.5}) {
      const double eps = InterpolateEpsilon(grid, curve, target);
      EXPECT_NEAR(Cett(a, L.down_t, eps), target, 0.05) << "target " << target;
    }
    // Active ratio: every non-zero at ε = 0, none past the largest output norm, monotone between.
    int64_t nonzero = 0;
    for (float v : a.x1) nonzero += v != 0.f;
    if (act == Activation::kRelu2) {
      EXPECT_LT(nonzero, static_cast<int64_t>(a.x1.size()));
    }
    EXPECT_EQ(ActiveRatio(a, 0.0), double(nonzero) / double(a.x1.size()));
    EXPECT_EQ(ActiveRatio(a, grid.back()), 0.0);
    EXPECT_GE(ActiveRatio(a, grid[3]), ActiveRatio(a, grid[20]));
  }
}

// Exact zeros of x1 are never active, at ε = 0 too; a non-zero with a zero down column is active
// only at ε = 0.
TEST(ActiveRatioTest, ExactZerosAreNeverActive) {
  LayerActivations a;
  a.tokens = 2;
  a.neurons = 4;
  a.hidden = 1;
  a.x1 = {0.f, 1.f, -0.f, 0.5f,  //
          0.f, 0.f, -2.f, 0.f};
  a.down_norms = {1.f, 1.f, 1.f, 0.f};
  EXPECT_EQ(ActiveRatio(a, 0.0), 3.0 / 8.0);
  EXPECT_EQ(ActiveRatio(a, 1e-9), 2.0 / 8.0);
  EXPECT_EQ(ActiveRatio(a, 1.5), 1.0 / 8.0);
  EXPECT_EQ(ActiveRatio(a, 3.0), 0.0);
}

}  // namespace
}  // namespace sparsed
