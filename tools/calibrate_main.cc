// sparsed-calibrate: CETT calibration for threshold mode. Runs the model over calibration text,
// finds each layer's threshold ε for a target CETT (or the CETT whose perplexity rises by P% over
// dense, --ppl_increase), and writes sparsity.json beside the model.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>

#include "absl/flags/flag.h"
#include "cli/cli_status.h"
#include "cli/engine_flags.h"
#include "cli/help_flags.h"
#include "engine/engine.h"
#include "tools/calibration.h"
#include "tools/text_eval.h"

ABSL_FLAG(std::string, text, "models/corpus/heldout.txt",
          "Calibration text, one document per line (default: the bundled corpus's held-out "
          "slice).");
ABSL_FLAG(double, cett, 0.2, "Target CETT per layer (ignored with --ppl_increase) [0, 1].");
ABSL_FLAG(double, ppl_increase, 0,
          "Percent: find the largest CETT at which perplexity on --text rises by at most this "
          "much over dense (CETT-PPL-p%); 0 = use --cett [0, 1000].");
ABSL_FLAG(double, tolerance_pp, 0.05,
          "Stop the --ppl_increase search within this many points below the target "
          "[0.001, 100].");
ABSL_FLAG(int64_t, calibration_tokens, 4096,
          "Tokens whose activations set the thresholds [1, 1073741824].");
ABSL_FLAG(int64_t, eval_tokens, 16384, "Tokens of --text scored for perplexity [1, 1073741824].");
ABSL_FLAG(int, window, 256, "Tokens per window of text [2, 65536].");
ABSL_FLAG(int, grid_points, 256, "Points of each layer's CETT(ε) curve [2, 65536].");
ABSL_FLAG(std::string, out, "", "Output file (default: MODEL/sparsity.json).");

int main(int argc, char** argv) {
  sparsed::ParseFlags(argc, argv, "calibrate_main.cc",
                      "Calibrates threshold mode (CETT) on --text and writes sparsity.json.\n"
                      "  sparsed-calibrate --model DIR [--cett 0.2 | --ppl_increase 1]");
  using namespace sparsed;
  const int window = absl::GetFlag(FLAGS_window);
  CalibrationOptions co;
  co.cett = absl::GetFlag(FLAGS_cett);
  if (absl::GetFlag(FLAGS_ppl_increase) > 0)
    co.ppl_increase_percent = absl::GetFlag(FLAGS_ppl_increase);
  co.tolerance_pp = absl::GetFlag(FLAGS_tolerance_pp);
  EngineOptions o;
  if (auto d = ApplyEngineFlags(o); !d.ok()) return UsageFail(d.status());
  o.sparsity_mode = "off";
  o.kv_block_size = 16;
  o.kv_blocks = co.batch * ((window + 15) / 16);
  auto engine_or = Engine::Load(o);
  if (!engine_or.ok()) return FailWith(engine_or.status());
  Engine& e = **engine_or;
  const auto t0 = std::chrono::steady_clock::now();
  auto progress = [&](const std::string& what, int done, int total) {
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::fprintf(stderr, "\rcalibrate: %s %d/%d (%.0f s)%s", what.c_str(), done, total, s,
                 done == total ? "\n" : "");
  };
  const std::string text = absl::GetFlag(FLAGS_text);
  auto calib = TokenWindows(e, text, window, absl::GetFlag(FLAGS_calibration_tokens));
  if (!calib.ok()) return FailWith(calib.status());
  auto eval = TokenWindows(e, text, window, absl::GetFlag(FLAGS_eval_tokens));
  if (!eval.ok()) return FailWith(eval.status());
  auto layers = CollectCalibration(e, *calib, absl::GetFlag(FLAGS_grid_points), progress);
  if (!layers.ok()) return FailWith(layers.status());
  if (co.ppl_increase_percent) std::fprintf(stderr, "\n");
  auto result = Calibrate(e, *layers, *eval, co, progress);
  if (!result.ok()) return FailWith(result.status());
  if (co.ppl_increase_percent) std::fprintf(stderr, "\n");

  SparsityProfile p;
  p.fingerprint = e.fingerprint();
  p.num_layers = static_cast<int>(e.config().num_layers);
  p.intermediate_size = static_cast<int>(e.config().intermediate_size);
  p.cett = result->cett;
  for (size_t l = 0; l < result->epsilons.size(); ++l) {
    p.layers.push_back({result->epsilons[l], result->active_ratios[l]});
  }
  p.perplexity = SparsityPerplexity{result->dense_ppl, result->sparse_ppl, co.ppl_increase_percent};
  p.calibration_text = std::filesystem::path(text).filename().string();
  int64_t tokens = 0;
  for (const auto& w : *calib) tokens += static_cast<int64_t>(w.size());
  p.calibration_tokens = tokens;
  std::string out = absl::GetFlag(FLAGS_out);
  if (out.empty()) {
    // Beside the model: in its directory, or beside a GGUF file.
    const std::filesystem::path m(o.model_dir);
    out = ((std::filesystem::is_regular_file(m) ? m.parent_path() : m) / "sparsity.json").string();
  }
  if (auto s = WriteSparsityProfile(p, out); !s.ok()) return FailWith(s);

  double mean = 0;
  std::printf("layer  epsilon       active\n");
  for (size_t l = 0; l < p.layers.size(); ++l) {
    std::printf("%5zu  %-12.6g  %5.1f%%\n", l, p.layers[l].epsilon, 100 * p.layers[l].active_ratio);
    mean += p.layers[l].active_ratio / p.layers.size();
  }
  std::printf(
      "CETT %.4f: active %.1f%% (mean over layers); perplexity %.4f dense, %.4f threshold "
      "(%+.2f%%) over %zu windows\nwrote %s\n",
      p.cett, 100 * mean, result->dense_ppl, result->sparse_ppl, result->increase_percent(),
      eval->size(), out.c_str());
  return 0;
}
