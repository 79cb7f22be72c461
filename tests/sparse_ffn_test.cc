// The union sparse FFN: equals dense, and a token's output is bitwise independent of its batch.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "engine/backend/cpu/cpu_backend.h"
#include "engine/model/safetensors_writer.h"
#include "tests/op_test_util.h"
#include "tests/reference/reference.h"
#include "tools/ffn_fixture.h"

namespace sparsed {
namespace {

// An FFN layer whose gate makes neuron i fire with probability rates[i] on inputs from
// Input(): channel 0 of the input is a constant 1 that the gate uses as a bias.
struct TestFfn {
  std::vector<uint8_t> gate_b, up_b, down_b;
  Matrix gate, up, down_t;
  int64_t F, d;

  TestFfn(int64_t F_, int64_t d_, double ratio, double skew, DType dt, uint64_t seed)
      : F(F_), d(d_) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> nd(0.f, 1.f / std::sqrt(float(d)));
    const std::vector<double> rates = NeuronRates(F, ratio, skew, seed);
    std::vector<float> g(F * d), u(F * d), dn(F * d);
    for (auto* v : {&g, &u, &dn}) {
      for (float& x : *v) x = nd(rng);
    }
    SetGateBias(&g, d, rates);
    gate_b = EncodeMatrix(g, F, d, dt).bytes;
    up_b = EncodeMatrix(u, F, d, dt).bytes;
    down_b = EncodeMatrix(dn, F, d, dt).bytes;
    gate = {gate_b.data(), dt, F, d, nullptr};
    up = {up_b.data(), dt, F, d, nullptr};
    down_t = {down_b.data(), dt, F, d, nullptr};
  }

