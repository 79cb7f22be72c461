// How many inactive FFN neurons a low-bit copy of the gate could rule out exactly, before any
// screening kernel exists (docs/BENCHMARKS.md, "Gate screening: the measurement first").
//
// For every token of real text (or synthetic ids) and every FFN layer of a ReLU-family model,
// with the layer's input x as the engine computes it (FfnInputObserver):
//   g_i  = w_i · x                 the gate pre-activation (the gate's values as loaded; double)
//   ĝ_i  = ŵ_i · x                 the same with the row quantized to Q8_0 or Q4_0 (the copy)
//   B_i  = a rigorous bound on |g_i − ĝ_i|, two ways:
//          L1·L∞ per block: Σ_b max_{j∈b} |w_ij − ŵ_ij| · Σ_{j∈b} |x_j|  (per-block error table)
//          Cauchy–Schwarz:  ‖w_i − ŵ_i‖₂ · ‖x‖₂                       (one float per row)
// A neuron is certainly inactive when ĝ_i + B_i stays below the activation's threshold (0 for
// ReLU / ReLU², t for FATReLU); screening would skip its full-precision gate row. (Float rounding
// of ĝ's sum would add a term of about K · 2⁻²⁴ · Σ|ŵ x|: negligible beside B here, and left out.)
// Reported per layer: the active share, the share certainly inactive under each copy and bound,
// and what the gate would then read at batch 1 against today's whole bf16 gate.
//
// usage: gate_screen_study --model DIR [--text FILE] [--tokens N] [--window N] [--weights T]
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "engine/common/panel.h"
#include "engine/common/quantize.h"
#include "engine/engine.h"
#include "tools/text_eval.h"

namespace sparsed {
namespace {

struct Copy {
  DType type;
  std::vector<float> w;        // [F × d] dequantized
  std::vector<float> row_l2;   // ‖w_i − ŵ_i‖₂
  std::vector<float> blk_err;  // [F × d/32] max |w − ŵ| per block
};

struct LayerData {
  std::vector<float> w;  // [F × d] the gate as loaded
  std::vector<Copy> copies;
  // counts over tokens × neurons
  int64_t seen = 0, active = 0;
  std::vector<int64_t> out_l1, out_l2;  // per copy: certainly inactive
};

}  // namespace
}  // namespace sparsed

