// The CUDA backend's operations against the CPU backend's on the same inputs: products (fused
// launches and the cuBLAS path included), embedding, norms, rotary embeddings, paged attention
// (split contexts included) and the FFN in every sparsity mode. Both read the same bf16 weights
// and compute in fp32; only summation orders differ, so the tolerances are fp32-sized (the cuBLAS
// path, bf16 activations, gets a bf16-sized one). Every op against the reference on every device:
// tests/backend_ops_test.cc.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "engine/backend/cpu/cpu_backend.h"
#include "engine/backend/device.h"
#include "engine/engine.h"
#include "tests/gpu/cuda_test_util.h"
#include "tests/op_test_util.h"
#include "tests/reference/reference.h"
#include "tools/ffn_fixture.h"

namespace sparsed {
namespace {

class CudaOps : public ::testing::Test {
 protected:
  void SetUp() override {
    auto c = MakeBackend("cuda", BackendOptions{});
    ASSERT_TRUE(c.ok()) << c.status();
    cuda_ = std::move(*c);
    cpu_ = MakeCpuBackend(BackendOptions{});
  }
  // A buffer on each backend holding `host` (or n zeros).
  struct Pair {
    DeviceBuffer cpu, cuda;
    size_t n = 0;
  };
  Pair Make(const std::vector<float>& host) {
    Pair p;
    p.n = host.size();
    p.cpu = *cpu_->Alloc(p.n);
    p.cuda = *cuda_->Alloc(p.n);
    cpu_->CopyFromHost(host.data(), p.n, p.cpu.get());
    cuda_->CopyFromHost(host.data(), p.n, p.cuda.get());
    return p;
  }
  Pair Zeros(size_t n) { return Make(std::vector<float>(n, 0.f)); }
  // Both results on the host: {cuda, cpu}. Finishes the CUDA step first.
  std::pair<std::vector<float>, std::vector<float>> Read(const Pair& p) {
    EXPECT_TRUE(cuda_->FinishStep().ok());
    std::vector<float> a(p.n), b(p.n);
    cuda_->CopyToHost(p.cuda.get(), p.n, a.data());
    cpu_->CopyToHost(p.cpu.get(), p.n, b.data());
    return {a, b};
  }
  std::unique_ptr<Backend> cuda_, cpu_;
};

struct Bf16Matrix {
  std::vector<uint16_t> bits;
  Matrix m;
  Bf16Matrix(int64_t rows, int64_t cols, uint64_t seed) {
    const std::vector<float> f = RandomFloats(rows * cols, seed, 1.f / std::sqrt(float(cols)));
    for (float x : f) bits.push_back(F32ToBf16(x));
    m = Matrix{bits.data(), DType::kBF16, rows, cols, nullptr};
  }
};

TEST_F(CudaOps, MatMulAndMatMulRowsMatchCpu) {
  const int64_t n = 300, cols = 264;  // off the kernels' multiples of 32 rows and 256 columns
  Bf16Matrix w(n, cols, 7);
  ASSERT_TRUE(cuda_->PrepareWeights({&w.m}).ok());
  for (int T : {1, 2, 3, 8, 17, 40}) {
    Pair x = Make(RandomFloats(T * cols, T)), y = Zeros(T * n);
    cuda_->MatMul(x.cuda.get(), T, w.m, y.cuda.get());
    cpu_->MatMul(x.cpu.get(), T, w.m, y.cpu.get());
    auto [a, b] = Read(y);
    EXPECT_LT(ref::RelMaxError(a, b), 1e-5) << "T=" << T;
    const std::vector<int32_t> rows = {299, 0, 17, 150, 151, 3};
    Pair yr = Zeros(T * rows.size());
    cuda_->MatMulRows(x.cuda.get(), T, w.m, rows.data(), rows.size(), yr.cuda.get());
    cpu_->MatMulRows(x.cpu.get(), T, w.m, rows.data(), rows.size(), yr.cpu.get());
    auto [c, d] = Read(yr);
    EXPECT_LT(ref::RelMaxError(c, d), 1e-5) << "rows T=" << T;
  }
}

TEST_F(CudaOps, FusedProductsEqualSeparateOnesAndCublasIsClose) {
  const int64_t cols = 264;
  Bf16Matrix a(300, cols, 21), b(40, cols, 22), c(72, cols, 23);
  for (int T : {1, 5, 16, 33}) {
    Pair x = Make(RandomFloats(T * cols, 30 + T));
    Pair ya = Zeros(T * 300), yb = Zeros(T * 40), yc = Zeros(T * 72);
    Pair sa = Zeros(T * 300), sb = Zeros(T * 40), sc = Zeros(T * 72);
    cuda_->MatMul3(x.cuda.get(), T, a.m, ya.cuda.get(), b.m, yb.cuda.get(), c.m, yc.cuda.get());
    cuda_->MatMul(x.cuda.get(), T, a.m, sa.cuda.get());
    cuda_->MatMul(x.cuda.get(), T, b.m, sb.cuda.get());
    cuda_->MatMul(x.cuda.get(), T, c.m, sc.cuda.get());
    for (auto [fused, separate] : {std::pair{&ya, &sa}, {&yb, &sb}, {&yc, &sc}}) {
      EXPECT_EQ(Read(*fused).first, Read(*separate).first) << "T=" << T;
    }
  }
  BackendOptions o;
  o.cublas_min_tokens = 4;
  auto blas = MakeBackend("cuda", o);
  ASSERT_TRUE(blas.ok()) << blas.status();
  for (int T : {3, 4, 40}) {  // 3: our kernel; 4 and 40: cuBLAS, bf16-rounded activations
    std::vector<float> xh = RandomFloats(T * cols, 50 + T);
    DeviceBuffer x = *(*blas)->Alloc(xh.size()), y = *(*blas)->Alloc(T * 300);
    (*blas)->CopyFromHost(xh.data(), xh.size(), x.get());
    (*blas)->MatMul(x.get(), T, a.m, y.get());
    ASSERT_TRUE((*blas)->FinishStep().ok());
    std::vector<float> got(T * 300), want(T * 300);
    (*blas)->CopyToHost(y.get(), got.size(), got.data());
    cpu_->MatMul(xh.data(), T, a.m, want.data());
    EXPECT_LT(ref::RelMaxError(got, want), T >= 4 ? 1e-2 : 1e-5) << "T=" << T;
  }
}

TEST_F(CudaOps, EmbedNormRopeAndResidualMatchCpu) {
  const int T = 5, d = 264, heads = 4, kv = 2, hd = 64;
  Bf16Matrix table(50, d, 3);
  const std::vector<int32_t> ids = {49, 0, 7, 7, 20};
  Pair e = Zeros(T * d);
  cuda_->Embed(table.m, ids.data(), T, 1.5f, e.cuda.get());
  cpu_->Embed(table.m, ids.data(), T, 1.5f, e.cpu.get());
  auto [ea, eb] = Read(e);
  EXPECT_EQ(ea, eb);  // a bf16 widening times a scale: exact on both

  const std::vector<float> w = RandomFloats(d, 4);
  Pair x = Make(RandomFloats(T * d, 5, 3.f)), out = Zeros(T * d);
  cuda_->RmsNorm(x.cuda.get(), w.data(), T, d, 1e-5f, out.cuda.get());
  cpu_->RmsNorm(x.cpu.get(), w.data(), T, d, 1e-5f, out.cpu.get());
  auto [na, nb] = Read(out);
  EXPECT_LT(ref::RelMaxError(na, nb), 1e-6);

  cuda_->AddScaled(x.cuda.get(), out.cuda.get(), T * d, 0.25f);
  cpu_->AddScaled(x.cpu.get(), out.cpu.get(), T * d, 0.25f);
  auto [ra, rb] = Read(x);
  EXPECT_LT(ref::RelMaxError(ra, rb), 1e-6);

  const std::vector<float> cos = RandomFloats(T * hd / 2, 6), sin = RandomFloats(T * hd / 2, 7);
  Pair q = Make(RandomFloats(T * heads * hd, 8)), k = Make(RandomFloats(T * kv * hd, 9));
  cuda_->Rope(q.cuda.get(), k.cuda.get(), cos.data(), sin.data(), T, heads, kv, hd);
  cpu_->Rope(q.cpu.get(), k.cpu.get(), cos.data(), sin.data(), T, heads, kv, hd);
  auto [qa, qb] = Read(q);
  auto [ka, kb] = Read(k);
  EXPECT_LT(ref::RelMaxError(qa, qb), 1e-6);
  EXPECT_LT(ref::RelMaxError(ka, kb), 1e-6);
}

TEST_F(CudaOps, PagedAttentionMatchesCpu) {
  const KvCacheShape shape{2, 16, 4, 2, 64};
  const int heads = 6, hd = shape.head_dim, kvd = shape.kv_heads * hd;
  ASSERT_TRUE(cuda_->AllocKvCache(shape).ok());
  ASSERT_TRUE(cpu_->AllocKvCache(shape).ok());
  const AttentionSchedule schedule;
  uint64_t seed = 100;
  for (const AttentionSchedule::Step& s : schedule.steps) {
    const int T = s.tokens();
    const AttentionBatch ab = s.batch();
    Pair q = Make(RandomFloats(T * heads * hd, ++seed)), k = Make(RandomFloats(T * kvd, ++seed)),
         v = Make(RandomFloats(T * kvd, ++seed)), out = Zeros(T * heads * hd);
    const std::vector<float> trig(T * hd / 2, 0.f);
    cuda_->BeginStep(ab, trig.data(), trig.data());
    cuda_->Attention(1, q.cuda.get(), k.cuda.get(), v.cuda.get(), ab, heads, out.cuda.get());
    cpu_->Attention(1, q.cpu.get(), k.cpu.get(), v.cpu.get(), ab, heads, out.cpu.get());
    auto [a, b] = Read(out);
    EXPECT_LT(ref::RelMaxError(a, b), 1e-5) << "T=" << T;
  }
}

// Contexts longer than one attention split (128 positions) take the split-and-merge path; a
// token's output is the same alone and beside a long prefill.
TEST_F(CudaOps, LongContextAttentionMatchesCpuAndIsBatchInvariant) {
  const KvCacheShape shape{1, 64, 16, 2, 64};
  const int heads = 4, hd = shape.head_dim, kvd = shape.kv_heads * hd;
  ASSERT_TRUE(cuda_->AllocKvCache(shape).ok());
  ASSERT_TRUE(cpu_->AllocKvCache(shape).ok());
  std::vector<int32_t> table_a, table_b;
  for (int b = 0; b < 32; ++b) table_a.push_back(63 - 2 * b);  // scattered, descending
  for (int b = 0; b < 32; ++b) table_b.push_back(2 * b);
  uint64_t seed = 500;
  auto step = [&](const std::vector<int32_t>& positions,
                  const std::vector<const std::vector<int32_t>*>& tables, std::vector<float>* gpu,
                  std::vector<float>* cpu) {
    const int T = static_cast<int>(positions.size());
    const AttentionBatch ab{T, positions.data(), tables.data()};
    Pair q = Make(RandomFloats(T * heads * hd, ++seed)), k = Make(RandomFloats(T * kvd, ++seed)),
         v = Make(RandomFloats(T * kvd, ++seed)), out = Zeros(T * heads * hd);
    cuda_->Attention(0, q.cuda.get(), k.cuda.get(), v.cuda.get(), ab, heads, out.cuda.get());
    cpu_->Attention(0, q.cpu.get(), k.cpu.get(), v.cpu.get(), ab, heads, out.cpu.get());
    std::tie(*gpu, *cpu) = Read(out);
  };
  // A prefills 300 positions in three chunks of 100 (the last reaches three splits).
  std::vector<float> g, c;
  for (int chunk = 0; chunk < 3; ++chunk) {
    std::vector<int32_t> pos;
    for (int p = chunk * 100; p < chunk * 100 + 100; ++p) pos.push_back(p);
    step(pos, std::vector<const std::vector<int32_t>*>(100, &table_a), &g, &c);
    EXPECT_LT(ref::RelMaxError(g, c), 1e-5) << "chunk " << chunk;
  }
  // A decodes position 300 alone; then the same (rewritten) position beside B's 150-token
  // prefill. The q/k/v seeds repeat, so A's inputs are identical both times.
  const uint64_t seed_before = seed;
  std::vector<float> alone, alone_cpu;
  step({300}, {&table_a}, &alone, &alone_cpu);
  EXPECT_LT(ref::RelMaxError(alone, alone_cpu), 1e-5);
  seed = seed_before;
  std::vector<int32_t> pos = {300};
  std::vector<const std::vector<int32_t>*> tables = {&table_a};
  for (int p = 0; p < 150; ++p) pos.push_back(p), tables.push_back(&table_b);
  // Same seeds → row 0 of q, k, v equals the alone step's single row.
  const int T = static_cast<int>(pos.size());
  std::vector<float> qh = RandomFloats(heads * hd, seed + 1), kh = RandomFloats(kvd, seed + 2),
                     vh = RandomFloats(kvd, seed + 3);
  const std::vector<float> rest_q = RandomFloats((T - 1) * heads * hd, 900),
                           rest_k = RandomFloats((T - 1) * kvd, 901),
                           rest_v = RandomFloats((T - 1) * kvd, 902);
  qh.insert(qh.end(), rest_q.begin(), rest_q.end());
  kh.insert(kh.end(), rest_k.begin(), rest_k.end());
  vh.insert(vh.end(), rest_v.begin(), rest_v.end());
  Pair q = Make(qh), k = Make(kh), v = Make(vh), out = Zeros(T * heads * hd);
  const AttentionBatch ab{T, pos.data(), tables.data()};
  cuda_->Attention(0, q.cuda.get(), k.cuda.get(), v.cuda.get(), ab, heads, out.cuda.get());
  cpu_->Attention(0, q.cpu.get(), k.cpu.get(), v.cpu.get(), ab, heads, out.cpu.get());
  auto [bg, bc] = Read(out);
  EXPECT_LT(ref::RelMaxError(bg, bc), 1e-5);
  EXPECT_EQ(0, std::memcmp(alone.data(), bg.data(), heads * hd * sizeof(float)));
}

TEST_F(CudaOps, FfnMatchesCpuInEveryMode) {
  const int64_t F = 1100, d = 264;
  SyntheticFfn f(F, d, 11);
  std::vector<double> rates(F);
  std::mt19937_64 rr(3);
  for (double& r : rates) r = std::uniform_real_distribution<double>(0.02, 0.3)(rr);
  f.SetRates(rates);
  const Matrix gate{f.gate.data(), DType::kBF16, F, d, nullptr};
  const Matrix up{f.up.data(), DType::kBF16, F, d, nullptr};
  const Matrix down{f.down_t.data(), DType::kBF16, F, d, nullptr};
  std::vector<float> thresholds(F);
  for (int64_t i = 0; i < F; ++i) thresholds[i] = 0.02f * float(i % 7);
  std::mt19937_64 rng(5);
  for (Activation act : {Activation::kRelu2, Activation::kFatRelu, Activation::kSilu}) {
    FfnLayer layer{&gate, &up, &down, act, act == Activation::kFatRelu ? 0.05f : 0.f, nullptr};
    ASSERT_TRUE(cuda_->PrepareFfn(layer).ok());
    for (SparsityMode mode : {SparsityMode::kExact, SparsityMode::kOff, SparsityMode::kThreshold}) {
      if (mode == SparsityMode::kExact && act == Activation::kSilu) continue;
      layer.neuron_thresholds = mode == SparsityMode::kThreshold ? thresholds.data() : nullptr;
      for (int T : {1, 5, 16, 33, 70}) {  // 70: two slabs on CUDA
        Pair x = Make(f.Inputs(T, rng)), y = Zeros(T * d);
        FfnStats sa, sb;
        cuda_->Ffn(layer, x.cuda.get(), T, mode, y.cuda.get(), &sa);
        cpu_->Ffn(layer, x.cpu.get(), T, mode, y.cpu.get(), &sb);
        auto [a, b] = Read(y);
        const std::string what = std::string(ActivationName(act)) + " " +
                                 std::string(SparsityModeName(mode)) + " T=" + std::to_string(T);
        // Threshold mode compares |x1| with a threshold: a product within rounding of one may
        // land on either side, so it gets a looser bound.
        EXPECT_LT(ref::RelMaxError(a, b), mode == SparsityMode::kThreshold ? 2e-3 : 1e-4) << what;
        EXPECT_EQ(sa.tokens, T) << what;
        EXPECT_EQ(sa.neurons, F) << what;
        if (mode == SparsityMode::kExact) {
          EXPECT_NEAR(sa.active_ratio(), sb.active_ratio(), 0.01) << what;
          EXPECT_GT(sa.union_size, 0) << what;
        }
      }
    }
  }
}

}  // namespace
}  // namespace sparsed
