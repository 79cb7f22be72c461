// Serving benchmark: drives the engine loop with a Poisson arrival process on a synthetic
// ReLU-family model and reports throughput, time to first token and inter-token latency
// percentiles, and the FFN union ratio against batch size (per layer) — the curve that decides
// when union sparsity pays. Workloads: independent prompts (default), prompts behind a shared
// system prompt (--system_prompt N tokens), or multi-turn chats (--turns K: each turn's prompt is
// the whole conversation so far plus a new message). --prefix_cache both runs the same workload
// with the prefix cache off and then on, in one process. Usage:
//   serving_bench [--model DIR] [--requests N] [--rate R/s] [--max_new N] [--mode exact|off]
//                 [--system_prompt N] [--turns K] [--prefix_cache on|off|both]
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
    ids_.insert(ids_.end(), e.token_ids.begin(), e.token_ids.end());
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
  std::vector<int32_t> ids() {
    std::lock_guard<std::mutex> l(mu_);
    return ids_;
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
  std::vector<int32_t> ids_;
  RequestStats stats_;
  FinishReason reason_ = FinishReason::kError;
  bool done_ = false;
};

double Pct(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * v.size()))];
}

struct Workload {
  std::string model, mode = "exact";
  int requests = 96, max_new = 32, system_prompt = 0, turns = 1;
  double rate = 40;
};

struct RunResult {
  double secs = 0;
  int64_t tokens = 0, prompt_tokens = 0, cached_tokens = 0;
  std::vector<double> ttft, itl, e2e, queue;
  std::string backend;
  ModelConfig config;
  std::map<int, std::vector<double>> union_sum;  // decode batch → per-layer sum
  std::map<int, double> active_sum;
  std::map<int, int> steps_at;
};

// Random message tokens (ids ≥ 3: clear of BOS/EOS).
std::vector<int32_t> Message(std::mt19937_64& rng, int len, int64_t vocab) {
  std::vector<int32_t> m;
  for (int j = 0; j < len; ++j) m.push_back(3 + static_cast<int>(rng() % (vocab - 3)));
  return m;
}

