// CPU kernel benchmark against the machine's own limits, measured in the same run: the fp32 FMA
// peak (bench/fma_peak.h, one thread and all threads) and the memory read bandwidth
// (bench/bandwidth.h). For the union sparse FFN's two products on a LLaMA-2-7B FFN matrix (bf16,
// 11008 × 4096, 90 MB: far larger than the last-level cache) — gate/up (`dot`: T tokens × the
// selected rows) and down (`axpy`: the selected rows of W_downᵀ summed into T outputs) — dense
// and over a random 50%, 11% and 5% of the rows, at T = 1 … 256: time, GFLOP/s and % of the FMA
// peak, GB/s of weights read and % of bandwidth. Then thread scaling (1 → all threads) and
// decode attention over an fp32 or bf16 KV cache; SiLU, the engine's loop against the library's
// expf.
//
// --weights bf16,q8_0,q4_0 runs the product table once per weight type (the bf16 matrices
// quantized as the engine's --weights does), bytes counted in each type's own size.
//
// Usage: kernel_bench [--isa avx512|avx2|generic] [--tokens 1,2,4,...] [--reps 3] [--quick]
//                     [--weights bf16,q8_0,q4_0]
// Output: a Markdown table on stdout; progress on stderr.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "bench/bandwidth.h"
#include "bench/fma_peak.h"
#include "engine/backend/cpu/cpu_backend.h"
#include "engine/backend/mask.h"
#include "engine/common/panel.h"
#include "engine/common/quantize.h"
#include "engine/model/weight_format.h"
#include "tools/ffn_fixture.h"

namespace sparsed::bench {
namespace {

using Clock = std::chrono::steady_clock;

// Evicts the weights from the caches between timed runs (the last-level cache here holds a
// sparse product's rows: 11% of the 90 MB matrix is 10 MB).
class CacheFlusher {
 public:
  CacheFlusher() : junk_((size_t{256} << 20) / 8, 1) {}
  // Touches every line of a buffer far larger than the last-level cache.
  uint64_t Flush() {
    uint64_t acc = 0;
    for (size_t i = 0; i < junk_.size(); i += 8) acc += junk_[i]++;
    return acc;
  }

