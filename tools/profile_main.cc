// sparsed-profile: records every layer's neuron masks from real text and reports, per batch size,
// the union ratio of tokens from different sequences and of consecutive tokens, beside the
// independence baseline 1 − (1 − a)^B, at neuron level and for aligned blocks of 8–64 neurons;
// then the union per tile when a batch's tokens are split into tiles (of --tiles tokens) in
// arrival order, by mask similarity, or from one sequence. Writes PREFIX.md (tables), PREFIX.csv
// and PREFIX.tiles.csv (per layer) and, when gnuplot is installed, PREFIX.png.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cli/cli_status.h"
#include "cli/help_flags.h"
#include "cli/mask_source_flags.h"
#include "engine/backend/ffn_types.h"
#include "engine/engine.h"
#include "tools/mask_recorder.h"
#include "tools/union_profile.h"

ABSL_FLAG(std::vector<std::string>, tiles, std::vector<std::string>({"8", "16"}),
          "Tile sizes (tokens) for the tiling table, comma-separated, each in [1, 1024].");
ABSL_FLAG(std::string, out, "profile", "Output prefix: PREFIX.md, PREFIX.csv, PREFIX.png.");

namespace {

std::string Pct(double v) { return std::isnan(v) ? "–" : absl::StrFormat("%.1f%%", 100 * v); }

}  // namespace

