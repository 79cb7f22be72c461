// GPU tests of the CUDA union sparse FFN (cuda_ffn.h) against a double-precision reference, plus
// bitwise batch invariance, graph replay, shared workspaces and the dense cuBLAS baseline.
// Exits 77 (CTest: skipped) when no CUDA device is present.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tests/gpu/gpu_ffn_util.h"

namespace sparsed::gpu {
namespace {

// printf-style text for a failure message.
template <typename... Args>
std::string Fmt(const char* format, Args... args) {
  char buf[512];
  std::snprintf(buf, sizeof buf, format, args...);
  return buf;
}

// A CUDA call's error ends the test binary: the device's state is unknown after it, so no later
// test could be trusted.
void Ok(const absl::Status& status) {
  if (status.ok()) return;
  ADD_FAILURE() << status;
  std::fprintf(stderr, "fatal CUDA error: %s\n", status.ToString().c_str());
  std::exit(1);
}
// The value, or the error ends the test binary as above.
template <typename T>
T Ok(absl::StatusOr<T> value) {
  Ok(value.status());
  return *std::move(value);
}

// A device buffer freed on scope exit.
struct DevBuf {
  void* p = nullptr;
  explicit DevBuf(size_t bytes) { Ok(cuda::DeviceAlloc(bytes, &p)); }
  ~DevBuf() { cuda::DeviceFree(p); }
  float* f() { return static_cast<float*>(p); }
};

std::vector<float> RunSparse(cuda::CudaFfn& ffn, const std::vector<float>& x, int T, Activation a,
                             float thr, bool sparse, double break_even,
                             std::vector<cuda::FfnTileStats>* stats = nullptr,
                             const std::vector<float>* neuron_thr = nullptr) {
  const int64_t d = ffn.shape().hidden;
  DevBuf dx(x.size() * 4), dy(x.size() * 4);
  DevBuf dt(neuron_thr ? neuron_thr->size() * 4 : 4);
  Ok(cuda::CopyToDevice(dx.p, x.data(), x.size() * 4));
  if (neuron_thr) Ok(cuda::CopyToDevice(dt.p, neuron_thr->data(), neuron_thr->size() * 4));
  // Poison the output so an unwritten element shows.
  std::vector<float> y(T * d, std::nanf(""));
  Ok(cuda::CopyToDevice(dy.p, y.data(), y.size() * 4));
  Ok(ffn.Run(dx.f(), T, dy.f(),
             cuda::FfnRun{.activation = a,
                          .threshold = thr,
                          .sparse = sparse,
                          .break_even = break_even,
                          .stats = stats,
                          .neuron_thresholds = neuron_thr ? dt.f() : nullptr}));
  Ok(cuda::Synchronize());
  Ok(cuda::CopyToHost(y.data(), dy.p, y.size() * 4));
  return y;
}

const char* Name(Activation a) {
  switch (a) {
    case Activation::kRelu:
      return "relu";
    case Activation::kRelu2:
      return "relu2";
    case Activation::kFatRelu:
      return "fatrelu";
    case Activation::kSilu:
      return "silu";
    case Activation::kGelu:
      return "gelu";
    case Activation::kGeluTanh:
      return "gelu_tanh";
  }
  return "?";
}

TEST(CudaFfn, MatchesReference) {
  // Shapes off the kernels' natural multiples: F not a multiple of the chunk, d not of 256.
  const int64_t F = 1100, d = 264;
  for (double skew : {0.0, 3.0}) {
    HostFfn h(F, d, 17 + static_cast<uint64_t>(skew));
    h.SetRates(NeuronRates(F, 0.11, skew, 5));
    auto ffn = Ok(cuda::CudaFfn::Create({F, d}, h.gate.data(), h.up.data(), h.down_t.data()));
    std::mt19937_64 rng(1);
    for (auto a : {Activation::kRelu, Activation::kRelu2, Activation::kFatRelu, Activation::kSilu,
                   Activation::kGelu}) {
      const float thr = a == Activation::kFatRelu ? 0.05f : 0.f;
      for (int T : {1, 3, 8, 16, 17, 40}) {
        const auto x = h.Inputs(T, rng);
        std::vector<cuda::FfnTileStats> st;
        const auto ys = RunSparse(*ffn, x, T, a, thr, true, 1.0, &st);
        const auto yd = RunSparse(*ffn, x, T, a, thr, false, 1.0);
        const auto yr = RefFfn(h, x, T, a, thr);
        const double err_s = RelMaxError(ys, yr);
        EXPECT_TRUE(err_s < 1e-4) << Fmt("%s T=%d skew=%.0f sparse rel err %.3g", Name(a), T, skew,
                                         err_s);
        EXPECT_TRUE(std::memcmp(ys.data(), yd.data(), ys.size() * 4) == 0)
            << Fmt("%s T=%d sparse and every-row paths differ bitwise", Name(a), T);
        if (a != Activation::kSilu && a != Activation::kGelu) {
          int64_t active = 0;
          for (const auto& s : st) {
            active += s.active_sum;
            EXPECT_TRUE(s.union_size <= F && s.union_size > 0) << Fmt("union %d", s.union_size);
          }
          const double ratio = double(active) / (double(T) * F);
          EXPECT_TRUE(ratio > 0.05 && ratio < 0.2)
              << Fmt("%s T=%d active ratio %.3f (target 0.11)", Name(a), T, ratio);
        }
      }
    }
  }
}

// Threshold mode against a double reference that keeps neuron i of token t when
// |x1[t, i]| ≥ thr[i]. Tokens with a neuron within 1e-4 of its threshold are skipped (fp32 and
// double may fall on different sides); zero thresholds reproduce the every-row path bitwise; a
// token's output is the same in any batch.
TEST(CudaFfn, ThresholdMode) {
  const int64_t F = 1100, d = 264;
  HostFfn h(F, d, 31);
  h.SetRates(NeuronRates(F, 0.3, 0.0, 6));
  auto ffn = Ok(cuda::CudaFfn::Create({F, d}, h.gate.data(), h.up.data(), h.down_t.data()));
  std::mt19937_64 rng(4);
  for (auto a : {Activation::kSilu, Activation::kRelu2}) {
    const int T = 19;
    const auto x = h.Inputs(T, rng);
    // x1 in double, and thresholds at the 70th percentile of each neuron's |x1| over tokens.
    std::vector<double> x1(T * F);
    for (int t = 0; t < T; ++t) {
      for (int64_t i = 0; i < F; ++i) {
        double g = 0, u = 0;
        for (int64_t c = 0; c < d; ++c) {
          g += double(FromBf16(h.gate[i * d + c])) * x[t * d + c];
          u += double(FromBf16(h.up[i * d + c])) * x[t * d + c];
        }
        x1[t * F + i] = RefAct(static_cast<float>(g), a, 0.f) * u;
      }
    }
    std::vector<float> thr(F);
    for (int64_t i = 0; i < F; ++i) {
      std::vector<double> col;
      for (int t = 0; t < T; ++t) col.push_back(std::fabs(x1[t * F + i]));
      std::sort(col.begin(), col.end());
      thr[i] = static_cast<float>(col[T * 7 / 10] * 0.999 + 1e-7);
    }
    std::vector<cuda::FfnTileStats> st;
    const auto y = RunSparse(*ffn, x, T, a, 0.f, true, 1.0, &st, &thr);
    int64_t active = 0, checked = 0;
    for (int t = 0; t < T; ++t) {
      std::vector<double> acc(d, 0.0);
      bool borderline = false;
      for (int64_t i = 0; i < F; ++i) {
        const double v = x1[t * F + i];
        if (std::fabs(std::fabs(v) - thr[i]) <= 1e-4 * thr[i]) borderline = true;
        if (std::fabs(v) < thr[i]) continue;
        ++active;
        for (int64_t c = 0; c < d; ++c) acc[c] += v * FromBf16(h.down_t[i * d + c]);
      }
      if (borderline) continue;
      ++checked;
      std::vector<float> ref(acc.begin(), acc.end());
      std::vector<float> got(y.begin() + t * d, y.begin() + (t + 1) * d);
      const double e = RelMaxError(got, ref);
      EXPECT_TRUE(e < 1e-4) << Fmt("threshold %s token %d rel err %.3g", Name(a), t, e);
    }
    EXPECT_TRUE(checked >= T / 2) << Fmt("only %lld of %d tokens away from thresholds",
                                         static_cast<long long>(checked), T);
    int64_t gpu_active = 0;
    for (const auto& s : st) gpu_active += s.active_sum;
    EXPECT_TRUE(std::llabs(gpu_active - active) <= F / 100)
        << Fmt("threshold %s: %lld active on GPU, %lld in the reference", Name(a),
               static_cast<long long>(gpu_active), static_cast<long long>(active));

    const std::vector<float> zero(F, 0.f);
    const auto y0 = RunSparse(*ffn, x, T, a, 0.f, true, 1.0, nullptr, &zero);
    const auto yd = RunSparse(*ffn, x, T, a, 0.f, false, 1.0);
    EXPECT_TRUE(std::memcmp(y0.data(), yd.data(), y0.size() * 4) == 0)
        << Fmt("threshold %s with zero thresholds differs from the every-row path", Name(a));

    const auto one = RunSparse(*ffn, std::vector<float>(x.begin(), x.begin() + d), 1, a, 0.f, true,
                               1.0, nullptr, &thr);
    EXPECT_TRUE(std::memcmp(one.data(), y.data(), d * 4) == 0)
        << Fmt("threshold %s: token 0 alone differs from token 0 in a batch of %d", Name(a), T);
  }
}

// Graph capture and replay give the same bits as launching kernel by kernel, across replays, a
// change of batch size (recapture) and threshold mode.
TEST(CudaFfn, GraphReplay) {
  const int64_t F = 1024, d = 256;
  HostFfn h(F, d, 41);
  h.SetRates(NeuronRates(F, 0.11, 1.0, 3));
  auto ffn = Ok(cuda::CudaFfn::Create({F, d}, h.gate.data(), h.up.data(), h.down_t.data()));
  std::mt19937_64 rng(12);
  for (int T : {1, 5, 1, 16}) {
    const auto x = h.Inputs(T, rng);
    DevBuf dx(x.size() * 4), dy(x.size() * 4);
    Ok(cuda::CopyToDevice(dx.p, x.data(), x.size() * 4));
    std::vector<float> plain(x.size()), replay(x.size());
    ffn->set_use_graphs(false);
    Ok(ffn->Run(dx.f(), T, dy.f(), cuda::FfnRun{.activation = Activation::kRelu2}));
    Ok(cuda::Synchronize());
    Ok(cuda::CopyToHost(plain.data(), dy.p, plain.size() * 4));
    ffn->set_use_graphs(true);
    for (int rep = 0; rep < 3; ++rep) {  // capture, then two replays
      Ok(cuda::CopyToDevice(dy.p, std::vector<float>(x.size(), std::nanf("")).data(),
                            x.size() * 4));
      std::vector<cuda::FfnTileStats> st;
      Ok(ffn->Run(
          dx.f(), T, dy.f(),
          cuda::FfnRun{.activation = Activation::kRelu2, .stats = rep == 2 ? &st : nullptr}));
      Ok(cuda::Synchronize());
      Ok(cuda::CopyToHost(replay.data(), dy.p, replay.size() * 4));
      EXPECT_TRUE(std::memcmp(plain.data(), replay.data(), plain.size() * 4) == 0)
          << Fmt("T=%d run %d: graph replay differs from plain launches", T, rep);
      if (rep == 2) {
        EXPECT_TRUE(!st.empty() && st[0].union_size > 0) << "stats after replay";
      }
    }
  }
}

// Two layers sharing one workspace (as a model's layers do) compute bitwise what each computes
// with its own, through graph captures and replays interleaved with the other layer and a
// workspace growth between them; each keeps its own tile stats; the shared workspace holds what
// one layer alone holds.
TEST(CudaFfn, SharedWorkspace) {
  const int64_t F = 1100, d = 264;
  HostFfn h1(F, d, 51), h2(F, d, 52);
  h1.SetRates(NeuronRates(F, 0.11, 2.0, 7));
  h2.SetRates(NeuronRates(F, 0.3, 0.0, 8));
  auto ws = Ok(cuda::FfnWorkspace::Create(Ok(cuda::Context::Create())));
  auto make = [&](const HostFfn& h, std::shared_ptr<cuda::FfnWorkspace> w) {
    return Ok(cuda::CudaFfn::Create({F, d}, h.gate.data(), h.up.data(), h.down_t.data(), w));
  };
  auto shared1 = make(h1, ws), shared2 = make(h2, ws);
  auto own1 = make(h1, nullptr), own2 = make(h2, nullptr);
  std::mt19937_64 rng(13);
  const int kMaxT = 40;
  DevBuf dx(kMaxT * d * 4), dy1(kMaxT * d * 4), dy2(kMaxT * d * 4);
  auto host = [&](DevBuf& b, int T) {
    std::vector<float> y(T * d);
    Ok(cuda::Synchronize());
    Ok(cuda::CopyToHost(y.data(), b.p, y.size() * 4));
    return y;
  };
  auto same_stats = [&](cuda::CudaFfn& a, cuda::CudaFfn& b, const char* what, int T) {
    std::vector<cuda::FfnTileStats> sa, sb;
    Ok(a.ReadStats(&sa));
    Ok(b.ReadStats(&sb));
    bool same = sa.size() == sb.size() && !sa.empty();
    for (size_t i = 0; same && i < sa.size(); ++i) {
      same = sa[i].union_size == sb[i].union_size && sa[i].active_sum == sb[i].active_sum;
    }
    EXPECT_TRUE(same) << Fmt("%s T=%d: tile stats differ from the layer with its own workspace",
                             what, T);
  };
  for (int T : {1, 1, 1, 40, 40, 5, 5}) {  // captures, replays, growth, recapture
    const auto x = h1.Inputs(T, rng);
    Ok(cuda::CopyToDevice(dx.p, x.data(), x.size() * 4));
    for (bool thresholds : {false, true}) {
      const auto act = thresholds ? Activation::kSilu : Activation::kRelu;
      std::vector<float> thr(F, thresholds ? 0.02f : 0.f);
      DevBuf dt(F * 4);
      Ok(cuda::CopyToDevice(dt.p, thr.data(), F * 4));
      const float* nt = thresholds ? dt.f() : nullptr;
      Ok(own1->Run(dx.f(), T, dy1.f(), cuda::FfnRun{.activation = act, .neuron_thresholds = nt}));
      const auto want1 = host(dy1, T);
      Ok(own2->Run(dx.f(), T, dy2.f(), cuda::FfnRun{.activation = act, .neuron_thresholds = nt}));
      const auto want2 = host(dy2, T);
      // Both shared layers run before either result or stats is read.
      Ok(shared1->Run(dx.f(), T, dy1.f(),
                      cuda::FfnRun{.activation = act, .neuron_thresholds = nt}));
      Ok(shared2->Run(dx.f(), T, dy2.f(),
                      cuda::FfnRun{.activation = act, .neuron_thresholds = nt}));
      const auto got1 = host(dy1, T), got2 = host(dy2, T);
      EXPECT_TRUE(std::memcmp(got1.data(), want1.data(), got1.size() * 4) == 0)
          << Fmt("T=%d thresholds=%d: layer 1 on the shared workspace differs", T, thresholds);
      EXPECT_TRUE(std::memcmp(got2.data(), want2.data(), got2.size() * 4) == 0)
          << Fmt("T=%d thresholds=%d: layer 2 on the shared workspace differs", T, thresholds);
      same_stats(*shared1, *own1, "layer 1", T);
      same_stats(*shared2, *own2, "layer 2", T);
    }
  }
  EXPECT_TRUE(ws->bytes() == own1->workspace().bytes() && ws->bytes() > 0)
      << Fmt("shared workspace holds %zu bytes, one layer's own %zu", ws->bytes(),
             own1->workspace().bytes());
}

TEST(CudaFfn, PhaseTimingPaths) {
  const int64_t F = 512, d = 128;
  HostFfn h(F, d, 21);
  h.SetRates(NeuronRates(F, 0.1, 0.0, 4));
  auto ffn = Ok(cuda::CudaFfn::Create({F, d}, h.gate.data(), h.up.data(), h.down_t.data()));
  std::mt19937_64 rng(2);
  const int T = 4;
  const auto x = h.Inputs(T, rng);
  DevBuf dx(x.size() * 4), dy(x.size() * 4), xb(x.size() * 2), yb(x.size() * 2);
  Ok(cuda::CopyToDevice(dx.p, x.data(), x.size() * 4));
  Ok(cuda::ConvertToBf16(dx.f(), xb.p, x.size(), /*stream=*/nullptr));
  std::vector<float> sp, dp;
  Ok(ffn->Run(dx.f(), T, dy.f(), cuda::FfnRun{.activation = Activation::kRelu, .phase_ms = &sp}));
  Ok(ffn->RunDenseCublas(xb.p, T, Activation::kRelu, 0.f, yb.p, &dp));
  Ok(cuda::Synchronize());
  EXPECT_TRUE(sp.size() == 5 && dp.size() == 4)
      << Fmt("phase counts %zu / %zu", sp.size(), dp.size());
  for (float v : sp) EXPECT_TRUE(v >= 0.f) << Fmt("negative phase time %f", v);
  // The timed path computes the same result as the untimed one.
  std::vector<float> y(x.size());
  Ok(cuda::CopyToHost(y.data(), dy.p, y.size() * 4));
  const auto y2 = RunSparse(*ffn, x, T, Activation::kRelu, 0.f, true, 1.0);
  EXPECT_TRUE(std::memcmp(y.data(), y2.data(), y.size() * 4) == 0)
      << "timed and untimed runs differ";
}

TEST(CudaFfn, BatchInvariance) {
  const int64_t F = 2048, d = 512;
  HostFfn h(F, d, 3);
  h.SetRates(NeuronRates(F, 0.11, 2.0, 9));
  auto ffn = Ok(cuda::CudaFfn::Create({F, d}, h.gate.data(), h.up.data(), h.down_t.data()));
  std::mt19937_64 rng(7);
  const auto x0 = h.Inputs(1, rng);
  const auto y0 = RunSparse(*ffn, x0, 1, Activation::kRelu, 0.f, true, 1.0);
  for (int B : {2, 3, 5, 8, 13, 16, 17, 33, 64}) {
    auto xb = h.Inputs(B, rng);
    const int slot = static_cast<int>(rng() % B);
    std::memcpy(&xb[slot * d], x0.data(), d * 4);
    for (double be : {1.0, 0.0}) {  // sparse union, and forced every-row fallback
      const auto yb = RunSparse(*ffn, xb, B, Activation::kRelu, 0.f, true, be);
      EXPECT_TRUE(std::memcmp(&yb[slot * d], y0.data(), d * 4) == 0) << Fmt(
          "batch %d slot %d break-even %.0f: not bitwise equal to the token alone", B, slot, be);
    }
  }
}

TEST(CudaFfn, DenseCublasBaseline) {
  const int64_t F = 1024, d = 256;
  HostFfn h(F, d, 11);
  h.SetRates(NeuronRates(F, 0.2, 0.0, 2));
  auto ffn = Ok(cuda::CudaFfn::Create({F, d}, h.gate.data(), h.up.data(), h.down_t.data()));
  std::mt19937_64 rng(3);
  const int T = 8;
  const auto x = h.Inputs(T, rng);
  DevBuf dx(x.size() * 4), xb(x.size() * 2), yb(x.size() * 2);
  Ok(cuda::CopyToDevice(dx.p, x.data(), x.size() * 4));
  Ok(cuda::ConvertToBf16(dx.f(), xb.p, x.size(), /*stream=*/nullptr));
  Ok(ffn->RunDenseCublas(xb.p, T, Activation::kRelu, 0.f, yb.p));
  Ok(cuda::Synchronize());
  std::vector<uint16_t> raw(x.size());
  Ok(cuda::CopyToHost(raw.data(), yb.p, raw.size() * 2));
  std::vector<float> y(raw.size());
  for (size_t i = 0; i < raw.size(); ++i) y[i] = FromBf16(raw[i]);
  const double e = RelMaxError(y, RefFfn(h, x, T, Activation::kRelu, 0.f));
  EXPECT_TRUE(e < 3e-2) << Fmt("cuBLAS dense baseline rel err %.3g (bf16 activations)", e);
}

}  // namespace
}  // namespace sparsed::gpu

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  std::string name;
  if (const absl::Status s = sparsed::cuda::ProbeDevice(&name); !s.ok()) {
    std::printf("SKIPPED: %s\n", std::string(s.message()).c_str());
    return 77;
  }
  std::printf("device: %s\n", name.c_str());
  return RUN_ALL_TESTS();
}
