// End-to-end decode benchmark of the engine alone, on the CPU or CUDA backend: a synthetic
// FATReLU model (TinyLlama-1.1B or LLaMA-2-7B shape, optionally fewer layers) at ~11% active
// neurons with hot-neuron skew, `exact` vs `off` (and, on CUDA, `off` with every product in
// cuBLAS, the cuBLAS fallback, and step graphs), interleaved rounds. Reports tokens/s and the
// fraction of the bandwidth roofline: weight (and KV) bytes a step actually reads ÷ the read
// bandwidth (measured here on the CPU; given with --bandwidth_gbs for a GPU). On a trained model
// (--model), --text feeds real text so the masks are the model's own, --sparsity picks exact or
// threshold, and --compare_model times a second checkpoint of the same shape in the same rounds
// (sparsed-reorder's output: the same model with its FFN neurons in another order). On the CPU
// the table also says how much of a step the sparse FFN products (up and down) take: the most
// any change to which rows a token reads could save. Usage: see kUsage.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "bench/bandwidth.h"
#include "bench/fma_peak.h"
#include "engine/backend/cpu/cpu_backend.h"
#include "engine/engine.h"
#include "engine/model/weight_format.h"
#include "tools/synthetic.h"
#include "tools/text_eval.h"

namespace sparsed::bench {
namespace {

struct Result {
  std::vector<double> tok_s;
  std::vector<double> sparse_share;  // CPU: share of the decode steps' time in up + down
  double active = 0, union_ratio = 0, bytes_per_step = 0;
};

std::vector<int> ParseList(const char* s) {
  std::vector<int> out;
  for (const char* p = s; *p;) {
    out.push_back(std::atoi(p));
    while (*p && *p != ',') ++p;
    if (*p == ',') ++p;
  }
  return out;
}

// One measured configuration: an engine and the sparsity mode it runs.
struct Config {
  std::string label;
  Engine* engine;
  SparsityMode mode;
  std::string base;  // the label of the `off` configuration of the same weights ("vs off")
};

constexpr const char* kUsage =
    "usage: decode_bench [--model DIR] [--preset tinyllama-1.1b|llama2-7b] [--layers N]\n"
    "                    [--device cpu|cuda] [--cublas_baseline] [--fallback] [--graphs]\n"
    "                    [--union_only] [--isa avx512|avx2|generic]\n"
    "                    [--bandwidth_gbs X]\n"
    "                    [--steps N] [--rounds N] [--batches 1,4,16] [--prompt_len 8]\n"
    "                    [--kv_dtype fp32|bf16] [--prefill 128,512] [--prefill_chunk 256]\n"
    "                    [--text FILE] [--sparsity exact|threshold] [--compare_model DIR]\n"
    "                    [--weights checkpoint,q8_0,q4_0]\n"
    "  --prefill: also time prompts of these lengths (one sequence, chunks of --prefill_chunk\n"
    "  tokens as the daemon's --max_prefill_chunk cuts them), against the FMA peak (CPU).\n"
    "  --text: each sequence's prompt is its own window of --prompt_len tokens of FILE (one\n"
    "  document per line, tokenized by --model's tokenizer) instead of synthetic token ids.\n"
    "  --compare_model: a checkpoint of --model's shape timed beside it (its sparse modes).\n"
    "  --weights: the model loaded once per weight type listed (as --weights of the daemon),\n"
    "  each timed off and sparse in the same rounds; \"vs off\" compares within a type.\n";

// Batch size from which the FFN ran faster in dense cuBLAS than union sparse on an H100 at
// LLaMA-2-7B shape and ~11% active (bench/results/gpu_h100_v10_e2e.md).
constexpr int kFallbackTokens = 4;

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "error: %s\n", std::string(s.message()).c_str());
  return 1;
}