int main(int argc, char** argv) {
  sparsed::ParseFlags(argc, argv, "profile_main.cc",
                      "Measures per-layer active and union ratios under batching.\n"
                      "  sparsed-profile --model DIR [--sparsity exact|threshold] [--out PREFIX]");
  using namespace sparsed;
  std::vector<int> tile_sizes;
  for (const std::string& t : absl::GetFlag(FLAGS_tiles)) {
    int v = 0;
    if (!absl::SimpleAtoi(t, &v) || v < 1 || v > 1024) {
      std::fprintf(stderr, "error: --tiles: '%s' is not a tile size in [1, 1024]\n", t.c_str());
      return sparsed::kUsageExit;
    }
    tile_sizes.push_back(v);
  }
  const absl::StatusOr<MaskSource> source = MaskSourceFromFlags();
  if (!source.ok()) return UsageFail(source.status());
  const std::string model = source->engine.model_dir;
  auto recorded = LoadAndRecordMasks(*source);
  if (!recorded.ok()) return FailWith(recorded.status());
  const bool threshold = recorded->threshold;
  const std::vector<LayerMasks>& masks = recorded->layers;
  const int L = static_cast<int>(masks.size());
  const int F = masks.empty() ? 0 : masks[0].neurons();

  const std::vector<int> sizes = {1, 2, 4, 8, 16, 32, 64};
  std::vector<std::vector<UnionPoint>> curves;
  for (int l = 0; l < L; ++l)
    curves.push_back(UnionCurve(masks[l], sizes, UnionSamplesFlag(), 1234 + l));

  // Tiling: batches of 16 to 64 sequences split into tiles.
  std::vector<std::vector<std::vector<TilingPoint>>> tiling(tile_sizes.size());  // [tile][layer]
  for (size_t k = 0; k < tile_sizes.size(); ++k) {
    for (int l = 0; l < L; ++l) {
      tiling[k].push_back(
          TilingCurve(masks[l], {16, 32, 64}, tile_sizes[k], UnionSamplesFlag(), 4321 + l));
    }
    std::fprintf(stderr, "profile: tiling of %d tokens done\n", tile_sizes[k]);
  }

  const std::string prefix = absl::GetFlag(FLAGS_out);
  std::ofstream csv(prefix + ".csv");
  csv << "layer,batch,active,union_across,union_consecutive,independent";
  for (int b = 1; b < kNumProfileBlocks; ++b)
    csv << ",across_block" << kProfileBlocks[b] << ",consecutive_block" << kProfileBlocks[b];
  csv << "\n";
  for (int l = 0; l < L; ++l) {
    for (const UnionPoint& p : curves[l]) {
      csv << l << "," << p.batch << "," << p.active << "," << p.across << "," << p.consecutive
          << "," << p.independent;
      for (int b = 1; b < kNumProfileBlocks; ++b)
        csv << "," << p.across_blocks[b] << "," << p.consecutive_blocks[b];
      csv << "\n";
    }
  }
  std::ofstream tcsv(prefix + ".tiles.csv");
  tcsv << "layer,tile,batch,block,arrival,similar,by_sequence,group_us\n";
  for (size_t k = 0; k < tile_sizes.size(); ++k) {
    for (int l = 0; l < L; ++l) {
      for (const TilingPoint& p : tiling[k][l]) {
        for (int b = 0; b < kNumProfileBlocks; ++b) {
          tcsv << l << "," << p.tile << "," << p.batch << "," << kProfileBlocks[b] << ","
               << p.arrival[b] << "," << p.similar[b] << "," << p.by_sequence[b] << ","
               << p.group_us << "\n";
        }
      }
    }
  }
  std::ofstream md(prefix + ".md");
  md << "Model `" << model << "`, " << (threshold ? "threshold" : "exact") << " masks, "
     << masks[0].tokens() << " tokens in " << recorded->windows.size() << " sequences of up to "
     << source->window << "; union ratio = share of the " << F
     << " neurons active for at least one token of the batch, mean over layers ("
     << UnionSamplesFlag() << " random batches per size).\n\n";
  md << "| batch | active per token | union, different sequences | union, consecutive tokens | "
        "independent 1−(1−a)^B |\n|---|---|---|---|---|\n";
  for (size_t k = 0; k < sizes.size(); ++k) {
    double a = 0, x = 0, c = 0, ind = 0;
    for (int l = 0; l < L; ++l) {
      a += curves[l][k].active / L;
      x += curves[l][k].across / L;
      c += curves[l][k].consecutive / L;
      ind += curves[l][k].independent / L;
    }
    md << "| " << sizes[k] << " | " << Pct(a) << " | " << Pct(x) << " | " << Pct(c) << " | "
       << Pct(ind) << " |\n";
  }
  md << "\nBlock level: share of aligned blocks of 8, 16, 32 or 64 neurons with at least one "
        "active neuron (what a kernel that reads whole blocks reads), tokens of different "
        "sequences; mean over layers.\n\n| batch | neurons | blocks of 8 | 16 | 32 | 64 | blocks "
        "of 16, consecutive tokens |\n|---|---|---|---|---|---|---|\n";
  for (size_t k = 0; k < sizes.size(); ++k) {
    double v[kNumProfileBlocks] = {}, c16 = 0;
    for (int l = 0; l < L; ++l) {
      for (int b = 0; b < kNumProfileBlocks; ++b) v[b] += curves[l][k].across_blocks[b] / L;
      c16 += curves[l][k].consecutive_blocks[2] / L;
    }
    md << "| " << sizes[k];
    for (double x : v) md << " | " << Pct(x);
    md << " | " << Pct(c16) << " |\n";
  }
  md << "\nTiles: a batch of B tokens from B different sequences split into tiles; mean union "
        "per tile (neurons, then blocks), mean over layers. Arrival order: tiles in the batch's "
        "order. By mask similarity: greedy grouping on each sequence's previous token's mask "
        "(host time per step beside it). One sequence: a tile of consecutive tokens of one "
        "sequence (a prefill chunk).\n\n| tile | batch | tiles formed | neurons | blocks of 8 | "
        "16 | 32 | 64 | grouping µs per step |\n|---|---|---|---|---|---|---|---|---|\n";
  for (size_t k = 0; k < tile_sizes.size(); ++k) {
    const size_t points = tiling[k].empty() ? 0 : tiling[k][0].size();
    for (size_t i = 0; i < points; ++i) {
      double arr[kNumProfileBlocks] = {}, sim[kNumProfileBlocks] = {}, seq[kNumProfileBlocks] = {};
      double us = 0;
      for (int l = 0; l < L; ++l) {
        const TilingPoint& p = tiling[k][l][i];
        for (int b = 0; b < kNumProfileBlocks; ++b) {
          arr[b] += p.arrival[b] / L;
          sim[b] += p.similar[b] / L;
          seq[b] += p.by_sequence[b] / L;
        }
        us += p.group_us;  // one grouping per layer and step
      }
      const int batch = tiling[k][0][i].batch;
      auto row = [&](const char* how, const double* v, const std::string& cost) {
        md << "| " << tile_sizes[k] << " | " << batch << " | " << how;
        for (int b = 0; b < kNumProfileBlocks; ++b) md << " | " << Pct(v[b]);
        md << " | " << cost << " |\n";
      };
      row("arrival order", arr, "");
      row("by mask similarity", sim, absl::StrFormat("%.0f (all %d layers)", us, L));
      if (i == 0) row("one sequence", seq, "");
    }
  }
  md << "\nPer layer (union of different sequences at batch 1 / 8 / 64):\n\n| layer | active | B=8 "
        "| "
        "B=8 independent | B=64 | B=64 independent |\n|---|---|---|---|---|---|\n";
  for (int l = 0; l < L; ++l) {
    md << "| " << l << " | " << Pct(curves[l][0].active) << " | " << Pct(curves[l][3].across)
       << " | " << Pct(curves[l][3].independent) << " | " << Pct(curves[l][6].across) << " | "
       << Pct(curves[l][6].independent) << " |\n";
  }
  md.close();
  csv.close();
  tcsv.close();
  std::ifstream shown(prefix + ".md");
  std::printf("%s", std::string(std::istreambuf_iterator<char>(shown), {}).c_str());

  // Plot: mean over layers of each curve against batch size.
  {
    std::ofstream dat(prefix + ".mean.csv");
    for (size_t k = 0; k < sizes.size(); ++k) {
      double x = 0, c = 0, ind = 0;
      for (int l = 0; l < L; ++l) {
        x += curves[l][k].across / L;
        c += curves[l][k].consecutive / L;
        ind += curves[l][k].independent / L;
      }
      dat << sizes[k] << "," << 100 * x << "," << 100 * c << "," << 100 * ind << "\n";
    }
    std::ofstream gp(prefix + ".gp");
    gp << "set terminal pngcairo size 720,420\nset output '" << prefix << ".png'\n"
       << "set datafile separator ','\nset logscale x 2\nset xlabel 'batch size (tokens)'\n"
       << "set ylabel 'union of active neurons (% of FFN)'\nset yrange [0:100]\n"
       << "set key bottom right\nset title 'Union sparsity under batching (mean over layers)'\n"
       << "plot '" << prefix << ".mean.csv' using 1:2 with linespoints title 'different "
       << "sequences', '' using 1:3 with linespoints title 'consecutive tokens', '' using 1:4 "
       << "with lines dashtype 2 title 'independent 1-(1-a)^B'\n";
  }
  if (std::system("command -v gnuplot >/dev/null 2>&1") == 0) {
    const std::string cmd = "gnuplot '" + prefix + ".gp'";
    if (std::system(cmd.c_str()) != 0)
      std::fprintf(stderr, "gnuplot failed on %s.gp\n", prefix.c_str());
  } else {
    std::fprintf(stderr, "gnuplot not installed: %s.gp not rendered\n", prefix.c_str());
  }
  return 0;
}