int main(int argc, char** argv) {
  using namespace sparsed;
  std::string model, text, weights;
  int64_t tokens = 1024;
  int window = 128;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "--model")
      model = v;
    else if (a == "--text")
      text = v;
    else if (a == "--tokens")
      tokens = std::atoll(v.c_str());
    else if (a == "--window")
      window = std::atoi(v.c_str());
    else if (a == "--weights")
      weights = v;
    else {
      std::fprintf(stderr, "unknown flag %s\n", a.c_str());
      return 2;
    }
  }
  if (model.empty()) {
    std::fprintf(stderr,
                 "usage: gate_screen_study --model DIR [--text FILE] [--tokens N] [--window N]\n");
    return 2;
  }
  EngineOptions o;
  o.model_dir = model;
  o.sparsity_mode = "exact";
  o.kv_blocks = (window + 15) / 16 + 1;
  o.load_tokenizer = !text.empty();
  auto loaded = Engine::Load(o);
  if (!loaded.ok()) {
    std::fprintf(stderr, "%s\n", std::string(loaded.status().message()).c_str());
    return 1;
  }
  Engine& e = **loaded;
  const ModelConfig& c = e.config();
  if (!IsReluFamily(c.activation) || !c.gated_ffn) {
    std::fprintf(stderr, "needs a gated ReLU-family model\n");
    return 1;
  }
  const int L = static_cast<int>(c.num_layers);
  const int64_t F = c.intermediate_size, d = c.hidden_size, nb = d / kQuantBlock;
  const float t = c.activation == Activation::kFatRelu ? c.activation_threshold : 0.f;
  std::vector<LayerData> layers(L);
  auto prepare = [&](int l) {
    LayerData& ld = layers[l];
    if (!ld.w.empty()) return;
    const Matrix& g = *e.FfnOf(l).gate;
    ld.w.resize(static_cast<size_t>(F * d));
    for (int64_t r = 0; r < F; ++r)
      for (int64_t k = 0; k < d; ++k) ld.w[r * d + k] = MatrixElementAsF32(g, r, k);
    for (DType ty : {DType::kQ8_0, DType::kQ4_0}) {
      Copy cp;
      cp.type = ty;
      cp.w.resize(ld.w.size());
      cp.row_l2.resize(F);
      cp.blk_err.resize(static_cast<size_t>(F * nb));
      std::vector<uint8_t> q(SpanBytes(ty, d));
      for (int64_t r = 0; r < F; ++r) {
        QuantizeRow(&ld.w[r * d], d, ty, q.data());
        DequantizeRow(q.data(), ty, d, &cp.w[r * d]);
        double s2 = 0;
        for (int64_t k = 0; k < d; ++k) {
          const double err = std::fabs(double(ld.w[r * d + k]) - cp.w[r * d + k]);
          s2 += err * err;
          float& be = cp.blk_err[r * nb + k / kQuantBlock];
          be = std::max(be, static_cast<float>(err));
        }
        cp.row_l2[r] = static_cast<float>(std::sqrt(s2) * (1 + 1e-6));  // rounded up
      }
      ld.copies.push_back(std::move(cp));
    }
    ld.out_l1.assign(ld.copies.size(), 0);
    ld.out_l2.assign(ld.copies.size(), 0);
  };
  e.set_ffn_observer([&](int l, const float* x, int T) {
    prepare(l);
    LayerData& ld = layers[l];
    std::vector<double> absx_blk(nb);
    for (int tk = 0; tk < T; ++tk) {
      const float* xt = x + static_cast<size_t>(tk) * d;
      double x2 = 0;
      for (int64_t b = 0; b < nb; ++b) {
        double s = 0;
        for (int64_t k = b * kQuantBlock; k < (b + 1) * kQuantBlock; ++k) s += std::fabs(xt[k]);
        absx_blk[b] = s;
      }
      for (int64_t k = 0; k < d; ++k) x2 += double(xt[k]) * xt[k];
      const double xn = std::sqrt(x2);
      for (int64_t i = 0; i < F; ++i) {
        double g = 0;
        const float* wr = &ld.w[i * d];
        for (int64_t k = 0; k < d; ++k) g += double(wr[k]) * xt[k];
        const bool on = g > 0 && g >= t;
        ld.seen++;
        ld.active += on;
        for (size_t ci = 0; ci < ld.copies.size(); ++ci) {
          const Copy& cp = ld.copies[ci];
          const float* qr = &cp.w[i * d];
          double gh = 0, b1 = 0;
          for (int64_t k = 0; k < d; ++k) gh += double(qr[k]) * xt[k];
          for (int64_t b = 0; b < nb; ++b) b1 += double(cp.blk_err[i * nb + b]) * absx_blk[b];
          const double b2 = double(cp.row_l2[i]) * xn;
          auto out = [&](double bound) {
            const double u = gh + bound;
            return u <= 0 || u < t;
          };
          if (out(b1)) {
            ld.out_l1[ci]++;
            if (on) std::abort();  // the bound is rigorous: never rules out an active neuron
          }
          if (out(b2)) {
            ld.out_l2[ci]++;
            if (on) std::abort();
          }
        }
      }
    }
  });
  std::vector<std::vector<int32_t>> windows;
  if (!text.empty()) {
    auto w = TokenWindows(e, text, window, tokens);
    if (!w.ok()) {
      std::fprintf(stderr, "%s\n", std::string(w.status().message()).c_str());
      return 1;
    }
    windows = *w;
  } else {
    uint64_t s = 1;
    for (int64_t done = 0; done < tokens; done += window) {
      std::vector<int32_t> ids(std::min<int64_t>(window, tokens - done));
      for (int32_t& id : ids) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        id = static_cast<int32_t>((s >> 33) % static_cast<uint64_t>(c.vocab_size));
      }
      windows.push_back(ids);
    }
  }
  int64_t total = 0;
  for (const std::vector<int32_t>& w : windows) {
    if (auto out = StepWindow(e, w); !out.ok()) {
      std::fprintf(stderr, "%s\n", std::string(out.status().message()).c_str());
      return 1;
    }
    total += static_cast<int64_t>(w.size());
    std::fprintf(stderr, "\rgate_screen_study: %lld tokens", static_cast<long long>(total));
  }
  std::fprintf(stderr, "\n");
  std::printf("model: %s (%s, d=%lld, F=%lld, %d layers); %lld tokens of %s\n\n", model.c_str(),
              std::string(ActivationName(c.activation)).c_str(), static_cast<long long>(d),
              static_cast<long long>(F), L, static_cast<long long>(total),
              text.empty() ? "random ids" : text.c_str());
  std::printf(
      "| layer | active | ruled out: q8 copy, L1·L∞ | q8, L2 | q4 copy, L1·L∞ | q4, L2 |\n"
      "|---|---|---|---|---|---|\n");
  double sum_act = 0, sum_out[2][2] = {};
  for (int l = 0; l < L; ++l) {
    const LayerData& ld = layers[l];
    const double n = std::max<int64_t>(ld.seen, 1);
    std::printf("| %d | %.1f%% | %.1f%% | %.1f%% | %.1f%% | %.1f%% |\n", l, 100 * ld.active / n,
                100 * ld.out_l1[0] / n, 100 * ld.out_l2[0] / n, 100 * ld.out_l1[1] / n,
                100 * ld.out_l2[1] / n);
    sum_act += ld.active / n;
    for (int ci = 0; ci < 2; ++ci) {
      sum_out[ci][0] += ld.out_l1[ci] / n;
      sum_out[ci][1] += ld.out_l2[ci] / n;
    }
  }
  std::printf("| mean | %.1f%% | %.1f%% | %.1f%% | %.1f%% | %.1f%% |\n\n", 100 * sum_act / L,
              100 * sum_out[0][0] / L, 100 * sum_out[0][1] / L, 100 * sum_out[1][0] / L,
              100 * sum_out[1][1] / L);
  // Batch 1 gate bytes against today's whole bf16 gate: the copy (Q8_0 34/64, Q4_0 18/64 of
  // bf16's bytes) plus the bf16 rows of every neuron not ruled out.
  const double copy_cost[2] = {34.0 / 64, 18.0 / 64};
  std::printf("Gate bytes read per token (bf16 gate = 1.00; the best bound of the two):\n");
  for (int ci = 0; ci < 2; ++ci) {
    const double out = std::max(sum_out[ci][0], sum_out[ci][1]) / L;
    std::printf("- %s copy: %.2f (copy %.2f + candidate rows %.2f)\n", ci == 0 ? "Q8_0" : "Q4_0",
                copy_cost[ci] + (1 - out), copy_cost[ci], 1 - out);
  }
  return 0;
}