 private:
  std::vector<uint64_t> junk_;
};

template <class F>
double MedianSeconds(CacheFlusher& flusher, int reps, F&& fn) {
  fn();  // warm-up
  std::vector<double> s;
  uint64_t touched = 0;
  for (int r = 0; r < reps; ++r) {
    touched += flusher.Flush();
    const auto t0 = Clock::now();
    fn();
    s.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
  }
  if (touched == 1) std::fprintf(stderr, " ");  // keeps the flush from being optimised away
  std::sort(s.begin(), s.end());
  return s[s.size() / 2];
}

std::vector<int32_t> RandomRows(int64_t F, double frac, std::mt19937_64& rng) {
  std::vector<int32_t> all(F);
  for (int64_t i = 0; i < F; ++i) all[i] = static_cast<int32_t>(i);
  std::shuffle(all.begin(), all.end(), rng);
  all.resize(std::max<int64_t>(1, static_cast<int64_t>(std::llround(F * frac))));
  std::sort(all.begin(), all.end());
  return all;
}

struct Limits {
  double peak = 0, bw = 0;  // all threads: GFLOP/s, GB/s
};

void Row(DType wt, const char* op, int T, double frac, double s, double flops, double bytes,
         const Limits& lim) {
  const double gf = flops / s / 1e9, gb = bytes / s / 1e9;
  std::printf("| %s | %s | %d | %s | %.1f | %.1f | %.0f%% | %.1f | %.0f%% |\n",
              std::string(DTypeName(wt)).c_str(), op, T,
              frac >= 1 ? "dense"
                        : (std::to_string(static_cast<int>(std::lround(frac * 100))) + "%").c_str(),
              s * 1e6, gf, 100 * gf / lim.peak, gb, 100 * gb / lim.bw);
  std::fflush(stdout);
}

// m's rows converted to `to` (the engine's load-time conversion, weight_format.h), owned.
Matrix Converted(const Matrix& m, DType to) {
  if (to == m.dtype) return m;
  Matrix out{nullptr, to, m.rows, m.cols, nullptr};
  auto buf = std::shared_ptr<uint8_t[]>(new uint8_t[out.bytes()]);
  std::vector<float> row(static_cast<size_t>(m.cols));
  for (int64_t r = 0; r < m.rows; ++r) {
    DequantizeRow(m.Row(r), m.dtype, m.cols, row.data());
    QuantizeRow(row.data(), m.cols, to, buf.get() + static_cast<size_t>(r) * out.row_bytes());
  }
  out.data = buf.get();
  out.owner = std::shared_ptr<const void>(buf, buf.get());
  return out;
}

// One decode step's attention for one layer: B sequences at position `context` - 1
// (TinyLlama-1.1B heads: 32 query heads, 4 KV heads of 64).
double DecodeAttentionSeconds(CacheFlusher& flusher, CpuBackend& be, DType kv, int context,
                              int reps) {
  const int H = 32, KV = 4, hd = 64, bs = 16, B = 4;
  const int blocks_per_seq = (context + bs - 1) / bs;
  KvCacheShape shape{1, B * blocks_per_seq, bs, KV, hd};
  shape.dtype = kv;
  if (!be.AllocKvCache(shape).ok()) return NAN;
  std::vector<std::vector<int32_t>> tables(B);
  for (int s = 0; s < B; ++s)
    for (int b = 0; b < blocks_per_seq; ++b) tables[s].push_back(s * blocks_per_seq + b);
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
  return MedianSeconds(flusher, reps, [&] {
    be.Attention(0, q.data(), k.data(), v.data(), AttentionBatch{B, pos.data(), tp.data()}, H,
                 out.data());
  });
}

int Main(int argc, char** argv) {
  std::string isa;
  std::vector<int> tokens = {1, 2, 4, 8, 16, 32, 64, 128, 256};
  int reps = 3;
  std::vector<DType> weight_types = {DType::kBF16};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--weights" && i + 1 < argc) {
      weight_types.clear();
      for (absl::string_view name : absl::StrSplit(argv[++i], ',')) {
        auto w = ParseWeightFormat(name);
        if (!w.ok() || !*w) {
          std::fprintf(stderr, "kernel_bench: --weights takes bf16, q8_0 or q4_0, not '%s'\n",
                       std::string(name).c_str());
          return 2;
        }
        weight_types.push_back(**w);
      }
    } else if (a == "--isa" && i + 1 < argc) {
      isa = argv[++i];
    } else if (a == "--reps" && i + 1 < argc) {
      reps = std::max(1, std::atoi(argv[++i]));
    } else if (a == "--tokens" && i + 1 < argc) {
      tokens.clear();
      for (char* p = argv[++i]; *p;) {
        tokens.push_back(static_cast<int>(std::strtol(p, &p, 10)));
        if (*p == ',') ++p;
      }
    } else if (a == "--quick") {
      tokens = {1, 16, 64};
      reps = 1;
    } else {
      std::fprintf(stderr,
                   "usage: kernel_bench [--isa avx512|avx2|generic] [--tokens 1,2,...] "
                   "[--reps N] [--quick] [--weights bf16,q8_0,q4_0]\n");
      return 2;
    }
  }
  const cpu::KernelTable& kt = cpu::SelectKernels(isa);
  CacheFlusher flusher;
  if (!isa.empty() && kt.isa != isa) {
    std::fprintf(stderr, "kernel_bench: this CPU does not run %s\n", isa.c_str());
    return 2;
  }
  const int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::fprintf(stderr, "kernel_bench: measuring FMA peak and bandwidth...\n");
  const std::string peak_isa(kt.isa == "avx512" ? "avx512" : "avx2");
  Limits one{MeasureFmaPeakGflops(peak_isa, 1), MeasureReadBandwidthGBs(size_t{1} << 30, 1)};
  Limits all{MeasureFmaPeakGflops(peak_isa, threads),
             MeasureReadBandwidthGBs(size_t{1} << 30, threads)};
  std::printf(
      "kernels %.*s; %d threads. FMA peak (%s): %.1f GFLOP/s on 1 thread, %.1f on %d. "
      "Read bandwidth: %.1f GB/s on 1 thread, %.1f on %d.\n\n",
      static_cast<int>(kt.isa.size()), kt.isa.data(), threads, peak_isa.c_str(), one.peak, all.peak,
      threads, one.bw, all.bw, threads);

