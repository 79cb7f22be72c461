// GPU FFN benchmark: union sparse FFN vs dense cuBLAS (bf16 tensor cores) at LLaMA-2-7B and 13B
// FFN shapes, batch 1-64, active ratios 5-50%, independent and hot-neuron masks.
// Reports µs, ratio to dense, achieved GB/s for the bytes actually read, and the fraction of the
// device's measured copy bandwidth. Usage: ffn_gpu_bench [--quick] [--csv FILE]
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "tests/gpu/gpu_ffn_util.h"

namespace sparsed::gpu {
namespace {

struct Shape {
  const char* name;
  int64_t d, F;
};

struct Filter {
  std::string shape;  // empty = all
  int batch = 0;      // 0 = all
  double ratio = -1;  // <0 = all
  double skew = -1;   // <0 = both
};

// Threshold mode (SwiGLU): gate and up dense, |x1| against one threshold per neuron chosen so
// that `ratio` of the calibration tokens' (token, neuron) pairs pass; down union sparse.
void ThresholdTable(bool quick, const Filter& only, double peak) {
  std::printf("\nThreshold mode, SiLU (gate and up dense, down union sparse) vs dense cuBLAS:\n");
  std::printf(
      "| shape | batch | active | union | threshold µs | dense µs | speedup | GB/s | "
      "of peak |\n|---|---|---|---|---|---|---|---|---|\n");
  const Shape sh = {"llama2-7b", 4096, 11008};
  if (!only.shape.empty() && only.shape != sh.name) return;
  HostFfn host(sh.F, sh.d, 99);
  host.SetRates(NeuronRates(sh.F, 0.5, 0.0, 3));
  auto ffn = Check(
      cuda::CudaFfn::Create({sh.F, sh.d}, host.gate.data(), host.up.data(), host.down_t.data()));
  const auto act = Activation::kSilu;
  std::mt19937_64 rng(8);
  // |x1| of a few calibration tokens on the host, for the thresholds.
  const int calib = 4;
  const auto xc = host.Inputs(calib, rng);
  std::vector<float> mags;
  for (int t = 0; t < calib; ++t) {
    for (int64_t i = 0; i < sh.F; ++i) {
      float g = 0, u = 0;
      for (int64_t c = 0; c < sh.d; ++c) {
        g += FromBf16(host.gate[i * sh.d + c]) * xc[t * sh.d + c];
        u += FromBf16(host.up[i * sh.d + c]) * xc[t * sh.d + c];
      }
      mags.push_back(std::fabs(RefAct(g, act, 0.f) * u));
    }
  }
  std::sort(mags.begin(), mags.end());
  for (double ratio : quick ? std::vector<double>{0.3} : std::vector<double>{0.1, 0.3}) {
    const float t = mags[static_cast<size_t>((1 - ratio) * (mags.size() - 1))];
    const std::vector<float> thr(sh.F, t);
    void* dthr;
    Check(cuda::DeviceAlloc(sh.F * 4, &dthr));
    Check(cuda::CopyToDevice(dthr, thr.data(), sh.F * 4));
    const float* th = static_cast<const float*>(dthr);
    for (int T : quick ? std::vector<int>{1, 8} : std::vector<int>{1, 2, 4, 8, 16, 64}) {
      const auto x = host.Inputs(T, rng);
      void *dx, *dy, *xb, *yb;
      Check(cuda::DeviceAlloc(x.size() * 4, &dx));
      Check(cuda::DeviceAlloc(x.size() * 4, &dy));
      Check(cuda::DeviceAlloc(x.size() * 2, &xb));
      Check(cuda::DeviceAlloc(x.size() * 2, &yb));
      Check(cuda::CopyToDevice(dx, x.data(), x.size() * 4));
      Check(cuda::ConvertToBf16(static_cast<float*>(dx), xb, x.size(), /*stream=*/nullptr));
      std::vector<cuda::FfnTileStats> st;
      Check(ffn->Run(static_cast<float*>(dx), T, static_cast<float*>(dy),
                     cuda::FfnRun{.activation = act, .stats = &st, .neuron_thresholds = th}));
      double union_rows = 0, active = 0;
      for (const auto& s : st) {
        union_rows += s.union_size;
        active += s.active_sum;
      }
      const double ms = cuda::TimeMs(
          [&] {
            Check(ffn->Run(static_cast<float*>(dx), T, static_cast<float*>(dy),
                           cuda::FfnRun{.activation = act, .neuron_thresholds = th}));
          },
          3, quick ? 10 : 30);
      const double dense_ms = cuda::TimeMs([&] { Check(ffn->RunDenseCublas(xb, T, act, 0.f, yb)); },
                                           3, quick ? 10 : 30);
      Check(cuda::Synchronize());
      // Gate and up read whole per tile; down reads the union rows.
      const double bytes = 2.0 * sh.d * (double(st.size()) * 2 * sh.F + union_rows);
      const double gbs = bytes / (ms * 1e-3) / 1e9;
      std::printf("| %s | %d | %.0f%% | %.0f%% | %.1f | %.1f | %.2f× | %.0f | %.0f%% |\n", sh.name,
                  T, 100 * active / (double(T) * sh.F),
                  100 * union_rows / (double(st.size()) * sh.F), ms * 1e3, dense_ms * 1e3,
                  dense_ms / ms, gbs, 100 * gbs / peak);
      for (void* p : {dx, dy, xb, yb}) cuda::DeviceFree(p);
    }
    cuda::DeviceFree(dthr);
  }
}

int Run(bool quick, const std::string& csv_path, const Filter& only) {
  std::string device;
  if (const absl::Status s = cuda::ProbeDevice(&device); !s.ok()) {
    std::printf("SKIPPED: %s\n", std::string(s.message()).c_str());
    return 77;
  }
  const double peak = cuda::MeasureCopyBandwidthGBs(size_t(1) << 31);
  std::printf("device: %s; measured copy bandwidth %.0f GB/s (read + write)\n\n", device.c_str(),
              peak);
  FILE* csv = csv_path.empty() ? nullptr : std::fopen(csv_path.c_str(), "w");
  if (csv)
    std::fprintf(csv,
                 "shape,batch,active,skew,union,sparse_us,dense_us,speedup,sparse_gbs,frac_peak\n");

  const std::vector<Shape> shapes = {{"llama2-7b", 4096, 11008}, {"llama2-13b", 5120, 13824}};
  const std::vector<int> batches =
      quick ? std::vector<int>{1, 8, 64} : std::vector<int>{1, 2, 4, 8, 16, 32, 64};
  const std::vector<double> ratios =
      quick ? std::vector<double>{0.11} : std::vector<double>{0.05, 0.11, 0.25, 0.5};
  const int reps = quick ? 10 : 30;
  std::printf(
      "| shape | batch | active | masks | union | sparse µs | dense µs | speedup | sparse GB/s | "
      "of peak |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|---|\n");
  std::vector<std::string> phase_lines, graph_lines;
  for (const Shape& sh : shapes) {
    if (!only.shape.empty() && only.shape != sh.name) continue;
    HostFfn host(sh.F, sh.d, 1234);
    for (double skew : {0.0, 2.0}) {
      if (only.skew >= 0 && only.skew != skew) continue;
      for (double ratio : ratios) {
        if (only.ratio >= 0 && std::fabs(only.ratio - ratio) > 1e-9) continue;
        host.SetRates(NeuronRates(sh.F, ratio, skew, 77));
        auto ffn = Check(cuda::CudaFfn::Create({sh.F, sh.d}, host.gate.data(), host.up.data(),
                                               host.down_t.data()));
        std::mt19937_64 rng(5);
        for (int T : batches) {
          if (only.batch && only.batch != T) continue;
          const auto x = host.Inputs(T, rng);
          void *dx, *dy, *xb, *yb;
          Check(cuda::DeviceAlloc(x.size() * 4, &dx));
          Check(cuda::DeviceAlloc(x.size() * 4, &dy));
          Check(cuda::DeviceAlloc(x.size() * 2, &xb));
          Check(cuda::DeviceAlloc(x.size() * 2, &yb));
          Check(cuda::CopyToDevice(dx, x.data(), x.size() * 4));
          Check(cuda::ConvertToBf16(static_cast<float*>(dx), xb, x.size(), /*stream=*/nullptr));
          const auto act = Activation::kRelu;
          std::vector<cuda::FfnTileStats> st;
          Check(ffn->Run(static_cast<float*>(dx), T, static_cast<float*>(dy),
                         cuda::FfnRun{.activation = act, .stats = &st}));
          double union_rows = 0;
          for (const auto& s : st) union_rows += s.union_size;  // rows read per tile, summed
          const double sparse_ms = cuda::TimeMs(
              [&] {
                Check(ffn->Run(static_cast<float*>(dx), T, static_cast<float*>(dy),
                               cuda::FfnRun{.activation = act}));
              },
              3, reps);
          const double dense_ms =
              cuda::TimeMs([&] { Check(ffn->RunDenseCublas(xb, T, act, 0.f, yb)); }, 3, reps);
          Check(cuda::Synchronize());
          // Bytes read: the gate once per tile plus the union rows of up and down per tile.
          const double bytes = 2.0 * sh.d * (double(st.size()) * sh.F + 2 * union_rows);
          const double gbs = bytes / (sparse_ms * 1e-3) / 1e9;
          const double uratio = union_rows / (double(st.size()) * sh.F);
          std::printf("| %s | %d | %.0f%% | %s | %.0f%% | %.1f | %.1f | %.2f× | %.0f | %.0f%% |\n",
                      sh.name, T, ratio * 100, skew > 0 ? "hot" : "indep", uratio * 100,
                      sparse_ms * 1e3, dense_ms * 1e3, dense_ms / sparse_ms, gbs, 100 * gbs / peak);
          if (csv) {
            std::fprintf(csv, "%s,%d,%.2f,%.0f,%.4f,%.2f,%.2f,%.3f,%.0f,%.3f\n", sh.name, T, ratio,
                         skew, uratio, sparse_ms * 1e3, dense_ms * 1e3, dense_ms / sparse_ms, gbs,
                         gbs / peak);
          }
          if (std::fabs(ratio - 0.11) < 1e-9 && T <= 8) {
            // The same call without CUDA graphs: what the launch gaps cost.
            ffn->set_use_graphs(false);
            const double plain_ms = cuda::TimeMs(
                [&] {
                  Check(ffn->Run(static_cast<float*>(dx), T, static_cast<float*>(dy),
                                 cuda::FfnRun{.activation = act}));
                },
                3, reps);
            ffn->set_use_graphs(true);
            char line[256];
            std::snprintf(line, sizeof line, "| %s | %d | %s | %.1f | %.1f | %.2f× |", sh.name, T,
                          skew > 0 ? "hot" : "indep", sparse_ms * 1e3, plain_ms * 1e3,
                          dense_ms / plain_ms);
            graph_lines.push_back(line);
          }
          if ((T == 1 || T == 8) && std::fabs(ratio - 0.11) < 1e-9) {
            // Operator breakdown against ProSparse's reported 2.0× (up) and 1.5× (down).
            std::vector<float> sp, dp, acc_s(5, 0), acc_d(4, 0);
            for (int i = 0; i < reps; ++i) {
              Check(ffn->Run(static_cast<float*>(dx), T, static_cast<float*>(dy),
                             cuda::FfnRun{.activation = act, .phase_ms = &sp}));
              Check(ffn->RunDenseCublas(xb, T, act, 0.f, yb, &dp));
              for (int k = 0; k < 5; ++k) acc_s[k] += sp[k] / reps;
              for (int k = 0; k < 4; ++k) acc_d[k] += dp[k] / reps;
            }
            char line[512];
            std::snprintf(line, sizeof line,
                          "| %s | %d | %s | %.1f / %.1f | %.1f / %.1f (%.2f×) | %.1f / %.1f "
                          "(%.2f×) | %.1f / %.1f |",
                          sh.name, T, skew > 0 ? "hot" : "indep", acc_s[0] * 1e3, acc_d[0] * 1e3,
                          acc_s[2] * 1e3, acc_d[1] * 1e3, acc_d[1] / acc_s[2],
                          (acc_s[3] + acc_s[4]) * 1e3, acc_d[3] * 1e3,
                          acc_d[3] / (acc_s[3] + acc_s[4]), acc_s[1] * 1e3, acc_d[2] * 1e3);
            phase_lines.push_back(line);
          }
          for (void* p : {dx, dy, xb, yb}) cuda::DeviceFree(p);
        }
      }
    }
  }
  std::printf(
      "\nCUDA graphs (11%% active): sparse µs replayed from a graph vs launched one by one:\n");
  std::printf(
      "| shape | batch | masks | graph µs | launches µs | speedup vs cuBLAS without graphs |\n");
  std::printf("|---|---|---|---|---|---|\n");
  for (const auto& l : graph_lines) std::printf("%s\n", l.c_str());
  ThresholdTable(quick, only, peak);
  std::printf("\n11%% active, per operator (mean µs, event-timed, sparse / dense):\n");
  std::printf(
      "| shape | batch | masks | gate (fused act+mask / cuBLAS) | up (gather / cuBLAS) | down "
      "(gather+reduce / cuBLAS) | compact / act·up |\n");
  std::printf("|---|---|---|---|---|---|---|\n");
  for (const auto& l : phase_lines) std::printf("%s\n", l.c_str());
  if (csv) std::fclose(csv);
  return 0;
}

}  // namespace
}  // namespace sparsed::gpu

int main(int argc, char** argv) {
  bool quick = false;
  std::string csv;
  sparsed::gpu::Filter only;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const bool has = i + 1 < argc;
    if (a == "--quick")
      quick = true;
    else if (a == "--csv" && has)
      csv = argv[++i];
    else if (a == "--shape" && has)
      only.shape = argv[++i];
    else if (a == "--batch" && has)
      only.batch = std::atoi(argv[++i]);
    else if (a == "--ratio" && has)
      only.ratio = std::atof(argv[++i]);
    else if (a == "--skew" && has)
      only.skew = std::atof(argv[++i]);
    else {
      std::fprintf(stderr,
                   "usage: ffn_gpu_bench [--quick] [--csv FILE] [--shape llama2-7b|llama2-13b] "
                   "[--batch N] [--ratio R] [--skew S]\n");
      return 2;
    }
  }
  return sparsed::gpu::Run(quick, csv, only);
}
