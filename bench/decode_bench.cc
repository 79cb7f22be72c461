// End-to-end decode benchmark of the engine alone: a TinyLlama-1.1B-shape FATReLU model at ~11%
// active neurons (hot-neuron skew), batch 1, 4 and 16, `exact` vs `off`, interleaved rounds.
// Reports tokens/s and the fraction of the bandwidth roofline: weight (and KV) bytes a step
// actually reads ÷ the machine's read bandwidth, measured in the same run.
// Usage: decode_bench [--model DIR] [--steps N] [--rounds N] [--batches 1,4,16]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "bench/bandwidth.h"
#include "engine/engine.h"
#include "tools/synthetic.h"

namespace sparsed::bench {
namespace {

struct Result {
  std::vector<double> tok_s;
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

int Main(int argc, char** argv) {
  std::string model;
  int steps = 16, rounds = 3;
  std::vector<int> batches = {1, 4, 16};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--model" && i + 1 < argc)
      model = argv[++i];
    else if (a == "--steps" && i + 1 < argc)
      steps = std::atoi(argv[++i]);
    else if (a == "--rounds" && i + 1 < argc)
      rounds = std::atoi(argv[++i]);
    else if (a == "--batches" && i + 1 < argc)
      batches = ParseList(argv[++i]);
    else {
      std::fprintf(
          stderr,
          "usage: decode_bench [--model DIR] [--steps N] [--rounds N] [--batches 1,4,16]\n");
      return 2;
    }
  }
  if (model.empty()) {
    model = "bench-models/tinyllama-1.1b-fatrelu-a11-skew2";
    if (!std::filesystem::exists(model + "/config.json")) {
      std::fprintf(stderr,
                   "writing %s (TinyLlama-1.1B shape, fatrelu, 11%% active, skew 2; once)...\n",
                   model.c_str());
      SyntheticModelSpec s;
      s.preset = "tinyllama-1.1b";
      s.model_type = "sparsellama";
      s.activation = "fatrelu";
      s.active_ratio = 0.11;
      s.skew = 2.0;
      s.tokenizer = false;
      const absl::Status st = MakeSyntheticModel(
          s, model, [](const std::string& m) { std::fprintf(stderr, "  %s\n", m.c_str()); });
      if (!st.ok()) {
        std::fprintf(stderr, "error: %s\n", std::string(st.message()).c_str());
        return 1;
      }
    }
  }
  EngineOptions o;
  o.model_dir = model;
  o.load_tokenizer = false;
  o.kv_blocks = 512;
  o.sparsity_mode = "exact";
  o.progress = [](int done, int total, const std::string&) {
    if (done == total || done % 8 == 0)
      std::fprintf(stderr, "loading: %d/%d layers\n", done, total);
  };
  auto engine_or = Engine::Load(o);
  if (!engine_or.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(engine_or.status().message()).c_str());
    return 1;
  }
  Engine& engine = **engine_or;
  const ModelConfig& c = engine.config();
  // The engine runs on every core (backend threads = 0), so the bandwidth is measured on as many.
  const int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::fprintf(stderr, "backend: %s\n", engine.backend().Describe().c_str());
  const double bw = MeasureReadBandwidthGBs(size_t(1) << 30, threads);
  const int prompt_len = 8;
  std::map<std::pair<int, int>, Result> results;  // (batch, mode) → result
  for (int round = 0; round < rounds; ++round) {
    for (int B : batches) {
      for (SparsityMode mode : {SparsityMode::kExact, SparsityMode::kOff}) {
        if (const absl::Status s = engine.SetSparsityMode(mode); !s.ok()) {
          std::fprintf(stderr, "%s\n", s.ToString().c_str());
          return 1;
        }
        const int bs = engine.kv_block_size();
        const int blocks_per_seq = (prompt_len + steps + 1 + bs - 1) / bs;
        Batch prefill;
        std::vector<std::vector<int32_t>> tables(B);
        for (int s = 0; s < B; ++s) {
          for (int b = 0; b < blocks_per_seq; ++b) tables[s].push_back(s * blocks_per_seq + b);
          for (int j = 0; j < prompt_len; ++j)
            prefill.token_ids.push_back(1 + (s * 131 + j * 17) % (c.vocab_size - 1));
          prefill.sequences.push_back({tables[s], 0, prompt_len, true});
        }
        auto out = engine.Step(prefill);
        if (!out.ok()) {
          std::fprintf(stderr, "error: %s\n", std::string(out.status().message()).c_str());
          return 1;
        }
        std::vector<int32_t> last(B);
        for (int s = 0; s < B; ++s) {
          const float* l = out->logits.data() + static_cast<size_t>(s) * c.vocab_size;
          last[s] = static_cast<int32_t>(std::max_element(l, l + c.vocab_size) - l);
        }
        double active = 0, uni = 0;
        const auto t0 = std::chrono::steady_clock::now();
        for (int step = 0; step < steps; ++step) {
          Batch b;
          for (int s = 0; s < B; ++s) {
            b.token_ids.push_back(last[s]);
            b.sequences.push_back({tables[s], prompt_len + step, 1, true});
          }
          auto r = engine.Step(b);
          if (!r.ok()) {
            std::fprintf(stderr, "error: %s\n", std::string(r.status().message()).c_str());
            return 1;
          }
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
        Result& res = results[{B, static_cast<int>(mode)}];
        res.tok_s.push_back(B * steps / secs);
        res.active = active / steps;
        res.union_ratio = uni / steps;
        const double kv_bytes =
            2.0 * c.num_layers * c.num_kv_heads * c.head_dim * 4 * B * (prompt_len + steps / 2.0);
        res.bytes_per_step =
            engine.WeightBytesPerStep(mode == SparsityMode::kExact ? res.union_ratio : 1.0) +
            kv_bytes;
      }
    }
  }
  std::printf(
      "model: %s (%s, %s, d=%lld, F=%lld, %lld layers); backend %s; read bandwidth %.1f GB/s\n",
      model.c_str(), c.model_type.c_str(), std::string(ActivationName(c.activation)).c_str(),
      (long long)c.hidden_size, (long long)c.intermediate_size, (long long)c.num_layers,
      engine.backend().Describe().c_str(), bw);
  std::printf(
      "%d decode steps after an %d-token prefill; median (min) of %d interleaved rounds\n\n", steps,
      prompt_len, rounds);
  std::printf(
      "| batch | mode | tokens/s | active | union | MB read/step | roofline tokens/s | of roofline "
      "| exact / off |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|\n");
  for (int B : batches) {
    double off_med = 0;
    for (SparsityMode mode : {SparsityMode::kOff, SparsityMode::kExact}) {
      Result& r = results[{B, static_cast<int>(mode)}];
      std::sort(r.tok_s.begin(), r.tok_s.end());
      const double med = r.tok_s[r.tok_s.size() / 2];
      if (mode == SparsityMode::kOff) off_med = med;
      const double roof = B / (r.bytes_per_step / (bw * 1e9));
      std::printf("| %d | %s | %.2f (%.2f) | %.1f%% | %.1f%% | %.0f | %.2f | %.0f%% | %s |\n", B,
                  std::string(SparsityModeName(mode)).c_str(), med, r.tok_s.front(), r.active * 100,
                  r.union_ratio * 100, r.bytes_per_step / 1e6, roof, 100 * med / roof,
                  mode == SparsityMode::kExact
                      ? (std::to_string(med / off_med).substr(0, 4) + "×").c_str()
                      : "");
    }
  }
  return 0;
}

}  // namespace
}  // namespace sparsed::bench

int main(int argc, char** argv) { return sparsed::bench::Main(argc, argv); }