  std::fprintf(stderr, "kernel_bench: generating a 7B-shape FFN (bf16)...\n");
  const SyntheticFfn f(11008, 4096, 3);
  const Matrix up_bf16{f.up.data(), DType::kBF16, f.F, f.d, nullptr};
  const Matrix down_bf16{f.down_t.data(), DType::kBF16, f.F, f.d, nullptr};
  const Matrix& up = up_bf16;
  const Matrix& down = down_bf16;
  std::mt19937_64 rng(7);
  BackendOptions o;
  o.threads = threads;
  o.cpu_isa = std::string(kt.isa);
  CpuBackend be(o);

  std::printf(
      "| weights | product | T | rows | µs | GFLOP/s | of FMA peak | GB/s | of bandwidth |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|\n");
  const int maxT = *std::max_element(tokens.begin(), tokens.end());
  std::vector<float> x(static_cast<size_t>(maxT) * f.d), y(static_cast<size_t>(maxT) * f.F),
      h(static_cast<size_t>(maxT) * f.F), yd(static_cast<size_t>(maxT) * f.d);
  std::normal_distribution<float> nd(0.f, 1.f);
  for (float& v : x) v = nd(rng);
  for (float& v : h) v = nd(rng);
  // Warm-up: on this machine the first second or so of passes over a freshly written matrix run
  // up to 2x slower whatever the kernel (the first configuration of the table came out slow in
  // any order), so the table starts after a second of dense products.
  for (const auto until = Clock::now() + std::chrono::seconds(1); Clock::now() < until;) {
    be.DotRows(x.data(), 1, up, nullptr, f.F, y.data(), f.F, nullptr, 0);
    be.AxpyRows(h.data(), f.F, 1, f.F, nullptr, down, yd.data(), /*skip_zero_rows=*/false);
  }
  for (DType wt : weight_types) {
    const Matrix wup = Converted(up_bf16, wt), wdown = Converted(down_bf16, wt);
    const Matrix wpanels = IsBlockQuantized(wt) ? ToPanels(wup) : Matrix{};
    for (int T : tokens) {
      for (double frac : {1.0, 0.5, 0.11, 0.05}) {
        std::fprintf(stderr, "kernel_bench: %s T=%d rows %.0f%%\n",
                     std::string(DTypeName(wt)).c_str(), T, frac * 100);
        const std::vector<int32_t> rows = RandomRows(f.F, frac, rng);
        const int64_t n = frac >= 1 ? f.F : static_cast<int64_t>(rows.size());
        const int32_t* rp = frac >= 1 ? nullptr : rows.data();
        const double wbytes = static_cast<double>(n) * wup.row_bytes();
        const double flops = 2.0 * T * n * f.d;
        const double sd = MedianSeconds(
            flusher, reps, [&] { be.DotRows(x.data(), T, wup, rp, n, y.data(), n, nullptr, 0); });
        Row(wt, "dot (gate/up)", T, frac, sd, flops, wbytes, all);
        if (IsBlockQuantized(wt) && frac >= 1) {
          // The dense products' layout for block types (gate, q/k/v/o, LM head): row panels.
          const double sp = MedianSeconds(flusher, reps, [&] {
            be.DotRows(x.data(), T, wpanels, nullptr, n, y.data(), n, nullptr, 0);
          });
          Row(wt, "dot, row panels (gate, attention, LM head)", T, frac, sp, flops, wbytes, all);
        }
        const double sa = MedianSeconds(flusher, reps, [&] {
          std::fill(yd.begin(), yd.begin() + static_cast<size_t>(T) * f.d, 0.f);
          be.AxpyRows(h.data(), n, T, n, rp, wdown, yd.data(), /*skip_zero_rows=*/frac < 1);
        });
        Row(wt, "axpy (down)", T, frac, sa, flops, wbytes, all);
      }
    }
  }

