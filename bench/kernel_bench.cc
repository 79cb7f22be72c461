// CPU kernel benchmark: the GEMV-shaped dot kernel (gate/up rows) and the row-axpy kernel (down
// rows) on a 90 MB bf16 matrix (LLaMA-2-7B FFN shape), per instruction set and thread count,
// reported in GB/s of weights read; and decode attention over an fp32 or bf16 KV cache
// (TinyLlama-1.1B heads, 4 sequences at 1024 positions), in GB/s of K and V read.
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

// One decode step's attention for one layer: 4 sequences, each at position `context` - 1.
void DecodeAttention(benchmark::State& state, DType kv, int context) {
  const int H = 32, KV = 4, hd = 64, bs = 16, B = 4;
  const int blocks_per_seq = (context + bs - 1) / bs;
  BackendOptions o;
  o.threads = 2;
  CpuBackend be(o);
  KvCacheShape shape{1, B * blocks_per_seq, bs, KV, hd};
  shape.dtype = kv;
  if (!be.AllocKvCache(shape).ok()) {
    state.SkipWithError("KV cache allocation failed");
    return;
  }
  std::vector<std::vector<int32_t>> tables(B);
  for (int s = 0; s < B; ++s)
    for (int b = 0; b < blocks_per_seq; ++b) tables[s].push_back(s * blocks_per_seq + b);
  // Fill the caches position by position (one token per sequence per call), then time the last.
  std::vector<float> q(B * H * hd, 0.01f), k(B * KV * hd, 0.02f), v(B * KV * hd, 0.03f),
      out(B * H * hd);
  std::vector<int32_t> pos(B);
  std::vector<const std::vector<int32_t>*> tp(B);
  for (int s = 0; s < B; ++s) tp[s] = &tables[s];
  for (int p = 0; p < context; ++p) {
    std::fill(pos.begin(), pos.end(), p);
    be.Attention(0, q.data(), k.data(), v.data(), AttentionBatch{B, pos.data(), tp.data()}, H,
                 out.data());
  }
  std::fill(pos.begin(), pos.end(), context - 1);
  for (auto _ : state) {
    be.Attention(0, q.data(), k.data(), v.data(), AttentionBatch{B, pos.data(), tp.data()}, H,
                 out.data());
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["GB/s"] = benchmark::Counter(2.0 * B * context * KV * hd * DTypeSize(kv),
                                              benchmark::Counter::kIsIterationInvariantRate);
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
  for (auto [name, kv] :
       {std::pair{"fp32", sparsed::DType::kF32}, {"bf16", sparsed::DType::kBF16}}) {
    benchmark::RegisterBenchmark(("attention/kv_" + std::string(name) + "/B4/ctx1024").c_str(),
                                 sparsed::bench::DecodeAttention, kv, 1024)
        ->Unit(benchmark::kMicrosecond)
        ->UseRealTime();
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
