// sparsed-reorder: renumbers each FFN layer's neurons (tools/neuron_order.h: most active first, or
// greedy co-activation blocks) learned from the masks of real text, writes the permuted checkpoint
// in the same Hugging Face layout, and reports the block-level union ratio before and after on
// held-out sequences (the odd-numbered windows of --text; the order is learned on the even-numbered
// ones).
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_format.h"
#include "cli/cli_status.h"
#include "cli/help_flags.h"
#include "cli/mask_source_flags.h"
#include "engine/backend/ffn_types.h"
#include "engine/engine.h"
#include "tools/mask_recorder.h"
#include "tools/neuron_order.h"
#include "tools/union_profile.h"

ABSL_FLAG(std::string, out, "", "Directory for the permuted checkpoint.");
ABSL_FLAG(std::string, order, "frequency",
          "frequency (most active neurons first) | coactivation (greedy blocks of --block).");
ABSL_FLAG(int, block, 16, "Neurons per block for --order coactivation [1, 4096].");

namespace {

using sparsed::LayerMasks;

// The sequences of `m` whose index has the given parity, renumbered from 0.
LayerMasks SequencesOfParity(const LayerMasks& m, int parity) {
  LayerMasks out(m.neurons());
  int next = 0;
  for (size_t s = parity; s < m.sequences().size(); s += 2, ++next) {
    for (int64_t t : m.sequences()[s]) out.AddBits(next, m.Bits(t));
  }
  return out;
}

std::string Pct(double v) { return std::isnan(v) ? "–" : absl::StrFormat("%.1f%%", 100 * v); }

}  // namespace

int main(int argc, char** argv) {
  sparsed::ParseFlags(
      argc, argv, "reorder_main.cc",
      "Writes a copy of a model with FFN neurons reordered (most active first, or co-activation "
      "blocks).\n"
      "  sparsed-reorder --model DIR --out DIR [--order frequency|coactivation] [--text FILE]");
  using namespace sparsed;
  const std::string out_dir = absl::GetFlag(FLAGS_out);
  if (absl::GetFlag(FLAGS_order) != "frequency" && absl::GetFlag(FLAGS_order) != "coactivation") {
    std::fprintf(stderr, "error: --order: '%s' is not frequency or coactivation\n",
                 absl::GetFlag(FLAGS_order).c_str());
    return kUsageExit;
  }
  if (out_dir.empty()) {
    std::fprintf(stderr, "error: --out is required\n");
    return kUsageExit;
  }
  const absl::StatusOr<MaskSource> source = MaskSourceFromFlags();
  if (!source.ok()) return UsageFail(source.status());
  const std::string model = source->engine.model_dir;
  auto checkpoint = Checkpoint::Open(model);
  if (!checkpoint.ok()) return FailWith(checkpoint.status());
  auto recorded = LoadAndRecordMasks(*source);
  if (!recorded.ok()) return FailWith(recorded.status());
  if (recorded->windows.size() < 2)
    return FailWith(absl::InvalidArgumentError(
        "need at least two windows of text (one to learn the order, one to check it)"));
  const bool threshold = recorded->threshold;
  const std::vector<LayerMasks>* masks = &recorded->layers;
  const auto* windows = &recorded->windows;

  const int L = static_cast<int>(masks->size()), block = absl::GetFlag(FLAGS_block);
  const NeuronOrderKind kind = absl::GetFlag(FLAGS_order) == "coactivation"
                                   ? NeuronOrderKind::kCoActivation
                                   : NeuronOrderKind::kFrequency;
  std::vector<std::vector<int32_t>> perms;
  std::vector<std::vector<UnionPoint>> before, after;
  const std::vector<int> sizes = {1, 4, 8, 16, 32};
  for (int l = 0; l < L; ++l) {
    const LayerMasks learn = SequencesOfParity((*masks)[l], 0);
    const LayerMasks check = SequencesOfParity((*masks)[l], 1);
    std::vector<int64_t> tokens(static_cast<size_t>(learn.tokens()));
    for (size_t t = 0; t < tokens.size(); ++t) tokens[t] = static_cast<int64_t>(t);
    perms.push_back(NeuronOrder(learn, tokens, kind, block));
    const int samples = UnionSamplesFlag();
    before.push_back(UnionCurve(check, sizes, samples, 99 + l));
    after.push_back(UnionCurve(PermuteNeurons(check, perms.back()), sizes, samples, 99 + l));
    std::fprintf(stderr, "reorder: layer %d/%d ordered\n", l + 1, L);
  }
  if (auto s = WritePermutedCheckpoint(**checkpoint, perms, out_dir); !s.ok()) return FailWith(s);
  std::fprintf(stderr, "reorder: wrote %s\n", out_dir.c_str());

  std::printf(
      "Model `%s`, %s masks; %s order learned per layer on %zu windows, checked on the other "
      "%zu: share of aligned blocks read by a batch of tokens from different sequences, mean "
      "over layers, before → after.\n\n| batch | neurons |",
      model.c_str(), threshold ? "threshold" : "exact", absl::GetFlag(FLAGS_order).c_str(),
      (windows->size() + 1) / 2, windows->size() / 2);
  for (int b = 1; b < kNumProfileBlocks; ++b) std::printf(" blocks of %d |", kProfileBlocks[b]);
  std::printf("\n|---|---|");
  for (int b = 1; b < kNumProfileBlocks; ++b) std::printf("---|");
  std::printf("\n");
  for (size_t k = 0; k < sizes.size(); ++k) {
    double x[kNumProfileBlocks] = {}, y[kNumProfileBlocks] = {};
    for (int l = 0; l < L; ++l) {
      for (int b = 0; b < kNumProfileBlocks; ++b) {
        x[b] += before[l][k].across_blocks[b] / L;
        y[b] += after[l][k].across_blocks[b] / L;
      }
    }
    std::printf("| %d | %s |", sizes[k], Pct(x[0]).c_str());
    for (int b = 1; b < kNumProfileBlocks; ++b)
      std::printf(" %s → %s |", Pct(x[b]).c_str(), Pct(y[b]).c_str());
    std::printf("\n");
  }
  return 0;
}