  // Thread scaling: the same dense products on one thread and on all.
  std::printf(
      "\nThread scaling (dense, 1 → %d threads; the FMA peak scales %.2fx, bandwidth "
      "%.2fx):\n\n| product | T | 1 thread µs | %d threads µs | speedup |\n|---|---|---|---|---|\n",
      threads, all.peak / one.peak, all.bw / one.bw, threads);
  BackendOptions o1 = o;
  o1.threads = 1;
  CpuBackend be1(o1);
  for (int T : {1, 64}) {
    if (T > maxT) continue;
    const double d1 = MedianSeconds(flusher, reps, [&] {
      be1.DotRows(x.data(), T, up, nullptr, f.F, y.data(), f.F, nullptr, 0);
    });
    const double dn = MedianSeconds(flusher, reps, [&] {
      be.DotRows(x.data(), T, up, nullptr, f.F, y.data(), f.F, nullptr, 0);
    });
    std::printf("| dot | %d | %.0f | %.0f | %.2fx |\n", T, d1 * 1e6, dn * 1e6, d1 / dn);
    const double a1 = MedianSeconds(flusher, reps, [&] {
      be1.AxpyRows(h.data(), f.F, T, f.F, nullptr, down, yd.data(), false);
    });
    const double an = MedianSeconds(flusher, reps, [&] {
      be.AxpyRows(h.data(), f.F, T, f.F, nullptr, down, yd.data(), false);
    });
    std::printf("| axpy | %d | %.0f | %.0f | %.2fx |\n", T, a1 * 1e6, an * 1e6, a1 / an);
  }

  std::printf(
      "\nDecode attention, one layer, 4 sequences at 1024 positions (TinyLlama heads):\n\n"
      "| KV cache | µs | GB/s of K and V | of bandwidth |\n|---|---|---|---|\n");
  for (auto [name, kv] : {std::pair{"fp32", DType::kF32}, {"bf16", DType::kBF16}}) {
    const double s = DecodeAttentionSeconds(flusher, be, kv, 1024, std::max(reps, 5));
    const double bytes = 2.0 * 4 * 1024 * 4 * 64 * DTypeSize(kv);
    std::printf("| %s | %.1f | %.1f | %.0f%% |\n", name, s * 1e6, bytes / s / 1e9,
                100 * bytes / s / 1e9 / all.bw);
  }

  // SiLU over one batch-64 step's activations of a TinyLlama FFN layer (64 × 5632 values, in
  // cache): the engine's loop against the same formula through the library's expf, interleaved.
  {
    std::vector<float> g(64 * 5632), a(g.size());
    std::mt19937 rng(3);
    std::normal_distribution<float> normal(0.f, 2.f);
    for (float& v : g) v = normal(rng);
    double ours = 1e30, library = 1e30;
    volatile int64_t sink = 0;
    for (int r = 0; r < std::max(reps, 20); ++r) {
      a = g;
      auto t0 = std::chrono::steady_clock::now();
      sink = sink + ActivateInPlace(a.data(), static_cast<int64_t>(a.size()), Activation::kSilu, 0);
      ours = std::min(ours,
                      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      a = g;
      t0 = std::chrono::steady_clock::now();
      int64_t nz = 0;
      for (float& v : a) {
        v = v / (1.f + std::exp(-v));
        nz += v != 0.f;
      }
      sink = sink + nz;
      library = std::min(
          library, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    std::printf(
        "\nSiLU over %zu values (best of the rounds):\n\n| loop | µs | ns a value "
        "|\n|---|---|---|\n"
        "| engine (ActivateInPlace) | %.1f | %.2f |\n| library expf | %.1f | %.2f |\n",
        g.size(), ours * 1e6, ours * 1e9 / g.size(), library * 1e6, library * 1e9 / g.size());
  }
  return 0;
}

}  // namespace
}  // namespace sparsed::bench

int main(int argc, char** argv) { return sparsed::bench::Main(argc, argv); }
