// CPU FFN benchmark: union sparse FFN (exact mode) vs dense, at TinyLlama-1.1B and LLaMA-2-7B FFN
// shapes, bf16 weights, batch 1-64, active ratios 5-50%, independent and hot-neuron masks.
// Sparse and dense runs of one configuration are registered next to each other, so they run
// back to back. After google-benchmark's own output, a table gives time, the ratio to dense,
// the union ratio, and GB/s for the bytes actually read against the machine's read bandwidth
// measured in the same run. Extra flags: --quick (fewer configurations).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "bench/bandwidth.h"
#include "engine/backend/cpu/cpu_backend.h"
#include "tools/ffn_fixture.h"

namespace sparsed::bench {
namespace {

struct Shape {
  const char* name;
  int64_t d, F;
};

struct Point {
  double sparse_ms = 0, dense_ms = 0, union_ratio = 0, active_ratio = 0, sparse_bytes = 0;
  bool per_token = false;                   // the sparse run took the per-token path
  std::string sparse_phases, dense_phases;  // gate / mask / up / down µs (last round)
};

// Fixture state shared across registered benchmarks (created lazily, one shape at a time).
class Workbench {
 public:
  explicit Workbench(int threads) {
    BackendOptions o;
    o.threads = threads;
    o.dense_break_even = 1.0;  // measure the sparse path itself at every density
    backend_ = std::make_unique<CpuBackend>(o);
    o.per_token_break_even = 0;  // union products only
    union_backend_ = std::make_unique<CpuBackend>(o);
  }
  SyntheticFfn& Ffn(const Shape& s) {
    if (!ffn_ || ffn_->F != s.F || ffn_->d != s.d) {
      ffn_.reset();
      ffn_ = std::make_unique<SyntheticFfn>(s.F, s.d, 42);
      rates_key_.clear();
    }
    return *ffn_;
  }
  void SetRates(const Shape& s, double ratio, double skew) {
    const std::string key = std::to_string(ratio) + "/" + std::to_string(skew);
    if (key == rates_key_) return;
    Ffn(s).SetRates(NeuronRates(s.F, ratio, skew, 7));
    rates_key_ = key;
  }
  CpuBackend& backend() { return *backend_; }
  CpuBackend& union_backend() { return *union_backend_; }

 private:
  std::unique_ptr<CpuBackend> backend_, union_backend_;
  std::unique_ptr<SyntheticFfn> ffn_;
  std::string rates_key_;
};

// variant: 0 = exact (the backend's cost model), 1 = dense (`off`), 2 = exact with union
// products only.
void RunFfn(benchmark::State& state, Workbench* wb, Shape shape, int T, double ratio, double skew,
            int variant, Point* point) {
  const bool sparse = variant != 1;
  CpuBackend& be = variant == 2 ? wb->union_backend() : wb->backend();
  SyntheticFfn& f = wb->Ffn(shape);
  wb->SetRates(shape, ratio, skew);
  const Matrix gate{f.gate.data(), DType::kBF16, f.F, f.d, nullptr};
  const Matrix up{f.up.data(), DType::kBF16, f.F, f.d, nullptr};
  const Matrix down{f.down_t.data(), DType::kBF16, f.F, f.d, nullptr};
  const FfnLayer layer{&gate, &up, &down, Activation::kRelu, 0.f};
  std::mt19937_64 rng(T);
  const std::vector<float> x = f.Inputs(T, rng);
  std::vector<float> y(x.size());
  FfnStats stats;
  const auto before = be.ffn_phase_ns();
  int64_t iters = 0;
  for (auto _ : state) {
    ++iters;
    stats = FfnStats{};
    be.Ffn(layer, x.data(), T, sparse ? SparsityMode::kExact : SparsityMode::kOff, y.data(),
           &stats);
    benchmark::DoNotOptimize(y.data());
  }
  const double bytes = 2.0 * f.d * (f.F + 2.0 * (f.F - stats.rows_skipped));
  state.counters["union"] = stats.union_ratio();
  state.counters["GB/s"] = benchmark::Counter(bytes, benchmark::Counter::kIsIterationInvariantRate);
  const auto& after = be.ffn_phase_ns();
  auto per = [&](int64_t a, int64_t b) { return iters ? double(a - b) / iters / 1e3 : 0.0; };  // µs
  char phases[128];
  std::snprintf(phases, sizeof phases, "%.0f / %.0f / %.0f / %.0f", per(after.gate, before.gate),
                per(after.mask, before.mask), per(after.up, before.up),
                per(after.down, before.down));
  if (variant == 2) return;
  (sparse ? point->sparse_phases : point->dense_phases) = phases;
  if (sparse) {
    point->per_token = T > 1 && wb->backend().per_token_steps() > 0;
    point->union_ratio = stats.union_ratio();
    point->active_ratio = stats.active_ratio();
    point->sparse_bytes = bytes;
  }
}

// Collects per-benchmark real time (ms) alongside the console output.
class CollectingReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& r : runs) {
      if (r.run_type != Run::RT_Iteration) continue;
      // Strip the "/min_time:.../real_time" decorations to get the registered name.
      std::string name = r.benchmark_name();
      name = name.substr(0, name.find("/min_time"));
      times_[name].push_back(r.GetAdjustedRealTime() * Scale(r.time_unit));  // → ms
    }
    ConsoleReporter::ReportRuns(runs);
  }
  static double Scale(benchmark::TimeUnit u) {
    switch (u) {
      case benchmark::kNanosecond:
        return 1e-6;
      case benchmark::kMicrosecond:
        return 1e-3;
      case benchmark::kMillisecond:
        return 1.0;
      default:
        return 1e3;
    }
  }
  // Median over rounds (0 when the benchmark did not run).
  double Ms(const std::string& name) const {
    auto it = times_.find(name);
    if (it == times_.end() || it->second.empty()) return 0;
    std::vector<double> v = it->second;
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  }
  double MinMs(const std::string& name) const {
    auto it = times_.find(name);
    return it == times_.end() || it->second.empty()
               ? 0
               : *std::min_element(it->second.begin(), it->second.end());
  }

 private:
  std::map<std::string, std::vector<double>> times_;
};

}  // namespace
}  // namespace sparsed::bench

