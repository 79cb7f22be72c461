// CPU kernel benchmark: the GEMV-shaped dot kernel (gate/up rows) and the row-axpy kernel (down
// rows) on a 90 MB bf16 matrix (LLaMA-2-7B FFN shape), per instruction set and thread count,
// reported in GB/s of weights read.
#include <benchmark/benchmark.h>

#include <memory>
#include <string>
#include <vector>

#include "engine/backend/cpu/cpu_backend.h"
#include "tools/ffn_fixture.h"

namespace sparsed::bench {
namespace {

const SyntheticFfn& Weights() {
  static const SyntheticFfn* f = new SyntheticFfn(11008, 4096, 3);
  return *f;
}

void Dot(benchmark::State& state, std::string isa, int threads, int T) {
  if (cpu::SelectKernels(isa).isa != isa) {
    state.SkipWithError("ISA not supported here");
    return;
  }
  const SyntheticFfn& f = Weights();
  BackendOptions o;
  o.threads = threads;
  o.cpu_isa = isa;
  CpuBackend be(o);
  const Matrix w{f.gate.data(), DType::kBF16, f.F, f.d, nullptr};
  std::vector<float> x(static_cast<size_t>(T) * f.d, 0.5f), y(static_cast<size_t>(T) * f.F);
  for (auto _ : state) {
    be.MatMul(x.data(), T, w, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["GB/s"] = benchmark::Counter(static_cast<double>(w.bytes()),
                                              benchmark::Counter::kIsIterationInvariantRate);
}

void Axpy(benchmark::State& state, std::string isa, int T) {
  if (cpu::SelectKernels(isa).isa != isa) {
    state.SkipWithError("ISA not supported here");
    return;
  }
  const SyntheticFfn& f = Weights();
  const cpu::KernelTable& k = cpu::SelectKernels(isa);
  std::vector<float> h(static_cast<size_t>(T) * f.F, 0.25f), y(static_cast<size_t>(T) * f.d);
  for (auto _ : state) {
    k.axpy_rows(h.data(), f.F, T, f.F, nullptr, f.down_t.data(), DType::kBF16, f.d, 0, f.d,
                y.data(), f.d, false);
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["GB/s"] =
      benchmark::Counter(2.0 * f.F * f.d, benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace
}  // namespace sparsed::bench

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  for (const char* isa : {"avx512", "avx2", "generic"}) {
    for (int threads : {1, 2}) {
      for (int T : {1, 4}) {
        benchmark::RegisterBenchmark(("dot/" + std::string(isa) + "/threads" +
                                      std::to_string(threads) + "/T" + std::to_string(T))
                                         .c_str(),
                                     sparsed::bench::Dot, isa, threads, T)
            ->Unit(benchmark::kMillisecond)
            ->UseRealTime();
      }
    }
    for (int T : {1, 4}) {
      benchmark::RegisterBenchmark(
          ("axpy/" + std::string(isa) + "/threads1/T" + std::to_string(T)).c_str(),
          sparsed::bench::Axpy, isa, T)
          ->Unit(benchmark::kMillisecond)
          ->UseRealTime();
    }
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
