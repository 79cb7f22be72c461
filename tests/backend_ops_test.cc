// One harness for every Backend op (engine/backend/backend.h): each op × weight dtype × device
// against the plain reference (tests/reference/reference.h), through the Backend interface only —
// device buffers, uploads, FinishStep — so a new backend is tested by adding its name to
// kDevices. The CUDA cases skip, saying why, where no GPU answers.
//
// A device computes with the weights as it holds them: the CUDA backend rounds fp32 and fp16
// weights to bf16 at upload, so its reference uses the rounded weights. Beyond the reference:
// tests/cpu_ops_test.cc runs the CPU ops on every ISA and checks batch invariance bitwise;
// tests/gpu/cuda_ops_test.cc checks the CUDA-only paths (fused launches, cuBLAS, split attention).
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "engine/backend/device.h"
#include "engine/model/config.h"
#include "tests/op_test_util.h"
#include "tests/reference/reference.h"

namespace sparsed {
namespace {

const std::vector<std::string> kDevices = {"cpu", "cuda"};

class BackendOps : public ::testing::TestWithParam<std::tuple<std::string, DType>> {
 protected:
  void SetUp() override {
    BackendOptions o;
    o.threads = 2;
    auto b = MakeBackend(device(), o);
    if (!b.ok()) GTEST_SKIP() << device() << " backend unavailable: " << b.status();
    backend_ = std::move(*b);
  }
  const std::string& device() const { return std::get<0>(GetParam()); }
  DType dtype() const { return std::get<1>(GetParam()); }
  bool cuda() const { return device() == "cuda"; }

  // A device buffer holding `host`.
  DeviceBuffer Put(const std::vector<float>& host) {
    auto b = backend_->Alloc(host.size());
    EXPECT_TRUE(b.ok()) << b.status();
    backend_->CopyFromHost(host.data(), host.size(), b->get());
    return std::move(*b);
  }
  DeviceBuffer Zeros(size_t n) { return Put(std::vector<float>(n, 0.f)); }
  // The first n floats of `b` on the host, once the step's queued work has finished.
  std::vector<float> Get(const DeviceBuffer& b, size_t n) {
    EXPECT_TRUE(backend_->FinishStep().ok());
    std::vector<float> h(n);
    backend_->CopyToHost(b.get(), n, h.data());
    return h;
  }
  // A random weight matrix in the case's dtype, and the matrix its reference uses: the same, or
  // rounded to bf16 where the device holds bf16 weights.
  struct Weights {
    OwnedMatrix stored, computed;
  };
  Weights RandomWeights(int64_t rows, int64_t cols, float scale = 1.f) {
    std::vector<float> v = RandomVec(static_cast<size_t>(rows * cols), rng_, scale);
    Weights w{EncodeMatrix(v, rows, cols, dtype()), {}};
    std::vector<float> as_stored(v.size());
    for (size_t i = 0; i < v.size(); ++i) as_stored[i] = LoadAsF32(w.stored.m.data, dtype(), i);
    w.computed = EncodeMatrix(as_stored, rows, cols, cuda() ? DType::kBF16 : DType::kF32);
    EXPECT_TRUE(backend_->PrepareWeights({&w.stored.m}).ok());
    return w;
  }
  // Relative error bound of a product: the CPU accumulates in fp32 in its own order; the CUDA
  // kernels in theirs.
  double ProductTolerance() const { return cuda() ? 1e-4 : 2e-5; }

