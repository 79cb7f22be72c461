// Serving benchmark: drives the engine loop with a Poisson arrival process on a synthetic
// ReLU-family model and reports throughput, time to first token and inter-token latency
// percentiles, and the FFN union ratio against batch size (per layer) — the curve that decides
// when union sparsity pays. Usage:
//   serving_bench [--model DIR] [--requests N] [--rate R/s] [--max_new N] [--mode exact|off]
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "engine/engine.h"
#include "scheduler/engine_loop.h"
#include "tools/synthetic.h"

namespace sparsed::bench {
namespace {

class TimingSink : public TokenSink {
 public:
  void OnTokens(const TokenEvent& e) override {
    std::lock_guard<std::mutex> l(mu_);
    for (size_t i = 0; i < e.token_ids.size(); ++i) times_.push_back(absl::Now());
  }
  void OnFinish(FinishReason r, const absl::Status&, const RequestStats& st) override {
    std::lock_guard<std::mutex> l(mu_);
    reason_ = r;
    stats_ = st;
    done_ = true;
  }
  bool done() {
    std::lock_guard<std::mutex> l(mu_);
    return done_;
  }
  std::vector<absl::Time> times() {
    std::lock_guard<std::mutex> l(mu_);
    return times_;
  }
  RequestStats stats() {
    std::lock_guard<std::mutex> l(mu_);
    return stats_;
  }

 private:
  std::mutex mu_;
  std::vector<absl::Time> times_;
  RequestStats stats_;
  FinishReason reason_ = FinishReason::kError;
  bool done_ = false;
};

double Pct(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * v.size()))];
}