int main(int argc, char** argv) {
  using namespace sparsed;
  using namespace sparsed::bench;
  bool quick = false;
  int rounds = 3;
  std::vector<char*> args;
  for (int i = 0; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0)
      quick = true;
    else if (std::strncmp(argv[i], "--rounds=", 9) == 0)
      rounds = std::max(1, std::atoi(argv[i] + 9));
    else
      args.push_back(argv[i]);
  }
  int bargc = static_cast<int>(args.size());
  benchmark::Initialize(&bargc, args.data());
  const int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::fprintf(stderr, "measuring read bandwidth (1 GiB, %d threads)...\n", threads);
  const double bw = MeasureReadBandwidthGBs(size_t(1) << 30, threads);
  std::fprintf(stderr, "read bandwidth: %.1f GB/s\n", bw);

  Workbench wb(threads);
  const std::vector<Shape> shapes = {{"tinyllama-1.1b", 2048, 5632}, {"llama2-7b", 4096, 11008}};
  const std::vector<int> batches =
      quick ? std::vector<int>{1, 4, 16, 64} : std::vector<int>{1, 4, 16, 64, 256};
  // Each configuration's sparse and dense runs are registered together, and the whole list is
  // registered `rounds` times, so repetitions interleave (A, B, A, B) on this noisy machine.
  const std::vector<double> ratios =
      quick ? std::vector<double>{0.11} : std::vector<double>{0.05, 0.11, 0.25, 0.5};
  struct Row {
    std::string sparse_name, dense_name, union_name, label;
    Shape shape;
    int T;
    double ratio, skew;
    std::unique_ptr<Point> point;
  };
  std::vector<Row> rows;
  for (const Shape& s : shapes) {
    for (double skew : {0.0, 2.0}) {
      for (double ratio : ratios) {
        for (int T : batches) {
          if ((T > 16 && s.F > 8192) || (T > 64 && quick))
            continue;  // 7B from batch 64 on is compute-bound: minutes per run
          char label[160];
          std::snprintf(label, sizeof label, "| %s | %d | %.0f%% | %s |", s.name, T, ratio * 100,
                        skew > 0 ? "hot" : "indep");
          Row r;
          r.shape = s;
          r.T = T;
          r.ratio = ratio;
          r.skew = skew;
          r.point = std::make_unique<Point>();
          char name[160];
          for (int variant : {0, 1, 2}) {
            static const char* const kNames[] = {"sparse", "dense", "union"};
            std::snprintf(name, sizeof name, "ffn/%s/T%d/active%.0f/%s/%s", s.name, T, ratio * 100,
                          skew > 0 ? "hot" : "indep", kNames[variant]);
            (variant == 0 ? r.sparse_name : variant == 1 ? r.dense_name : r.union_name) = name;
          }
          r.label = label;
          rows.push_back(std::move(r));
        }
      }
    }
  }
  for (int round = 0; round < rounds; ++round) {
    for (const Row& r : rows) {
      for (int variant : {0, 1, 2}) {
        if (variant == 2 && r.T == 1) continue;  // one token: the paths coincide
        const std::string& name = variant == 0   ? r.sparse_name
                                  : variant == 1 ? r.dense_name
                                                 : r.union_name;
        // Recover the configuration from the row's point and name (registered again per round).
        benchmark::RegisterBenchmark(name.c_str(), RunFfn, &wb, r.shape, r.T, r.ratio, r.skew,
                                     variant, r.point.get())
            ->Unit(benchmark::kMicrosecond)
            ->MinTime(quick ? 0.05 : 0.1)
            ->UseRealTime();
      }
    }
  }
  CollectingReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  const double bw_after = MeasureReadBandwidthGBs(size_t(1) << 30, threads);
  std::printf(
      "\nread bandwidth %.1f GB/s before, %.1f GB/s after (%d threads); times are medians of %d "
      "interleaved rounds\n\n",
      bw, bw_after, threads, rounds);
  std::printf(
      "| shape | batch | active | masks | measured active | union | sparse µs | path | dense µs "
      "| speedup | union-only µs | vs union-only | sparse GB/s | of bandwidth | sparse "
      "gate/mask/up/down µs | dense gate/mask/up/down µs |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (const Row& r : rows) {
    const double s = reporter.Ms(r.sparse_name), d = reporter.Ms(r.dense_name);
    if (s <= 0 || d <= 0) continue;
    const double u = reporter.Ms(r.union_name);
    const double gbs = r.point->sparse_bytes / (s * 1e-3) / 1e9;
    std::printf(
        "%s %.1f%% | %.0f%% | %.0f | %s | %.0f | %.2f× | %s | %s | %.1f | %.0f%% | %s | %s |\n",
        r.label.c_str(), r.point->active_ratio * 100, r.point->union_ratio * 100, s * 1e3,
        r.point->per_token ? "per-token" : "union", d * 1e3, d / s,
        u > 0 ? std::to_string(static_cast<int>(u * 1e3)).c_str() : "",
        u > 0 ? (std::to_string(u / s).substr(0, 4) + "×").c_str() : "", gbs, 100 * gbs / bw,
        r.point->sparse_phases.c_str(), r.point->dense_phases.c_str());
  }
  benchmark::Shutdown();
  return 0;
}