absl::StatusOr<RunResult> RunOnce(const Workload& w, bool prefix_cache) {
  EngineOptions eo;
  eo.model_dir = w.model;
  eo.load_tokenizer = false;
  eo.sparsity_mode = w.mode;
  eo.kv_cache_bytes = 256ll << 20;
  auto engine = Engine::Load(eo);
  if (!engine.ok()) return engine.status();
  const ModelConfig cfg = (*engine)->config();
  RunResult res;
  res.backend = (*engine)->backend().Describe();
  res.config = cfg;
  std::mutex mu;
  EngineLoopOptions lo;
  lo.limits.max_num_seqs = 64;
  lo.limits.max_num_batched_tokens = 512;
  lo.max_waiting_requests = 4096;
  lo.prefix_cache.enabled = prefix_cache;
  EngineLoop loop(*std::move(engine), lo, [&](const StepReport& r) {
    if (r.prefill_tokens > 0 || r.sequences == 0)
      return;  // decode-only steps: one token per sequence
    std::lock_guard<std::mutex> l(mu);
    auto& u = res.union_sum[r.sequences];
    u.resize(r.layer_stats.size(), 0.0);
    for (size_t i = 0; i < r.layer_stats.size(); ++i) {
      u[i] += r.layer_stats[i].union_ratio();
      res.active_sum[r.sequences] += r.layer_stats[i].active_ratio() / r.layer_stats.size();
    }
    ++res.steps_at[r.sequences];
  });
  // The same stream of prompts and arrival times for every run.
  std::mt19937_64 rng(7);
  std::exponential_distribution<double> gap(w.rate);
  std::vector<int32_t> system = {1};
  if (w.system_prompt > 0) {
    const auto m = Message(rng, w.system_prompt - 1, cfg.vocab_size);
    system.insert(system.end(), m.begin(), m.end());
  }
  // A conversation: its history, the sink of its turn in flight, turns left.
  struct Conversation {
    std::vector<int32_t> history;
    std::shared_ptr<TimingSink> sink;
    int turns_left = 0;
    std::vector<int32_t> answer;
  };
  std::vector<Conversation> convs;
  std::vector<std::shared_ptr<TimingSink>> sinks;
  auto submit = [&](Conversation& c) -> absl::Status {
    Request r;
    const auto m = Message(rng, 8 + static_cast<int>(rng() % 56), cfg.vocab_size);
    c.history.insert(c.history.end(), m.begin(), m.end());
    r.prompt = c.history;
    r.sampling.temperature = 0;
    r.stopping.max_new_tokens = w.max_new;
    r.stopping.ignore_eos = true;
    c.sink = std::make_shared<TimingSink>();
    sinks.push_back(c.sink);
    r.sink = c.sink;
    --c.turns_left;
    return loop.Submit(std::move(r)).status();
  };
  const absl::Time start = absl::Now();
  absl::Time next = start;
  const int conversations = std::max(1, w.requests / w.turns);
  convs.reserve(conversations);
  int started = 0;
  for (;;) {
    // New conversations arrive by the Poisson process; later turns follow their answers at once.
    if (started < conversations && absl::Now() >= next) {
      next += absl::Seconds(gap(rng));
      convs.push_back({system, nullptr, w.turns, {}});
      if (auto st = submit(convs.back()); !st.ok()) return st;
      ++started;
    }
    bool all_done = started == conversations;
    for (Conversation& c : convs) {
      if (!c.sink->done()) {
        all_done = false;
        continue;
      }
      if (c.turns_left == 0) continue;
      all_done = false;
      const auto ids = c.sink->ids();
      c.history.insert(c.history.end(), ids.begin(), ids.end());
      if (auto st = submit(c); !st.ok()) return st;
    }
    if (all_done) break;
    absl::SleepFor(absl::Milliseconds(1));
  }
  res.secs = absl::ToDoubleSeconds(absl::Now() - start);
  for (auto& s : sinks) {
    const RequestStats st = s->stats();
    res.ttft.push_back(absl::ToDoubleSeconds(st.time_to_first_token));
    res.e2e.push_back(absl::ToDoubleSeconds(st.total_time));
    res.queue.push_back(absl::ToDoubleSeconds(st.queue_time));
    res.tokens += st.generated_tokens;
    res.prompt_tokens += st.prompt_tokens;
    res.cached_tokens += st.cached_prompt_tokens;
    const auto t = s->times();
    for (size_t i = 1; i < t.size(); ++i) res.itl.push_back(absl::ToDoubleSeconds(t[i] - t[i - 1]));
  }
  return res;
}