  std::unique_ptr<Backend> backend_;
  std::mt19937_64 rng_{42};
};

TEST_P(BackendOps, MatMulAndMatMulRows) {
  for (auto [N, K] : {std::pair{40, 64}, {300, 264}, {33, 128}}) {
    Weights w = RandomWeights(N, K, 1.f / std::sqrt(float(K)));
    for (int T : {1, 3, 8, 17}) {
      const std::vector<float> x = RandomVec(static_cast<size_t>(T) * K, rng_);
      DeviceBuffer dx = Put(x), dy = Zeros(static_cast<size_t>(T) * N);
      backend_->MatMul(dx.get(), T, w.stored.m, dy.get());
      const std::vector<float> expect = ref::MatMul(x, T, w.computed.m);
      EXPECT_LT(ref::RelMaxError(Get(dy, expect.size()), expect), ProductTolerance())
          << "T=" << T << " N=" << N << " K=" << K;

      const std::vector<int32_t> rows = {N - 1, 0, 17, N / 2, N / 2 + 1, 3};
      DeviceBuffer dr = Zeros(static_cast<size_t>(T) * rows.size());
      backend_->MatMulRows(dx.get(), T, w.stored.m, rows.data(), static_cast<int>(rows.size()),
                           dr.get());
      std::vector<float> expect_rows;
      for (int t = 0; t < T; ++t)
        for (int32_t r : rows) expect_rows.push_back(expect[static_cast<size_t>(t) * N + r]);
      EXPECT_LT(ref::RelMaxError(Get(dr, expect_rows.size()), expect_rows), ProductTolerance())
          << "rows T=" << T << " N=" << N << " K=" << K;
    }
  }
}

TEST_P(BackendOps, MatMul3IsThreeProducts) {
  const int K = 128;
  Weights a = RandomWeights(96, K, 0.1f), b = RandomWeights(32, K, 0.1f),
          c = RandomWeights(32, K, 0.1f);
  for (int T : {1, 5, 16}) {
    const std::vector<float> x = RandomVec(static_cast<size_t>(T) * K, rng_);
    DeviceBuffer dx = Put(x), ya = Zeros(T * 96), yb = Zeros(T * 32), yc = Zeros(T * 32);
    backend_->MatMul3(dx.get(), T, a.stored.m, ya.get(), b.stored.m, yb.get(), c.stored.m,
                      yc.get());
    for (auto [y, w, n] : {std::tuple{&ya, &a, 96}, {&yb, &b, 32}, {&yc, &c, 32}}) {
      const std::vector<float> expect = ref::MatMul(x, T, w->computed.m);
      EXPECT_LT(ref::RelMaxError(Get(*y, static_cast<size_t>(T) * n), expect), ProductTolerance())
          << "T=" << T << " rows=" << n;
    }
  }
}

TEST_P(BackendOps, EmbedRmsNormAndAddScaled) {
  const int T = 5, d = 264;
  Weights table = RandomWeights(50, d);
  const std::vector<int32_t> ids = {49, 0, 7, 7, 20};
  DeviceBuffer e = Zeros(T * d);
  backend_->Embed(table.stored.m, ids.data(), T, 1.5f, e.get());
  std::vector<float> expect(T * d);
  for (int t = 0; t < T; ++t)
    for (int i = 0; i < d; ++i)
      expect[t * d + i] = 1.5f * LoadAsF32(table.computed.m.Row(ids[t]), table.computed.m.dtype, i);
  EXPECT_EQ(Get(e, T * d), expect);  // a widening times a scale: exact

  const std::vector<float> x = RandomVec(T * d, rng_, 3.f), w = RandomVec(d, rng_);
  DeviceBuffer dx = Put(x), out = Zeros(T * d);
  backend_->RmsNorm(dx.get(), w.data(), T, d, 1e-5f, out.get());
  const std::vector<float> normed = ref::RmsNorm(x, T, w, 1e-5);
  EXPECT_LT(ref::RelMaxError(Get(out, T * d), normed), 1e-5);

  backend_->AddScaled(dx.get(), out.get(), T * d, 0.25f);
  const std::vector<float> got = Get(dx, T * d), out_host = Get(out, T * d);
  std::vector<float> sum(T * d);
  for (int i = 0; i < T * d; ++i) sum[i] = x[i] + 0.25f * out_host[i];
  EXPECT_LT(ref::RelMaxError(got, sum), 1e-6);
}

TEST_P(BackendOps, RopeRotatesHalves) {
  const int T = 3, H = 4, KV = 2, hd = 64;
  const std::vector<int> pos = {0, 7, 1000};
  std::vector<float> q = RandomVec(T * H * hd, rng_), k = RandomVec(T * KV * hd, rng_);
  std::vector<float> q_ref = q, k_ref = k, cos, sin;
  ref::RopeTables(pos, hd, 10000.0, &cos, &sin);
  ref::RopeHeads(q_ref, k_ref, pos, H, KV, hd, 10000.0);
  DeviceBuffer dq = Put(q), dk = Put(k);
  backend_->Rope(dq.get(), dk.get(), cos.data(), sin.data(), T, H, KV, hd);
  EXPECT_LT(ref::RelMaxError(Get(dq, q.size()), q_ref), 1e-5);
  EXPECT_LT(ref::RelMaxError(Get(dk, k.size()), k_ref), 1e-5);
}

// Two sequences in scattered cache blocks: a prefill step of both, then two decode steps, each
// reading what the earlier steps cached. bf16 cases run a bf16 KV cache; the reference then
// attends over K and V rounded to bf16.
TEST_P(BackendOps, PagedAttentionOverPrefillAndDecode) {
  const int H = 6, KV = 2, hd = 64, bs = 4;
  KvCacheShape shape{2, 16, bs, KV, hd};
  shape.dtype = dtype() == DType::kBF16 ? DType::kBF16 : DType::kF32;
  ASSERT_TRUE(backend_->AllocKvCache(shape).ok());
  const AttentionSchedule schedule;
  // Every token of both sequences so far, for the reference: A's then B's.
  std::vector<float> q_all[2], k_all[2], v_all[2];
  auto cached = [&](std::vector<float> v) {
    if (shape.dtype == DType::kBF16)
      for (float& x : v) x = Bf16ToF32(F32ToBf16(x));
    return v;
  };
  for (const AttentionSchedule::Step& s : schedule.steps) {
    const int T = s.tokens();
    const AttentionBatch batch = s.batch();
    const std::vector<float> q = RandomVec(T * H * hd, rng_), k = RandomVec(T * KV * hd, rng_),
                             v = RandomVec(T * KV * hd, rng_);
    DeviceBuffer dq = Put(q), dk = Put(k), dv = Put(v), out = Zeros(T * H * hd);
    const std::vector<float> trig(T * hd / 2, 0.f);
    backend_->BeginStep(batch, trig.data(), trig.data());
    backend_->Attention(1, dq.get(), dk.get(), dv.get(), batch, H, out.get());
    const std::vector<float> got = Get(out, T * H * hd);
    // Append this step's tokens to their sequences, then attend over each sequence alone.
    for (int t = 0; t < T; ++t) {
      const int seq = s.tables[t] == &schedule.table_a ? 0 : 1;
      auto append = [&](std::vector<float>& all, const std::vector<float>& src, int width) {
        all.insert(all.end(), src.begin() + t * width, src.begin() + (t + 1) * width);
      };
      append(q_all[seq], q, H * hd);
      append(k_all[seq], cached(k), KV * hd);
      append(v_all[seq], cached(v), KV * hd);
    }
    for (int t = 0; t < T; ++t) {
      const int seq = s.tables[t] == &schedule.table_a ? 0 : 1;
      const int n = static_cast<int>(k_all[seq].size() / (KV * hd));
      const std::vector<float> expect = ref::CausalAttention(q_all[seq], k_all[seq], v_all[seq],
                                                             std::vector<int>(n, 0), H, KV, hd);
      const int p = s.positions[t];
      const std::vector<float> want(expect.begin() + p * H * hd, expect.begin() + (p + 1) * H * hd);
      const std::vector<float> have(got.begin() + t * H * hd, got.begin() + (t + 1) * H * hd);
      EXPECT_LT(ref::RelMaxError(have, want), 1e-5) << "T=" << T << " t=" << t;
    }
  }
}

// The gated FFN in exact mode (union sparse products: the result of the dense FFN, whose
// zeros it skips) and off (dense), for the ReLU family and SiLU, at decode and prefill sizes.
TEST_P(BackendOps, FfnExactAndDenseMatchTheDenseReference) {
  const int64_t F = 520, d = 128;
  Weights gate = RandomWeights(F, d, 1.f / std::sqrt(float(d))),
          up = RandomWeights(F, d, 1.f / std::sqrt(float(d))),
          down = RandomWeights(F, d, 1.f / std::sqrt(float(F)));
  for (Activation act : {Activation::kRelu2, Activation::kFatRelu, Activation::kSilu}) {
    const float thr = act == Activation::kFatRelu ? 0.05f : 0.f;
    FfnLayer layer{&gate.stored.m, &up.stored.m, &down.stored.m, act, thr, nullptr};
    ASSERT_TRUE(backend_->PrepareFfn(layer).ok());
    for (SparsityMode mode : {SparsityMode::kExact, SparsityMode::kOff}) {
      if (mode == SparsityMode::kExact && act == Activation::kSilu) continue;
      for (int T : {1, 4, 33}) {
        const std::vector<float> x = RandomVec(static_cast<size_t>(T) * d, rng_);
        DeviceBuffer dx = Put(x), dy = Zeros(static_cast<size_t>(T) * d);
        FfnStats stats;
        backend_->Ffn(layer, dx.get(), T, mode, dy.get(), &stats);
        const std::vector<float> expect =
            ref::Ffn(x, T, &gate.computed.m, up.computed.m, down.computed.m, act, thr);
        EXPECT_LT(ref::RelMaxError(Get(dy, expect.size()), expect), cuda() ? 1e-4 : 5e-5)
            << ActivationName(act) << " " << SparsityModeName(mode) << " T=" << T;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(EveryDeviceAndDtype, BackendOps,
                         ::testing::Combine(::testing::ValuesIn(kDevices),
                                            ::testing::Values(DType::kF32, DType::kBF16,
                                                              DType::kF16)),
                         NameAndDtype);

}  // namespace
}  // namespace sparsed