int Main(int argc, char** argv) {
  std::string model, mode = "exact";
  int requests = 96, max_new = 32;
  double rate = 40;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const bool has = i + 1 < argc;
    if (a == "--model" && has)
      model = argv[++i];
    else if (a == "--requests" && has)
      requests = std::atoi(argv[++i]);
    else if (a == "--rate" && has)
      rate = std::atof(argv[++i]);
    else if (a == "--max_new" && has)
      max_new = std::atoi(argv[++i]);
    else if (a == "--mode" && has)
      mode = argv[++i];
    else {
      std::fprintf(stderr,
                   "usage: serving_bench [--model DIR] [--requests N] [--rate R] [--max_new N] "
                   "[--mode exact|off]\n");
      return 2;
    }
  }
  if (model.empty()) {
    model = "bench-models/serving-1024x2816-relu2-a11-skew2";
    if (!std::filesystem::exists(model + "/config.json")) {
      std::fprintf(stderr, "writing %s (once)...\n", model.c_str());
      SyntheticModelSpec s;
      s.preset = "small";
      s.hidden = 1024;
      s.intermediate = 2816;
      s.layers = 8;
      s.heads = 16;
      s.kv_heads = 4;
      s.vocab = 8192;
      s.activation = "relu2";
      s.active_ratio = 0.11;
      s.skew = 2.0;
      s.tokenizer = false;
      const absl::Status st = MakeSyntheticModel(s, model);
      if (!st.ok()) {
        std::fprintf(stderr, "error: %s\n", std::string(st.message()).c_str());
        return 1;
      }
    }
  }
  EngineOptions eo;
  eo.model_dir = model;
  eo.load_tokenizer = false;
  eo.sparsity_mode = mode;
  eo.kv_cache_bytes = 256ll << 20;
  auto engine = Engine::Load(eo);
  if (!engine.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(engine.status().message()).c_str());
    return 1;
  }
  const ModelConfig cfg = (*engine)->config();
  const std::string backend = (*engine)->backend().Describe();
  // Union ratio by batch size (sequences in the step), per layer.
  std::mutex mu;
  std::map<int, std::vector<double>> union_sum;  // batch → per-layer sum
  std::map<int, double> active_sum;
  std::map<int, int> steps_at;
  EngineLoopOptions lo;
  lo.limits.max_num_seqs = 64;
  lo.limits.max_num_batched_tokens = 512;
  lo.max_waiting_requests = 4096;
  EngineLoop loop(*std::move(engine), lo, [&](const StepReport& r) {
    if (r.prefill_tokens > 0 || r.sequences == 0)
      return;  // decode-only steps: one token per sequence
    std::lock_guard<std::mutex> l(mu);
    auto& u = union_sum[r.sequences];
    u.resize(r.layer_stats.size(), 0.0);
    for (size_t i = 0; i < r.layer_stats.size(); ++i) {
      u[i] += r.layer_stats[i].union_ratio();
      active_sum[r.sequences] += r.layer_stats[i].active_ratio() / r.layer_stats.size();
    }
    ++steps_at[r.sequences];
  });
  std::mt19937_64 rng(7);
  std::exponential_distribution<double> gap(rate);
  std::vector<std::shared_ptr<TimingSink>> sinks;
  const absl::Time start = absl::Now();
  absl::Time next = start;
  for (int i = 0; i < requests; ++i) {
    absl::SleepFor(next - absl::Now());
    next += absl::Seconds(gap(rng));
    Request r;
    const int len = 8 + static_cast<int>(rng() % 56);
    r.prompt.push_back(1);
    for (int j = 1; j < len; ++j)
      r.prompt.push_back(3 + static_cast<int>(rng() % (cfg.vocab_size - 3)));
    r.sampling.temperature = 0;
    r.stopping.max_new_tokens = max_new;
    r.stopping.ignore_eos = true;
    sinks.push_back(std::make_shared<TimingSink>());
    r.sink = sinks.back();
    if (!loop.Submit(std::move(r)).ok()) return 1;
  }
  for (auto& s : sinks) {
    while (!s->done()) absl::SleepFor(absl::Milliseconds(5));
  }
  const double secs = absl::ToDoubleSeconds(absl::Now() - start);
  std::vector<double> ttft, itl, e2e, queue;
  int64_t tokens = 0;
  for (auto& s : sinks) {
    const RequestStats st = s->stats();
    ttft.push_back(absl::ToDoubleSeconds(st.time_to_first_token));
    e2e.push_back(absl::ToDoubleSeconds(st.total_time));
    queue.push_back(absl::ToDoubleSeconds(st.queue_time));
    tokens += st.generated_tokens;
    const auto t = s->times();
    for (size_t i = 1; i < t.size(); ++i) itl.push_back(absl::ToDoubleSeconds(t[i] - t[i - 1]));
  }
  std::printf("model %s (d=%lld, F=%lld, %lld layers, %s); backend %s; mode %s\n", model.c_str(),
              (long long)cfg.hidden_size, (long long)cfg.intermediate_size,
              (long long)cfg.num_layers, std::string(ActivationName(cfg.activation)).c_str(),
              backend.c_str(), mode.c_str());
  std::printf(
      "%d requests, Poisson arrivals at %.0f/s, prompts 8-63 tokens, %d new tokens each\n\n",
      requests, rate, max_new);
  std::printf(
      "| throughput tok/s | TTFT p50 / p95 / p99 ms | ITL p50 / p95 / p99 ms | queue p95 ms | e2e "
      "p50 / p95 s |\n");
  std::printf("|---|---|---|---|---|\n");
  std::printf("| %.1f | %.1f / %.1f / %.1f | %.1f / %.1f / %.1f | %.1f | %.2f / %.2f |\n\n",
              tokens / secs, 1e3 * Pct(ttft, .5), 1e3 * Pct(ttft, .95), 1e3 * Pct(ttft, .99),
              1e3 * Pct(itl, .5), 1e3 * Pct(itl, .95), 1e3 * Pct(itl, .99), 1e3 * Pct(queue, .95),
              Pct(e2e, .5), Pct(e2e, .95));
  std::printf(
      "Union ratio of active FFN neurons by decode batch size (mean over decode-only steps):\n\n");
  std::printf(
      "| batch | steps | active/token | union (mean of layers) | independence 1-(1-a)^B | per "
      "layer |\n|---|---|---|---|---|---|\n");
  for (auto& [b, u] : union_sum) {
    const int n = steps_at[b];
    double mean = 0;
    std::string per;
    for (double v : u) {
      mean += v / n / u.size();
      per += std::to_string(static_cast<int>(100 * v / n + 0.5)) + "% ";
    }
    const double a = active_sum[b] / n;
    std::printf("| %d | %d | %.1f%% | %.1f%% | %.1f%% | %s|\n", b, n, 100 * a, 100 * mean,
                100 * (1 - std::pow(1 - a, b)), per.c_str());
  }
  return 0;
}

}  // namespace
}  // namespace sparsed::bench

int main(int argc, char** argv) { return sparsed::bench::Main(argc, argv); }