int Main(int argc, char** argv) {
  Workload w;
  std::string cache = "on";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const bool has = i + 1 < argc;
    if (a == "--model" && has)
      w.model = argv[++i];
    else if (a == "--requests" && has)
      w.requests = std::atoi(argv[++i]);
    else if (a == "--rate" && has)
      w.rate = std::atof(argv[++i]);
    else if (a == "--max_new" && has)
      w.max_new = std::atoi(argv[++i]);
    else if (a == "--mode" && has)
      w.mode = argv[++i];
    else if (a == "--system_prompt" && has)
      w.system_prompt = std::atoi(argv[++i]);
    else if (a == "--turns" && has)
      w.turns = std::atoi(argv[++i]);
    else if (a == "--prefix_cache" && has)
      cache = argv[++i];
    else {
      std::fprintf(stderr,
                   "usage: serving_bench [--model DIR] [--requests N] [--rate R] [--max_new N] "
                   "[--mode exact|off] [--system_prompt N] [--turns K] "
                   "[--prefix_cache on|off|both]\n");
      return 2;
    }
  }
  if (w.requests < 1 || w.rate <= 0 || w.max_new < 1 || w.system_prompt < 0 || w.turns < 1 ||
      (cache != "on" && cache != "off" && cache != "both")) {
    std::fprintf(stderr,
                 "error: --requests, --max_new and --turns must be ≥ 1, --rate > 0, "
                 "--system_prompt ≥ 0, --prefix_cache on|off|both\n");
    return 2;
  }
  if (w.model.empty()) {
    w.model = "bench-models/serving-1024x2816-relu2-a11-skew2";
    if (!std::filesystem::exists(w.model + "/config.json")) {
      std::fprintf(stderr, "writing %s (once)...\n", w.model.c_str());
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
      const absl::Status st = MakeSyntheticModel(s, w.model);
      if (!st.ok()) {
        std::fprintf(stderr, "error: %s\n", std::string(st.message()).c_str());
        return 1;
      }
    }
  }
  std::vector<bool> runs;
  if (cache != "on") runs.push_back(false);
  if (cache != "off") runs.push_back(true);
  std::vector<RunResult> results;
  for (bool on : runs) {
    std::fprintf(stderr, "running with the prefix cache %s...\n", on ? "on" : "off");
    auto r = RunOnce(w, on);
    if (!r.ok()) {
      std::fprintf(stderr, "error: %s\n", std::string(r.status().message()).c_str());
      return 1;
    }
    results.push_back(*std::move(r));
  }
  const ModelConfig& cfg = results[0].config;
  std::printf("model %s (d=%lld, F=%lld, %lld layers, %s); backend %s; mode %s\n", w.model.c_str(),
              (long long)cfg.hidden_size, (long long)cfg.intermediate_size,
              (long long)cfg.num_layers, std::string(ActivationName(cfg.activation)).c_str(),
              results[0].backend.c_str(), w.mode.c_str());
  if (w.turns > 1) {
    std::printf("%d conversations of %d turns, Poisson arrivals at %g/s", w.requests / w.turns,
                w.turns, w.rate);
  } else {
    std::printf("%d requests, Poisson arrivals at %g/s", w.requests, w.rate);
  }
  if (w.system_prompt > 0) std::printf(", a shared %d-token system prompt", w.system_prompt);
  std::printf(", new messages 8-63 tokens, %d new tokens each\n\n", w.max_new);
  std::printf(
      "| prefix cache | throughput tok/s | prompt tokens reused | TTFT p50 / p95 / p99 ms | ITL "
      "p50 / p95 / p99 ms | queue p95 ms | e2e p50 / p95 s |\n");
  std::printf("|---|---|---|---|---|---|---|\n");
  for (size_t i = 0; i < results.size(); ++i) {
    const RunResult& r = results[i];
    std::printf(
        "| %s | %.1f | %.0f%% | %.1f / %.1f / %.1f | %.1f / %.1f / %.1f | %.1f | %.2f / %.2f |\n",
        runs[i] ? "on" : "off", r.tokens / r.secs,
        100.0 * r.cached_tokens / std::max<int64_t>(1, r.prompt_tokens), 1e3 * Pct(r.ttft, .5),
        1e3 * Pct(r.ttft, .95), 1e3 * Pct(r.ttft, .99), 1e3 * Pct(r.itl, .5), 1e3 * Pct(r.itl, .95),
        1e3 * Pct(r.itl, .99), 1e3 * Pct(r.queue, .95), Pct(r.e2e, .5), Pct(r.e2e, .95));
  }
  const RunResult& last = results.back();
  std::printf(
      "\nUnion ratio of active FFN neurons by decode batch size (mean over decode-only steps, "
      "last run):\n\n");
  std::printf(
      "| batch | steps | active/token | union (mean of layers) | independence 1-(1-a)^B | per "
      "layer |\n|---|---|---|---|---|---|\n");
  for (auto& [b, u] : last.union_sum) {
    const int n = last.steps_at.at(b);
    double mean = 0;
    std::string per;
    for (double v : u) {
      mean += v / n / u.size();
      per += std::to_string(static_cast<int>(100 * v / n + 0.5)) + "% ";
    }
    const double a = last.active_sum.at(b) / n;
    std::printf("| %d | %d | %.1f%% | %.1f%% | %.1f%% | %s|\n", b, n, 100 * a, 100 * mean,
                100 * (1 - std::pow(1 - a, b)), per.c_str());
  }
  return 0;
}

}  // namespace
}  // namespace sparsed::bench

int main(int argc, char** argv) { return sparsed::bench::Main(argc, argv); }
