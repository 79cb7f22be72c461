// Fidelity of the load-time weight types (--weights) on trained models: held-out perplexity in
// each type, and how far each type's logits move from the checkpoint's own on the same text
// (relative RMS error, and how often the top token agrees), in the engine's default sparsity
// mode (exact for the ReLU family: a quantized model's sparsity is its own).
//
// Usage: quant_fidelity --model DIR [--model DIR...] [--text FILE] [--tokens N] [--window N]
//                       [--weights checkpoint,q8_0,q4_0]
// Output: a Markdown table on stdout.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "engine/engine.h"
#include "engine/model/weight_format.h"
#include "tools/text_eval.h"

namespace sparsed::bench {
namespace {

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "error: %s\n", std::string(s.message()).c_str());
  return 1;
}

// Every position's logits of the windows (one window per step).
absl::StatusOr<std::vector<float>> AllLogits(Engine& e,
                                             const std::vector<std::vector<int32_t>>& windows) {
  std::vector<float> all;
  for (const auto& w : windows) {
    absl::StatusOr<StepOutput> out = StepWindow(e, w, /*all_logits=*/true);
    if (!out.ok()) return out.status();
    all.insert(all.end(), out->logits.begin(), out->logits.end());
  }
  return all;
}

int Main(int argc, char** argv) {
  std::vector<std::string> models;
  std::string text = "models/corpus/heldout.txt";
  int64_t tokens = 8192;
  int window = 256;
  std::vector<std::optional<DType>> types = {std::nullopt, DType::kQ8_0, DType::kQ4_0};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const bool has = i + 1 < argc;
    if (a == "--model" && has) {
      models.push_back(argv[++i]);
    } else if (a == "--text" && has) {
      text = argv[++i];
    } else if (a == "--tokens" && has) {
      tokens = std::max<int64_t>(2, std::atoll(argv[++i]));
    } else if (a == "--window" && has) {
      window = std::max(2, std::atoi(argv[++i]));
    } else if (a == "--weights" && has) {
      types.clear();
      for (absl::string_view name : absl::StrSplit(argv[++i], ',')) {
        auto w = ParseWeightFormat(name);
        if (!w.ok()) return Fail(w.status());
        types.push_back(*w);
      }
    } else {
      std::fprintf(stderr,
                   "usage: quant_fidelity --model DIR [--model DIR...] [--text FILE] [--tokens N] "
                   "[--window N] [--weights checkpoint,q8_0,q4_0]\n");
      return 2;
    }
  }
  if (models.empty()) models = {"models/sparsed-tiny", "models/sparsed-tiny-prosparse"};
  std::printf(
      "Held-out text: %s, first %lld tokens in windows of %d; logits compared at every position "
      "against the first type listed.\n\n"
      "| model | weights | linear weights MB | held-out ppl | vs first | logits rel. RMS error | "
      "top-1 agrees |\n|---|---|---|---|---|---|---|\n",
      text.c_str(), static_cast<long long>(tokens), window);
  for (const std::string& dir : models) {
    std::vector<float> base;
    double base_ppl = 0;
    for (size_t ti = 0; ti < types.size(); ++ti) {
      EngineOptions o;
      o.model_dir = dir;
      o.weights = types[ti];
      o.kv_blocks = (window + 15) / 16 + 1;
      absl::StatusOr<std::unique_ptr<Engine>> e = Engine::Load(o);
      if (!e.ok()) return Fail(e.status());
      auto windows = TokenWindows(**e, text, window, tokens);
      if (!windows.ok()) return Fail(windows.status());
      auto ppl = Perplexity(**e, *windows, 1);
      if (!ppl.ok()) return Fail(ppl.status());
      auto logits = AllLogits(**e, *windows);
      if (!logits.ok()) return Fail(logits.status());
      if (ti == 0) {
        base = *logits;
        base_ppl = ppl->perplexity();
      }
      const int64_t V = (*e)->config().vocab_size;
      double err = 0, ref = 0;
      int64_t agree = 0, rows = static_cast<int64_t>(base.size()) / V;
      for (int64_t r = 0; r < rows; ++r) {
        const float* a = logits->data() + r * V;
        const float* b = base.data() + r * V;
        int64_t ia = 0, ib = 0;
        for (int64_t v = 0; v < V; ++v) {
          err += (double(a[v]) - b[v]) * (double(a[v]) - b[v]);
          ref += double(b[v]) * b[v];
          if (a[v] > a[ia]) ia = v;
          if (b[v] > b[ib]) ib = v;
        }
        agree += ia == ib;
      }
      std::printf("| %s | %s | %.1f | %.3f | %+.2f%% | %.4f | %.1f%% |\n", dir.c_str(),
                  WeightFormatName(types[ti]).c_str(), (*e)->WeightBytesPerStep(1.0) / 1e6,
                  ppl->perplexity(), 100 * (ppl->perplexity() / base_ppl - 1),
                  std::sqrt(err / std::max(ref, 1e-30)),
                  100.0 * agree / std::max<int64_t>(rows, 1));
      std::fflush(stdout);
    }
  }
  return 0;
}

}  // namespace
}  // namespace sparsed::bench

int main(int argc, char** argv) { return sparsed::bench::Main(argc, argv); }
