#include "tools/mask_recorder.h"

#include <cmath>
#include <cstdio>

#include "engine/backend/ffn_types.h"
#include "engine/sparse/cett.h"
#include "tools/text_eval.h"

namespace sparsed {

absl::StatusOr<std::vector<LayerMasks>> RecordMasks(
    Engine& e, const std::vector<std::vector<int32_t>>& windows, bool threshold) {
  const int L = static_cast<int>(e.config().num_layers);
  const int F = static_cast<int>(e.config().intermediate_size);
  std::vector<LayerMasks> masks(L, LayerMasks(F));
  std::vector<double> layer_eps(L, 0.0);
  if (threshold) {
    if (!e.sparsity_profile().has_value())
      return absl::FailedPreconditionError("threshold masks need the model's sparsity.json");
    for (int l = 0; l < L; ++l) layer_eps[l] = e.sparsity_profile()->layers[l].epsilon;
  }
  int current_seq = 0;
  std::vector<uint8_t> active(F);
  e.set_ffn_observer([&](int l, const float* x, int T) {
    const LayerActivations a =
        ComputeLayerActivations(e.backend(), e.FfnOf(l), x, T, &e.DownNorms(l));
    for (int t = 0; t < T; ++t) {
      for (int i = 0; i < F; ++i) {
        const float v = a.x1[static_cast<size_t>(t) * F + i];
        active[i] = threshold ? double(std::fabs(v)) * a.down_norms[i] >= layer_eps[l] : v != 0.f;
      }
      masks[l].Add(current_seq, active.data());
    }
  });
  absl::Status status;
  for (size_t wi = 0; wi < windows.size() && status.ok(); ++wi) {
    current_seq = static_cast<int>(wi);
    if (auto out = StepWindow(e, windows[wi]); !out.ok()) status = out.status();
    std::fprintf(stderr, "\rmasks: recorded %zu/%zu windows", wi + 1, windows.size());
  }
  std::fprintf(stderr, "\n");
  e.set_ffn_observer(nullptr);
  if (!status.ok()) return status;
  return masks;
}

absl::StatusOr<RecordedMasks> LoadAndRecordMasks(const MaskSource& src) {
  EngineOptions o = src.engine;
  o.kv_blocks = (src.window + 15) / 16;
  if (o.sparsity_mode.empty()) {
    auto c = Checkpoint::Open(o.model_dir);
    if (!c.ok()) return c.status();
    o.sparsity_mode = IsReluFamily((*c)->config().activation) ? "exact" : "threshold";
  }
  RecordedMasks r;
  auto engine = Engine::Load(o);
  if (!engine.ok()) return engine.status();
  r.engine = std::move(*engine);
  const SparsityMode mode = r.engine->sparsity_mode();
  if (mode != SparsityMode::kExact && mode != SparsityMode::kThreshold)
    return absl::InvalidArgumentError("--sparsity must be exact or threshold");
  r.threshold = mode == SparsityMode::kThreshold;
  auto windows = TokenWindows(*r.engine, src.text, src.window, src.tokens);
  if (!windows.ok()) return windows.status();
  r.windows = std::move(*windows);
  auto layers = RecordMasks(*r.engine, r.windows, r.threshold);
  if (!layers.ok()) return layers.status();
  r.layers = std::move(*layers);
  return r;
}

}  // namespace sparsed