int Main(int argc, char** argv) {
  std::string model, preset = "tinyllama-1.1b", device = "cpu";
  std::string text, compare_model, sparsity = "exact";
  int steps = 16, rounds = 3, layers = 0, prompt_len = 8;
  std::string kv_dtype = "fp32";
  std::string isa;               // CPU: force a kernel table
  bool cublas_baseline = false;  // + an all-cuBLAS dense engine
  bool fallback = false;         // + an exact engine with the cuBLAS fallback from 4 tokens
  bool graphs = false;           // + an exact/off engine with CUDA step graphs
  bool union_only = false;       // + an exact engine that never runs per-token products (CPU)
  double bandwidth = 0;
  std::vector<int> batches = {1, 4, 16};
  std::vector<int> prefills;
  int prefill_chunk = 256;
  std::vector<std::optional<DType>> weight_types = {std::nullopt};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const bool has = i + 1 < argc;
    if (a == "--model" && has)
      model = argv[++i];
    else if (a == "--preset" && has)
      preset = argv[++i];
    else if (a == "--layers" && has)
      layers = std::atoi(argv[++i]);
    else if (a == "--device" && has)
      device = argv[++i];
    else if (a == "--cublas_baseline")
      cublas_baseline = true;
    else if (a == "--fallback")
      fallback = true;
    else if (a == "--graphs")
      graphs = true;
    else if (a == "--union_only")
      union_only = true;
    else if (a == "--isa" && has)
      isa = argv[++i];
    else if (a == "--bandwidth_gbs" && has)
      bandwidth = std::atof(argv[++i]);
    else if (a == "--steps" && has)
      steps = std::atoi(argv[++i]);
    else if (a == "--rounds" && has)
      rounds = std::atoi(argv[++i]);
    else if (a == "--batches" && has)
      batches = ParseList(argv[++i]);
    else if (a == "--prompt_len" && has)
      prompt_len = std::max(1, std::atoi(argv[++i]));
    else if (a == "--kv_dtype" && has)
      kv_dtype = argv[++i];
    else if (a == "--prefill" && has)
      prefills = ParseList(argv[++i]);
    else if (a == "--text" && has)
      text = argv[++i];
    else if (a == "--compare_model" && has)
      compare_model = argv[++i];
    else if (a == "--sparsity" && has)
      sparsity = argv[++i];
    else if (a == "--weights" && has) {
      weight_types.clear();
      for (absl::string_view name : absl::StrSplit(argv[++i], ',')) {
        auto w = ParseWeightFormat(name);
        if (!w.ok()) return Fail(w.status());
        weight_types.push_back(*w);
      }
    } else if (a == "--prefill_chunk" && has)
      prefill_chunk = std::max(1, std::atoi(argv[++i]));
    else {
      std::fprintf(stderr, "%s", kUsage);
      return 2;
    }
  }
  if (sparsity != "exact" && sparsity != "threshold") {
    std::fprintf(stderr, "--sparsity: '%s' is not exact or threshold\n%s", sparsity.c_str(),
                 kUsage);
    return 2;
  }
  const SparsityMode sparse_mode =
      sparsity == "exact" ? SparsityMode::kExact : SparsityMode::kThreshold;
  if (model.empty()) {
    model = "bench-models/" + preset + "-fatrelu-a11-skew2" +
            (layers ? "-l" + std::to_string(layers) : std::string());
    if (!std::filesystem::exists(model + "/config.json")) {
      std::fprintf(stderr, "writing %s (%s shape, fatrelu, 11%% active, skew 2; once)...\n",
                   model.c_str(), preset.c_str());
      SyntheticModelSpec s;
      s.preset = preset;
      s.layers = layers;
      s.model_type = "sparsellama";
      s.activation = "fatrelu";
      s.active_ratio = 0.11;
      s.skew = 2.0;
      s.tokenizer = false;
      s.shard_bytes = int64_t{2} << 30;  // written as it is generated: bounded host memory
      const absl::Status st = MakeSyntheticModel(
          s, model, [](const std::string& m) { std::fprintf(stderr, "  %s\n", m.c_str()); });
      if (!st.ok()) return Fail(st);
    }
  }
  int max_batch = 1;
  for (int B : batches) max_batch = std::max(max_batch, B);
  int max_prompt = prompt_len;
  for (int P : prefills) max_prompt = std::max(max_prompt, P);
  auto load = [&](int cublas_min_tokens, bool step_graphs = false, double per_token = -1,
                  const std::string& dir = {}, bool tokenizer = false,
                  std::optional<DType> weights = {}) -> absl::StatusOr<std::unique_ptr<Engine>> {
    EngineOptions o;
    o.model_dir = dir.empty() ? model : dir;
    o.weights = weights;
    o.load_tokenizer = tokenizer;
    o.device = device;
    o.kv_blocks = std::max(max_batch * ((prompt_len + steps + 16) / 16 + 1), max_prompt / 16 + 2);
    o.kv_cache_dtype = kv_dtype;
    o.sparsity_mode = sparsity;
    o.backend.cublas_min_tokens = cublas_min_tokens;
    o.backend.cuda_graphs = step_graphs;
    o.backend.per_token_break_even = per_token;
    o.backend.cpu_isa = isa;
    o.progress = [](int done, int total, const std::string&) {
      if (done == total || done % 8 == 0)
        std::fprintf(stderr, "loading: %d/%d layers\n", done, total);
    };
    return Engine::Load(o);
  };
  auto engine_or = load(0, false, -1, {}, /*tokenizer=*/!text.empty(), weight_types[0]);
  if (!engine_or.ok()) return Fail(engine_or.status());
  Engine& engine = **engine_or;
  // Prompts: one window of --text per sequence, or synthetic ids.
  std::vector<std::vector<int32_t>> windows;
  if (!text.empty()) {
    auto w = TokenWindows(engine, text, prompt_len, int64_t{1} << 40);
    if (!w.ok()) return Fail(w.status());
    for (auto& win : *w)
      if (static_cast<int>(win.size()) == prompt_len) windows.push_back(std::move(win));
    if (static_cast<int>(windows.size()) < max_batch)
      return Fail(absl::InvalidArgumentError(
          absl::StrFormat("%s holds %zu windows of %d tokens; the largest batch needs %d", text,
                          windows.size(), prompt_len, max_batch)));
  }
  auto prompt_token = [&](int s, int j) {
    return windows.empty()
               ? static_cast<int32_t>(1 + (s * 131 + j * 17) % (engine.config().vocab_size - 1))
               : windows[s][j];
  };
  auto suffix = [](std::optional<DType> w) {
    return w ? ", " + WeightFormatName(w) : std::string();
  };
  const std::string off0 = "off" + suffix(weight_types[0]);
  std::unique_ptr<Engine> cublas_engine;
  std::vector<Config> configs = {{off0, &engine, SparsityMode::kOff, off0},
                                 {sparsity + suffix(weight_types[0]), &engine, sparse_mode, off0}};
  std::vector<std::unique_ptr<Engine>> weight_engines;  // the other --weights types
  for (size_t i = 1; i < weight_types.size(); ++i) {
    auto e = load(0, false, -1, {}, false, weight_types[i]);
    if (!e.ok()) return Fail(e.status());
    weight_engines.push_back(std::move(*e));
    const std::string off = "off" + suffix(weight_types[i]);
    configs.push_back({off, weight_engines.back().get(), SparsityMode::kOff, off});
    configs.push_back(
        {sparsity + suffix(weight_types[i]), weight_engines.back().get(), sparse_mode, off});
  }
  std::unique_ptr<Engine> fallback_engine;
  if (cublas_baseline) {
    auto e = load(1);
    if (!e.ok()) return Fail(e.status());
    cublas_engine = std::move(*e);
    configs.insert(configs.begin(), {"off, cuBLAS", cublas_engine.get(), SparsityMode::kOff, off0});
  }
  if (fallback) {
    // The host-side cost model: batches of at least kFallbackTokens run in cuBLAS.
    auto f = load(kFallbackTokens);
    if (!f.ok()) return Fail(f.status());
    fallback_engine = std::move(*f);
    configs.push_back({absl::StrFormat("exact, cuBLAS from %d tokens", kFallbackTokens),
                       fallback_engine.get(), SparsityMode::kExact, off0});
  }
  std::unique_ptr<Engine> graph_engine;
  if (graphs) {
    auto g = load(0, /*step_graphs=*/true);
    if (!g.ok()) return Fail(g.status());
    graph_engine = std::move(*g);
    configs.push_back({"off, graphs", graph_engine.get(), SparsityMode::kOff, off0});
    configs.push_back({"exact, graphs", graph_engine.get(), SparsityMode::kExact, off0});
  }
  std::unique_ptr<Engine> union_engine;
  if (union_only) {
    auto u = load(0, false, /*per_token=*/0);
    if (!u.ok()) return Fail(u.status());
    union_engine = std::move(*u);
    configs.push_back({sparsity + ", union only", union_engine.get(), sparse_mode, off0});
  }
  std::unique_ptr<Engine> compare_engine, compare_union_engine;
  if (!compare_model.empty()) {
    const std::string name = std::filesystem::path(compare_model).filename().string();
    auto e = load(0, false, -1, compare_model);
    if (!e.ok()) return Fail(e.status());
    compare_engine = std::move(*e);
    if (compare_engine->config().hidden_size != engine.config().hidden_size ||
        compare_engine->config().intermediate_size != engine.config().intermediate_size ||
        compare_engine->config().num_layers != engine.config().num_layers)
      return Fail(absl::InvalidArgumentError("--compare_model has another shape than --model"));
    configs.push_back({sparsity + ", " + name, compare_engine.get(), sparse_mode, off0});
    if (union_only) {
      auto u = load(0, false, /*per_token=*/0, compare_model);
      if (!u.ok()) return Fail(u.status());
      compare_union_engine = std::move(*u);
      configs.push_back(
          {sparsity + ", union only, " + name, compare_union_engine.get(), sparse_mode, off0});
    }
  }
  const ModelConfig& c = engine.config();
  std::fprintf(stderr, "backend: %s\n", engine.backend().Describe().c_str());
  std::string bw_source = "given";
  if (bandwidth <= 0 && device == "cpu") {
    // The engine runs on every core (backend threads = 0), so the bandwidth is measured on as
    // many.
    const int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    bandwidth = MeasureReadBandwidthGBs(size_t(1) << 30, threads);
    bw_source = "measured";
  }
  std::map<std::pair<int, size_t>, Result> results;  // (batch, config) → result
  for (int round = 0; round < rounds; ++round) {
    for (int B : batches) {
      for (size_t ci = 0; ci < configs.size(); ++ci) {
        Engine& e = *configs[ci].engine;
        if (const absl::Status s = e.SetSparsityMode(configs[ci].mode); !s.ok()) return Fail(s);
        const int bs = e.kv_block_size();
        const int blocks_per_seq = (prompt_len + steps + 1 + bs - 1) / bs;
        Batch prefill;
        std::vector<std::vector<int32_t>> tables(B);
        for (int s = 0; s < B; ++s) {
          for (int b = 0; b < blocks_per_seq; ++b) tables[s].push_back(s * blocks_per_seq + b);
          for (int j = 0; j < prompt_len; ++j) prefill.token_ids.push_back(prompt_token(s, j));
          prefill.sequences.push_back({tables[s], 0, prompt_len, true});
        }
        auto out = e.Step(prefill);
        if (!out.ok()) return Fail(out.status());
        std::vector<int32_t> last(B);
        for (int s = 0; s < B; ++s) {
          const float* l = out->logits.data() + static_cast<size_t>(s) * c.vocab_size;
          last[s] = static_cast<int32_t>(std::max_element(l, l + c.vocab_size) - l);
        }
        double active = 0, uni = 0;
        const auto* cpu = dynamic_cast<const CpuBackend*>(&e.backend());
        const int64_t sparse_ns0 = cpu ? cpu->ffn_phase_ns().up + cpu->ffn_phase_ns().down : 0;
        const auto t0 = std::chrono::steady_clock::now();
        for (int step = 0; step < steps; ++step) {
          Batch b;
          for (int s = 0; s < B; ++s) {
            b.token_ids.push_back(last[s]);
            b.sequences.push_back({tables[s], prompt_len + step, 1, true});
          }
          auto r = e.Step(b);
          if (!r.ok()) return Fail(r.status());
          for (int s = 0; s < B; ++s) {
            const float* l = r->logits.data() + static_cast<size_t>(s) * c.vocab_size;
            last[s] = static_cast<int32_t>(std::max_element(l, l + c.vocab_size) - l);
          }
          for (const FfnStats& st : r->layer_stats) {
            active += st.active_ratio() / r->layer_stats.size();
            uni += st.union_ratio() / r->layer_stats.size();
          }
        }
        const double secs =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        Result& res = results[{B, ci}];
        res.tok_s.push_back(B * steps / secs);
        if (cpu) {
          const int64_t ns = cpu->ffn_phase_ns().up + cpu->ffn_phase_ns().down - sparse_ns0;
          res.sparse_share.push_back(ns / 1e9 / secs);
        }
        res.active = active / steps;
        res.union_ratio = uni / steps;
        const double kv_bytes = 2.0 * c.num_layers * c.num_kv_heads * c.head_dim *
                                (kv_dtype == "bf16" ? 2 : 4) * B * (prompt_len + steps / 2.0);
        const bool sparse = configs[ci].mode == SparsityMode::kExact &&
                            !(configs[ci].engine == fallback_engine.get() && B >= kFallbackTokens);
        res.bytes_per_step = e.WeightBytesPerStep(sparse ? res.union_ratio : 1.0) + kv_bytes;
      }
    }
  }
  std::printf("model: %s (%s, %s, d=%lld, F=%lld, %lld layers); backend %s", model.c_str(),
              c.model_type.c_str(), std::string(ActivationName(c.activation)).c_str(),
              (long long)c.hidden_size, (long long)c.intermediate_size, (long long)c.num_layers,
              engine.backend().Describe().c_str());
  if (bw_source == "measured") {
    // Measured again after the rounds: neighbours on a shared machine move it by ±30%, and the
    // roofline is the machine's capability, so the higher of the two counts.
    const int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    const double after = MeasureReadBandwidthGBs(size_t(1) << 30, threads);
    bw_source = absl::StrFormat("measured: %.1f before the rounds, %.1f after; the higher counts",
                                bandwidth, after);
    bandwidth = std::max(bandwidth, after);
  }
  if (bandwidth > 0) std::printf("; read bandwidth %.1f GB/s (%s)", bandwidth, bw_source.c_str());
  std::printf(
      "\n%d decode steps after an %d-token prefill, %s KV cache; median (min) of %d interleaved "
      "rounds\n\n",
      steps, prompt_len, kv_dtype.c_str(), rounds);
  // The compute roofline (CPU): the FMA peak measured here, against dense-equivalent FLOPs per
  // token (every product, 2 per weight element, and attention over the step's positions).
  const double fma_peak =
      device == "cpu"
          ? MeasureFmaPeakGflops(
                engine.backend().Describe().find("avx512") != std::string::npos ? "avx512" : "avx2",
                static_cast<int>(std::max(1u, std::thread::hardware_concurrency())))
          : 0;
  const double decode_flops_per_token =
      2.0 * (c.num_layers * (c.hidden_size * c.head_dim * (2 * c.num_heads + 2 * c.num_kv_heads) +
                             3.0 * c.hidden_size * c.intermediate_size) +
             c.hidden_size * c.vocab_size) +
      4.0 * c.num_layers * c.num_heads * c.head_dim * (prompt_len + steps / 2.0);
  if (fma_peak > 0)
    std::printf(
        "FMA peak %.1f GFLOP/s (measured); compute roofline: %.2f GFLOP per token "
        "(dense-equivalent)\n\n",
        fma_peak, decode_flops_per_token / 1e9);
  std::printf(
      "| batch | mode | tokens/s | active | union | MB read/step | roofline tokens/s | of roofline "
      "| of FMA peak (dense-equivalent) | vs off | vs off, cuBLAS | up + down, of step |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (int B : batches) {
    std::map<std::string, double> med_of;
    for (size_t ci = 0; ci < configs.size(); ++ci) {
      Result& r = results[{B, ci}];
      std::sort(r.tok_s.begin(), r.tok_s.end());
      med_of[configs[ci].label] = r.tok_s[r.tok_s.size() / 2];
    }
    for (size_t ci = 0; ci < configs.size(); ++ci) {
      const Result& r = results[{B, ci}];
      const double med = med_of[configs[ci].label];
      const double roof = bandwidth > 0 ? B / (r.bytes_per_step / (bandwidth * 1e9)) : 0;
      auto ratio = [&](const char* base) {
        return configs[ci].label == base || !med_of.count(base)
                   ? std::string()
                   : absl::StrFormat("%.2f×", med / med_of[base]);
      };
      const double of_peak = fma_peak > 0 ? med * decode_flops_per_token / 1e9 / fma_peak : 0;
      std::vector<double> share = r.sparse_share;
      std::sort(share.begin(), share.end());
      std::printf(
          "| %d | %s | %.2f (%.2f) | %.1f%% | %.1f%% | %.0f | %s | %s | %s | %s | %s | %s |\n", B,
          configs[ci].label.c_str(), med, r.tok_s.front(), r.active * 100, r.union_ratio * 100,
          r.bytes_per_step / 1e6, roof > 0 ? absl::StrFormat("%.2f", roof).c_str() : "n/a",
          roof > 0 ? absl::StrFormat("%.0f%%", 100 * med / roof).c_str() : "n/a",
          of_peak > 0 ? absl::StrFormat("%.0f%%", 100 * of_peak).c_str() : "n/a",
          ratio(configs[ci].base.c_str()).c_str(), ratio("off, cuBLAS").c_str(),
          share.empty() ? "n/a" : absl::StrFormat("%.0f%%", 100 * share[share.size() / 2]).c_str());
    }
  }
  if (!prefills.empty()) {
    const int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    const double peak = fma_peak;  // measured once, above
    // FLOPs of one prompt token: every product (2 per weight element) and attention (q·k and
    // p·v over the positions before it); the LM head runs once, for the last token.
    const double d = c.hidden_size, F = c.intermediate_size, hd = c.head_dim;
    const double proj = d * hd * (c.num_heads * 2 + c.num_kv_heads * 2);
    std::map<std::pair<int, size_t>, std::vector<double>> secs_of;
    std::map<std::pair<int, size_t>, double> union_of;
    for (int round = 0; round < rounds; ++round) {
      for (int P : prefills) {
        for (size_t ci = 0; ci < configs.size(); ++ci) {
          Engine& e = *configs[ci].engine;
          if (const absl::Status s = e.SetSparsityMode(configs[ci].mode); !s.ok()) return Fail(s);
          std::vector<int32_t> table;
          for (int b = 0; b < (P + e.kv_block_size() - 1) / e.kv_block_size(); ++b)
            table.push_back(b);
          double uni = 0;
          int chunks = 0;
          const auto t0 = std::chrono::steady_clock::now();
          for (int start = 0; start < P; start += prefill_chunk) {
            const int n = std::min(prefill_chunk, P - start);
            Batch b;
            for (int j = 0; j < n; ++j)
              b.token_ids.push_back(1 + ((start + j) * 17 + 5) % (c.vocab_size - 1));
            b.sequences.push_back({table, start, n, start + n == P});
            auto r = e.Step(b);
            if (!r.ok()) return Fail(r.status());
            for (const FfnStats& st : r->layer_stats)
              uni += st.union_ratio() / r->layer_stats.size();
            ++chunks;
          }
          secs_of[{P, ci}].push_back(
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
          union_of[{P, ci}] = uni / chunks;
        }
      }
    }
    std::printf(
        "\nPrefill: one sequence, chunks of %d tokens; median (min) of %d interleaved "
        "rounds. GFLOP/s are dense-equivalent (every mode is charged every product and "
        "attention): for `off` the kernels' real rate, for `exact` an effective one",
        prefill_chunk, rounds);
    if (peak > 0) std::printf("; FMA peak %.1f GFLOP/s (%d threads, measured)", peak, threads);
    std::printf(
        "\n\n| prompt | mode | tokens/s | union | dense-equivalent GFLOP/s | of FMA peak | vs off "
        "|\n"
        "|---|---|---|---|---|---|---|\n");
    for (int P : prefills) {
      std::map<std::string, double> med_of;
      for (size_t ci = 0; ci < configs.size(); ++ci) {
        std::vector<double>& v = secs_of[{P, ci}];
        std::sort(v.begin(), v.end());
        med_of[configs[ci].label] = v[v.size() / 2];
      }
      for (size_t ci = 0; ci < configs.size(); ++ci) {
        const std::vector<double>& v = secs_of[{P, ci}];
        const double med = v[v.size() / 2];
        // Dense-equivalent: every mode is charged the dense FFN.
        const double flops = P * c.num_layers * 2 * (proj + d * F * 3) +
                             c.num_layers * 4.0 * c.num_heads * hd * (P * (P + 1) / 2.0) +
                             2 * d * c.vocab_size;
        const double gf = flops / med / 1e9;
        std::printf("| %d | %s | %.1f (%.1f) | %.1f%% | %.1f | %s | %s |\n", P,
                    configs[ci].label.c_str(), P / med, P / v.back(), 100 * union_of[{P, ci}], gf,
                    peak > 0 ? absl::StrFormat("%.0f%%", 100 * gf / peak).c_str() : "n/a",
                    configs[ci].label == configs[ci].base || !med_of.count(configs[ci].base)
                        ? ""
                        : absl::StrFormat("%.2f×", med_of[configs[ci].base] / med).c_str());
      }
    }
  }
  // Whether step graphs stayed on through the run (the backend turns them off, saying why, when
  // a capture fails).
  if (graph_engine)
    std::printf("\ngraphs engine: %s\n", graph_engine->backend().Describe().c_str());
  return 0;
}

}  // namespace
}  // namespace sparsed::bench

int main(int argc, char** argv) { return sparsed::bench::Main(argc, argv); }
