// sparsed-generate: runs one prompt through the engine (no server) and prints the continuation,
// tokens/s and the per-layer sparsity the step saw. For trying a checkpoint before serving it.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "cli/cli_status.h"
#include "cli/engine_flags.h"
#include "cli/help_flags.h"
#include "engine/backend/ffn_types.h"
#include "engine/engine.h"
#include "engine/sampling/sampler.h"

ABSL_FLAG(std::string, prompt, "The quick brown fox", "Prompt text.");
ABSL_FLAG(int, max_new_tokens, 32, "Tokens to generate [1, 1048576].");
ABSL_FLAG(double, temperature, 0.0, "Sampling temperature (0 = greedy) [0, 100].");
ABSL_FLAG(int, top_k, 0, "Top-k (0 = off) [0, 1048576].");
ABSL_FLAG(double, top_p, 1.0, "Top-p [0.000001, 1].");
ABSL_FLAG(uint64_t, seed, 0, "Sampling seed [0, 18446744073709551615].");
ABSL_FLAG(bool, stats, false, "Print per-layer active and union ratios.");

int main(int argc, char** argv) {
  sparsed::ParseFlags(argc, argv, "generate_main.cc",
                      "Generates a continuation of --prompt with the model in --model.");
  using namespace sparsed;
  EngineOptions o;
  if (auto s = ApplySparsityFlag(o); !s.ok()) return UsageFail(s);
  if (auto d = ApplyEngineFlags(o); !d.ok()) return UsageFail(d.status());
  o.kv_cache_bytes = 512ll << 20;
  auto engine_or = Engine::Load(o);
  if (!engine_or.ok()) return FailWith(engine_or.status());
  Engine& e = **engine_or;
  SamplingParams sp;
  sp.temperature = static_cast<float>(absl::GetFlag(FLAGS_temperature));
  sp.top_k = absl::GetFlag(FLAGS_top_k);
  sp.top_p = static_cast<float>(absl::GetFlag(FLAGS_top_p));
  sp.seed = absl::GetFlag(FLAGS_seed);
  sp.has_seed = true;
  if (auto s = ValidateSamplingParams(sp); !s.ok()) return FailWith(s);
  auto ids = e.tokenizer()->Encode(absl::GetFlag(FLAGS_prompt));
  if (!ids.ok()) return FailWith(ids.status());
  std::vector<int32_t> prompt = {e.config().bos_token_id};
  prompt.insert(prompt.end(), ids->begin(), ids->end());
  const int max_new = absl::GetFlag(FLAGS_max_new_tokens);
  const int total = static_cast<int>(prompt.size()) + max_new;
  if (total > e.kv_blocks() * e.kv_block_size()) {
    std::fprintf(stderr, "error: prompt + max_new_tokens = %d tokens exceed the KV cache (%d)\n",
                 total, e.kv_blocks() * e.kv_block_size());
    return sparsed::kUsageExit;
  }
  std::vector<int32_t> table;
  for (int b = 0; b * e.kv_block_size() < total; ++b) table.push_back(b);
  Sampler sampler(sp, 0);
  std::vector<int32_t> generated;
  std::vector<FfnStats> layer_sum(e.config().num_layers);
  const auto t0 = std::chrono::steady_clock::now();
  double first_token_s = 0;
  Batch b;
  b.token_ids = prompt;
  b.sequences.push_back({table, 0, static_cast<int32_t>(prompt.size()), true});
  for (int step = 0; step < max_new; ++step) {
    auto out = e.Step(b);
    if (!out.ok()) return FailWith(out.status());
    if (step == 0)
      first_token_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    for (size_t l = 0; l < out->layer_stats.size(); ++l) {
      layer_sum[l].tokens += out->layer_stats[l].tokens;
      layer_sum[l].neurons = out->layer_stats[l].neurons;
      layer_sum[l].active_sum += out->layer_stats[l].active_sum;
      layer_sum[l].union_size += out->layer_stats[l].union_size;
    }
    const SampledToken tok = sampler.Sample(
        out->logits.data(), static_cast<int>(e.config().vocab_size), prompt, generated);
    generated.push_back(tok.token);
    const auto& eos = e.config().eos_token_ids;
    if (std::find(eos.begin(), eos.end(), tok.token) != eos.end()) break;
    b.token_ids = {tok.token};
    b.sequences[0].start_position = static_cast<int32_t>(prompt.size() + generated.size() - 1);
    b.sequences[0].num_tokens = 1;
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  // Decoded after the prompt's last token, so the continuation keeps its leading space.
  auto text = e.tokenizer()->DecodeAfter({prompt.back()}, generated);
  if (!text.ok()) return FailWith(text.status());
  std::printf("%s%s\n", absl::GetFlag(FLAGS_prompt).c_str(), text->c_str());
  std::fprintf(
      stderr,
      "%zu prompt tokens, %zu generated; first token %.3f s; %.2f tokens/s decode; sparsity %s\n",
      prompt.size(), generated.size(), first_token_s,
      generated.size() > 1 ? (generated.size() - 1) / (secs - first_token_s) : 0.0,
      std::string(SparsityModeName(e.sparsity_mode())).c_str());
  if (absl::GetFlag(FLAGS_stats)) {
    const int steps = static_cast<int>(generated.size());
    for (size_t l = 0; l < layer_sum.size(); ++l) {
      std::fprintf(stderr, "layer %2zu: active %.1f%%, union %.1f%%\n", l,
                   100 * layer_sum[l].active_ratio(),
                   100.0 * layer_sum[l].union_size / std::max(1, steps) /
                       std::max<int64_t>(1, layer_sum[l].neurons));
    }
  }
  return 0;
}