  std::vector<float> Input(int T, std::mt19937_64& rng) const {
    return BiasChannelInputs(T, d, rng);
  }
  FfnLayer Layer(Activation act, float thr, bool gated = true) const {
    return FfnLayer{gated ? &gate : nullptr, gated ? &up : &gate, &down_t, act, thr};
  }
};

std::unique_ptr<CpuBackend> Cpu(double break_even, double per_token = -1, int threads = 2,
                                const std::string& isa = "") {
  BackendOptions o;
  o.threads = threads;
  o.dense_break_even = break_even;
  o.per_token_break_even = per_token;
  o.cpu_isa = isa;
  return std::make_unique<CpuBackend>(o);
}

struct Case {
  Activation act;
  double ratio;
  double skew;
  DType dtype;
};

class SparseFfn : public ::testing::TestWithParam<Case> {};

TEST_P(SparseFfn, ExactEqualsDenseAndReference) {
  const Case c = GetParam();
  TestFfn f(512, 96, c.ratio, c.skew, c.dtype, 7);
  const float thr = c.act == Activation::kFatRelu ? 0.05f : 0.f;
  auto sparse = Cpu(1.0), dense = Cpu(1.0);
  std::mt19937_64 rng(3);
  for (int T : {1, 4, 16, 64}) {
    const std::vector<float> x = f.Input(T, rng);
    std::vector<float> ys(T * f.d), yd(T * f.d);
    FfnStats st, sd;
    sparse->Ffn(f.Layer(c.act, thr), x.data(), T, SparsityMode::kExact, ys.data(), &st);
    dense->Ffn(f.Layer(c.act, thr), x.data(), T, SparsityMode::kOff, yd.data(), &sd);
    const std::vector<float> yr = ref::Ffn(x, T, &f.gate, f.up, f.down_t, c.act, thr);
    EXPECT_LT(ref::RelMaxError(ys, yr), 1e-4) << "T=" << T;
    EXPECT_LT(ref::RelMaxError(ys, yd), 1e-5) << "T=" << T;
    EXPECT_TRUE(sd.dense);
    if (IsReluFamily(c.act)) {
      // Measured ratio near the target, the union no smaller than any token's mask.
      EXPECT_NEAR(st.active_ratio(), c.ratio, 0.35 * c.ratio + 0.02) << "T=" << T;
      EXPECT_GE(st.union_ratio() + 1e-9, st.active_ratio());
      if (T == 1) {
        EXPECT_FALSE(st.dense);
        EXPECT_EQ(st.rows_skipped, f.F - st.union_size);
      }
    } else {
      EXPECT_EQ(st.union_size, f.F);  // no exact zeros: every neuron active
    }
  }
}

TEST_P(SparseFfn, BitwiseBatchInvariant) {
  const Case c = GetParam();
  TestFfn f(512, 96, c.ratio, c.skew, c.dtype, 11);
  const float thr = c.act == Activation::kFatRelu ? 0.05f : 0.f;
  // A sparse-only backend and one that always falls back to dense: results must agree bitwise.
  auto sparse = Cpu(1.0), always_dense = Cpu(0.0);
  std::mt19937_64 rng(5);
  const std::vector<float> x0 = f.Input(1, rng);
  std::vector<float> y0(f.d);
  sparse->Ffn(f.Layer(c.act, thr), x0.data(), 1, SparsityMode::kExact, y0.data(), nullptr);
  for (int B : {2, 3, 8, 17, 64}) {
    std::vector<float> xb = f.Input(B, rng);
    const int slot = static_cast<int>(rng() % B);
    std::memcpy(&xb[slot * f.d], x0.data(), f.d * sizeof(float));
    for (CpuBackend* be : {sparse.get(), always_dense.get()}) {
      std::vector<float> yb(B * f.d);
      be->Ffn(f.Layer(c.act, thr), xb.data(), B, SparsityMode::kExact, yb.data(), nullptr);
      EXPECT_EQ(0, std::memcmp(&yb[slot * f.d], y0.data(), f.d * sizeof(float)))
          << "batch " << B << " slot " << slot << " break-even " << be->dense_break_even();
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Masks, SparseFfn,
                         ::testing::Values(Case{Activation::kRelu, 0.05, 0.0, DType::kBF16},
                                           Case{Activation::kRelu, 0.11, 3.0, DType::kBF16},
                                           Case{Activation::kRelu2, 0.3, 0.0, DType::kF32},
                                           Case{Activation::kFatRelu, 0.11, 2.0, DType::kF16},
                                           Case{Activation::kSilu, 0.5, 0.0, DType::kBF16},
                                           Case{Activation::kRelu, 0.11, 3.0, DType::kQ8_0},
                                           Case{Activation::kFatRelu, 0.11, 2.0, DType::kQ4_0},
                                           Case{Activation::kSilu, 0.5, 0.0, DType::kQ8_0}),
                         [](const auto& info) {
                           const Case& c = info.param;
                           return std::string(ActivationName(c.act)) + "_r" +
                                  std::to_string(int(c.ratio * 100)) + "_skew" +
                                  std::to_string(int(c.skew)) + "_" +
                                  std::string(DTypeName(c.dtype));
                         });

// Every path a step can take — union products (register tiles over the union), per-token
// products (each token's own neurons), the dense fallback — on every ISA and thread count, at
// batch sizes up to 256, for every weight type, with shapes off the vector widths (d = 83 for
// bf16: partial vectors in every dot and every column block; quantized rows hold whole blocks,
// d = 96): a token's output is bitwise its output alone on that ISA.
class SparseFfnInvariance : public ::testing::TestWithParam<DType> {};

TEST_P(SparseFfnInvariance, EveryPathIsaThreadCountAndBatchSize) {
  TestFfn f(300, WeightCols(83, GetParam()), 0.11, 2.0, GetParam(), 21);
  const FfnLayer layer = f.Layer(Activation::kFatRelu, 0.05f);
  std::mt19937_64 rng(17);
  const std::vector<float> x0 = f.Input(1, rng);
  for (const char* isa : {"avx512", "avx2", "generic"}) {
    if (cpu::SelectKernels(isa).isa != isa) continue;
    std::vector<float> y0(f.d);
    Cpu(1.0, 0.0, 1, isa)->Ffn(layer, x0.data(), 1, SparsityMode::kExact, y0.data(), nullptr);
    struct Path {
      const char* name;
      double dense_break_even, per_token;
    };
    for (const Path& p :
         {Path{"union", 1.0, 0.0}, Path{"per-token", 1.0, 2.0}, Path{"dense fallback", 0.0, 0.0}}) {
      for (int threads : {1, 2, 3}) {
        auto be = Cpu(p.dense_break_even, p.per_token, threads, isa);
        for (int B : {2, 5, 7, 13, 64, 100, 256}) {
          std::vector<float> xb = f.Input(B, rng);
          const int slot = static_cast<int>(rng() % B);
          std::memcpy(&xb[slot * f.d], x0.data(), f.d * sizeof(float));
          std::vector<float> yb(B * f.d);
          FfnStats st;
          be->Ffn(layer, xb.data(), B, SparsityMode::kExact, yb.data(), &st);
          EXPECT_EQ(0, std::memcmp(&yb[slot * f.d], y0.data(), f.d * sizeof(float)))
              << isa << " " << p.name << " threads " << threads << " batch " << B << " slot "
              << slot;
          EXPECT_EQ(st.dense, p.dense_break_even == 0.0);
          // Against the plain reference too (a path that is invariant but wrong fails here).
          const std::vector<float> yr =
              ref::Ffn(xb, B, &f.gate, f.up, f.down_t, Activation::kFatRelu, 0.05f);
          EXPECT_LT(ref::RelMaxError(yb, yr), 1e-4) << isa << " " << p.name << " batch " << B;
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(WeightTypes, SparseFfnInvariance,
                         ::testing::Values(DType::kBF16, DType::kQ8_0, DType::kQ4_0),
                         [](const auto& info) { return std::string(DTypeName(info.param)); });

TEST(SparseFfnNonGated, MatchesReference) {
  TestFfn f(256, 64, 0.1, 0.0, DType::kBF16, 3);
  auto be = Cpu(1.0);
  std::mt19937_64 rng(9);
  const std::vector<float> x = f.Input(5, rng);
  std::vector<float> y(5 * f.d);
  FfnStats st;
  be->Ffn(f.Layer(Activation::kRelu, 0, /*gated=*/false), x.data(), 5, SparsityMode::kExact,
          y.data(), &st);
  EXPECT_LT(ref::RelMaxError(y, ref::Ffn(x, 5, nullptr, f.gate, f.down_t, Activation::kRelu, 0)),
            1e-5);
  EXPECT_LT(st.active_ratio(), 0.2);
}

}  // namespace
}  // namespace sparsed
