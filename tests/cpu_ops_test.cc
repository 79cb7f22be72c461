// Every CPU op against the scalar reference, on every ISA the machine runs, for every weight type
// (block-quantized ones with row lengths rounded up to whole blocks: WeightCols).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <tuple>

#include "engine/backend/cpu/cpu_backend.h"
#include "engine/common/panel.h"
#include "engine/common/quantize.h"
#include "tests/op_test_util.h"
#include "tests/reference/reference.h"

namespace sparsed {
namespace {

class CpuOps : public ::testing::TestWithParam<std::tuple<std::string, DType>> {
 protected:
  void SetUp() override {
    const std::string isa = std::get<0>(GetParam());
    if (cpu::SelectKernels(isa).isa != isa) GTEST_SKIP() << "this CPU lacks " << isa;
    BackendOptions o;
    o.cpu_isa = isa;
    o.threads = 2;
    backend_ = std::make_unique<CpuBackend>(o);
  }
  DType dtype() const { return std::get<1>(GetParam()); }
  int Cols(int cols) const { return WeightCols(cols, dtype()); }
  std::unique_ptr<CpuBackend> backend_;
  std::mt19937_64 rng_{42};
};

TEST_P(CpuOps, MatMulMatchesReference) {
  for (int T : {1, 3, 4, 5, 17}) {
    for (auto [N, k] : {std::pair{7, 64}, {33, 100}, {64, 37}, {129, 256}}) {
      const int K = Cols(k);
      OwnedMatrix w = RandomMatrix(N, K, dtype(), rng_);
      std::vector<float> x = RandomVec(static_cast<size_t>(T) * K, rng_);
      std::vector<float> y(static_cast<size_t>(T) * N, NAN);
      backend_->MatMul(x.data(), T, w.m, y.data());
      EXPECT_LT(ref::RelMaxError(y, ref::MatMul(x, T, w.m)), 2e-5)
          << "T=" << T << " N=" << N << " K=" << K;
    }
  }
}

// The register-blocked products at every batch size the engine sends (decode batches, prefill
// chunks), with K and the output width off the vector widths: each token's row of the result
// is bitwise its result alone, whatever the batch size, the rows gathered or the thread count.
TEST_P(CpuOps, ProductsBitwiseInvariantUpTo256Tokens) {
  const std::string isa = std::get<0>(GetParam());
  const int N = 45, K = Cols(83), F = 70, d = Cols(83);
  OwnedMatrix w = RandomMatrix(N, K, dtype(), rng_);
  OwnedMatrix wd = RandomMatrix(F, d, dtype(), rng_);
  const std::vector<int32_t> rows = {0, 2, 3, 9, 10, 11, 12, 30, 31, 44};
  const int n = static_cast<int>(rows.size());
  for (int threads : {1, 3}) {
    BackendOptions o;
    o.cpu_isa = isa;
    o.threads = threads;
    CpuBackend be(o);
    for (int T : {1, 2, 3, 6, 7, 12, 17, 64, 129, 256}) {
      const std::vector<float> x = RandomVec(static_cast<size_t>(T) * K, rng_);
      std::vector<float> h = RandomVec(static_cast<size_t>(T) * F, rng_);
      for (size_t i = 0; i < h.size(); i += 3) h[i] = 0.f;  // per-token zeros
      std::vector<float> y(static_cast<size_t>(T) * N), yg(static_cast<size_t>(T) * n),
          yd(static_cast<size_t>(T) * d, 0.f);
      be.MatMul(x.data(), T, w.m, y.data());
      be.MatMulRows(x.data(), T, w.m, rows.data(), n, yg.data());
      be.AxpyRows(h.data(), F, T, F, nullptr, wd.m, yd.data(), /*skip_zero_rows=*/true);
      EXPECT_LT(ref::RelMaxError(y, ref::MatMul(x, T, w.m)), 2e-5) << "T=" << T;
      for (int t = 0; t < T; ++t) {
        std::vector<float> y1(N), yg1(n), yd1(d, 0.f);
        be.MatMul(x.data() + t * K, 1, w.m, y1.data());
        be.MatMulRows(x.data() + t * K, 1, w.m, rows.data(), n, yg1.data());
        be.AxpyRows(h.data() + t * F, F, 1, F, nullptr, wd.m, yd1.data(), true);
        ASSERT_EQ(0, std::memcmp(y1.data(), &y[t * N], N * sizeof(float)))
            << "MatMul T=" << T << " token " << t << " threads " << threads;
        ASSERT_EQ(0, std::memcmp(yg1.data(), &yg[t * n], n * sizeof(float)))
            << "MatMulRows T=" << T << " token " << t << " threads " << threads;
        ASSERT_EQ(0, std::memcmp(yd1.data(), &yd[t * d], d * sizeof(float)))
            << "AxpyRows T=" << T << " token " << t << " threads " << threads;
        for (int c = 0; c < d; ++c) {
          double e = 0;
          for (int i = 0; i < F; ++i)
            e += double(h[t * F + i]) * LoadAsF32(wd.m.Row(i), dtype(), c);
          ASSERT_NEAR(yd[t * d + c], e, 1e-4 * (1 + std::fabs(e))) << "T=" << T << " c=" << c;
        }
      }
    }
  }
}

// Row panels (panel.h), the dense products' layout for block types: the values of the row-major
// matrix, and the product of kernels.h's dot_panels_q bit for bit — one exact integer dot per
// block, one fp32 accumulator per (row, token), fused on the SIMD tables — at every batch size
// and thread count, rows off a multiple of eight.
TEST_P(CpuOps, RowPanelsComputeTheirStatedSumBitwise) {
  if (!IsBlockQuantized(dtype())) GTEST_SKIP() << "row panels hold block types only";
  const std::string isa = std::get<0>(GetParam());
  const bool fused = isa != "generic";
  for (auto [N, k] : {std::pair{7, 64}, {45, 83}, {129, 256}}) {
    const int K = Cols(k), nb = K / static_cast<int>(kQuantBlock);
    OwnedMatrix w = RandomMatrix(N, K, dtype(), rng_);
    const Matrix p = ToPanels(w.m);
    ASSERT_TRUE(p.panels);
    ASSERT_EQ(p.bytes(), static_cast<size_t>(PanelCount(N) * kPanelRows) * w.m.row_bytes());
    for (int r = 0; r < N; ++r)
      for (int c = 0; c < K; ++c)
        ASSERT_EQ(MatrixElementAsF32(p, r, c), LoadAsF32(w.m.Row(r), dtype(), c)) << r << "," << c;
    for (int threads : {1, 3}) {
      BackendOptions o;
      o.cpu_isa = isa;
      o.threads = threads;
      CpuBackend be(o);
      for (int T : {1, 2, 3, 5, 6, 7, 12, 17, 64, 129, 256}) {
        std::vector<float> x = RandomVec(static_cast<size_t>(T) * K, rng_);
        x[0] = 0.f;  // a token block with a zero, and one all zero
        if (T > 1) std::fill(x.begin() + K, x.begin() + K + kQuantBlock, 0.f);
        std::vector<float> y(static_cast<size_t>(T) * N, NAN);
        be.MatMul(x.data(), T, p, y.data());
        std::vector<int8_t> xq(K);
        std::vector<float> xd(nb);
        for (int t = 0; t < T; ++t) {
          QuantizeActivationRow(x.data() + t * K, K, xq.data(), xd.data());
          for (int r = 0; r < N; ++r) {
            float acc = 0.f;
            const auto* row = static_cast<const uint8_t*>(w.m.Row(r));
            for (int b = 0; b < nb; ++b) {
              const uint8_t* blk = row + b * QuantBlockBytes(dtype());
              int32_t sum = 0;
              for (int j = 0; j < kQuantBlock; ++j)
                sum += BlockCode(blk, dtype(), j) * int32_t{xq[b * kQuantBlock + j]};
              uint16_t h;
              std::memcpy(&h, blk, 2);
              const float s = F16ToF32(h) * xd[b];
              acc = fused ? std::fma(static_cast<float>(sum), s, acc)
                          : static_cast<float>(sum) * s + acc;
            }
            ASSERT_EQ(acc, y[t * N + r])
                << "N=" << N << " T=" << T << " t=" << t << " r=" << r << " threads=" << threads;
          }
        }
      }
    }
  }
}

TEST_P(CpuOps, MatMulRowsGathersRows) {
  const int T = 6, N = 90, K = Cols(80);
  OwnedMatrix w = RandomMatrix(N, K, dtype(), rng_);
  std::vector<float> x = RandomVec(T * K, rng_);
  std::vector<int32_t> rows = {0, 3, 4, 17, 50, 89};
  std::vector<float> y(T * rows.size(), NAN);
  backend_->MatMulRows(x.data(), T, w.m, rows.data(), static_cast<int>(rows.size()), y.data());
  const std::vector<float> full = ref::MatMul(x, T, w.m);
  for (int t = 0; t < T; ++t) {
    for (size_t i = 0; i < rows.size(); ++i) {
      EXPECT_NEAR(y[t * rows.size() + i], full[t * N + rows[i]],
                  2e-5 * (1 + std::fabs(full[t * N + rows[i]])));
    }
  }
}

TEST_P(CpuOps, AxpyRowsSumsSelectedRowsInOrder) {
  const cpu::KernelTable& k = cpu::SelectKernels(std::get<0>(GetParam()));
  const int T = 5, F = 70, d = Cols(83);
  OwnedMatrix w = RandomMatrix(F, d, dtype(), rng_);
  std::vector<int32_t> rows = {1, 2, 9, 33, 69};
  std::vector<float> h = RandomVec(T * rows.size(), rng_);
  h[2] = 0.f;                                                // skipped entries
  for (int t = 0; t < T; ++t) h[t * rows.size() + 3] = 0.f;  // a row zero for every token
  std::vector<float> y(T * d, 0.f), expect(T * d, 0.f);
  std::vector<float> y_dense(T * d, 0.f);
  k.axpy_rows(h.data(), static_cast<int64_t>(rows.size()), T, static_cast<int64_t>(rows.size()),
              rows.data(), w.m.data, dtype(), d, 0, d, y.data(), d, /*skip_zero_rows=*/true);
  k.axpy_rows(h.data(), static_cast<int64_t>(rows.size()), T, static_cast<int64_t>(rows.size()),
              rows.data(), w.m.data, dtype(), d, 0, d, y_dense.data(), d, /*skip_zero_rows=*/false);
  EXPECT_EQ(y, y_dense);  // reading zero rows adds exact zeros
  for (int t = 0; t < T; ++t) {
    for (size_t i = 0; i < rows.size(); ++i) {
      for (int c = 0; c < d; ++c)
        expect[t * d + c] += h[t * rows.size() + i] * LoadAsF32(w.m.Row(rows[i]), dtype(), c);
    }
  }
  EXPECT_LT(ref::RelMaxError(y, expect), 1e-5);
}

TEST_P(CpuOps, RmsNormEmbedAndResidual) {
  const int T = 3, d = Cols(50);
  std::vector<float> x = RandomVec(T * d, rng_), w = RandomVec(d, rng_), y(T * d);
  backend_->RmsNorm(x.data(), w.data(), T, d, 1e-5f, y.data());
  EXPECT_LT(ref::RelMaxError(y, ref::RmsNorm(x, T, w, 1e-5)), 1e-5);

  OwnedMatrix table = RandomMatrix(20, d, dtype(), rng_);
  std::vector<int32_t> ids = {4, 19, 0};
  backend_->Embed(table.m, ids.data(), T, 2.f, y.data());
  for (int t = 0; t < T; ++t)
    EXPECT_EQ(y[t * d + 7], 2.f * LoadAsF32(table.m.Row(ids[t]), dtype(), 7));

  std::vector<float> acc = x;
  backend_->AddScaled(acc.data(), w.data(), d, 0.5f);
  EXPECT_FLOAT_EQ(acc[3], x[3] + 0.5f * w[3]);
}

TEST_P(CpuOps, RopeMatchesRotateHalf) {
  const int T = 3, H = 4, KV = 2, hd = 16;
  const std::vector<int> pos = {0, 7, 1000};
  std::vector<float> q = RandomVec(T * H * hd, rng_), k = RandomVec(T * KV * hd, rng_);
  std::vector<float> q_ref = q, k_ref = k, cos, sin;
  ref::RopeTables(pos, hd, 10000.0, &cos, &sin);
  ref::RopeHeads(q_ref, k_ref, pos, H, KV, hd, 10000.0);
  backend_->Rope(q.data(), k.data(), cos.data(), sin.data(), T, H, KV, hd);
  EXPECT_LT(ref::RelMaxError(q, q_ref), 1e-5);
  EXPECT_LT(ref::RelMaxError(k, k_ref), 1e-5);
}

// The bf16 cases run a bf16 KV cache (fp16 weights keep an fp32 one): the reference then
// attends over K and V rounded to bf16.
TEST_P(CpuOps, PagedAttentionMatchesDenseCausal) {
  const int H = 4, KV = 2, hd = 8, bs = 4;
  KvCacheShape shape{1, 32, bs, KV, hd};
  shape.dtype = dtype() == DType::kBF16 ? DType::kBF16 : DType::kF32;
  ASSERT_TRUE(backend_->AllocKvCache(shape).ok());
  // Two sequences with scattered blocks: A has 6 tokens, B has 9; all prefilled in one batch.
  std::vector<int32_t> table_a = {7, 2}, table_b = {30, 0, 11};
  const int na = 6, nb = 9, T = na + nb;
  std::vector<float> q = RandomVec(T * H * hd, rng_), k_in = RandomVec(T * KV * hd, rng_),
                     v_in = RandomVec(T * KV * hd, rng_);
  std::vector<float> k = k_in, v = v_in;  // as cached
  if (shape.dtype == DType::kBF16) {
    for (float& x : k) x = Bf16ToF32(F32ToBf16(x));
    for (float& x : v) x = Bf16ToF32(F32ToBf16(x));
  }
  std::vector<int32_t> positions;
  std::vector<const std::vector<int32_t>*> tables;
  for (int i = 0; i < na; ++i) positions.push_back(i), tables.push_back(&table_a);
  for (int i = 0; i < nb; ++i) positions.push_back(i), tables.push_back(&table_b);
  std::vector<float> out(T * H * hd, NAN);
  backend_->Attention(0, q.data(), k_in.data(), v_in.data(),
                      AttentionBatch{T, positions.data(), tables.data()}, H, out.data());
  std::vector<int> first(T);
  for (int t = 0; t < T; ++t) first[t] = t < na ? 0 : na;
  const std::vector<float> expect = ref::CausalAttention(q, k, v, first, H, KV, hd);
  for (size_t i = 0; i < out.size(); ++i)
    EXPECT_NEAR(out[i], expect[i], 1e-5) << "t=" << i / (H * hd) << " h=" << i / hd % H;
}

INSTANTIATE_TEST_SUITE_P(AllIsasAndDtypes, CpuOps,
                         ::testing::Combine(::testing::Values("avx512", "avx2", "generic"),
                                            ::testing::Values(DType::kF32, DType::kBF16,
                                                              DType::kF16, DType::kQ8_0,
                                                              DType::kQ4_0)),
                         NameAndDtype);

}  // namespace
}  // namespace sparsed
