#include "engine/model/weight_format.h"

#include <algorithm>
#include <atomic>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/common/panel.h"
#include "engine/common/quantize.h"
#include "engine/common/thread_pool.h"
#include "engine/model/mapped_file.h"

namespace sparsed {
namespace {

// The converted copy of m (rows converted in parallel), or an error naming `name`.
// `release`: m, when a view (no owner), lies in a read-only file mapping whose pages are not
// read again: dropped from the resident set once converted.
// `panels` (block types): the copy is stored in row panels (panel.h), for a matrix only the
// dense products read.
absl::StatusOr<Matrix> Convert(const Matrix& m, DType to, const std::string& name, bool release,
                               bool panels, ThreadPool& pool) {
  if (IsBlockQuantized(to) && m.cols % kQuantBlock != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        name, ": ", DTypeName(to), " quantizes rows in blocks of ", kQuantBlock,
        " weights, and this tensor's rows hold ", m.cols, "; load it with --weights=checkpoint"));
  }
  Matrix out;
  out.dtype = to;
  out.panels = panels && IsBlockQuantized(to);
  out.rows = m.rows;
  out.cols = m.cols;
  // Zero-filled: a panel's padding rows.
  auto buf = std::shared_ptr<uint8_t[]>(new uint8_t[std::max<size_t>(out.bytes(), 1)]());
  out.data = buf.get();
  out.owner = std::shared_ptr<const void>(buf, buf.get());
  std::atomic<int64_t> bad_row{-1};
  const int tasks = std::max(1, std::min<int>(4 * pool.num_threads(), static_cast<int>(m.rows)));
  pool.ParallelFor(tasks, [&](int task) {
    std::vector<float> row(static_cast<size_t>(m.cols));
    std::vector<uint8_t> packed(out.panels ? out.row_bytes() : 0);
    for (int64_t r = m.rows * task / tasks; r < m.rows * (task + 1) / tasks; ++r) {
      DequantizeRow(m.Row(r), m.dtype, m.cols, row.data());
      uint8_t* dst =
          out.panels ? packed.data() : buf.get() + static_cast<size_t>(r) * out.row_bytes();
      if (!QuantizeRow(row.data(), m.cols, to, dst)) bad_row.store(r);
      if (out.panels) PackPanelRow(dst, to, m.cols, r, buf.get());
    }
  });
  if (bad_row.load() >= 0) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": row ", bad_row.load(),
                                                   " holds a NaN or an infinity; ", DTypeName(to),
                                                   " cannot represent it"));
  }
  if (release && m.owner == nullptr) ReleaseMappedPages(m.data, m.bytes());
  return out;
}

}  // namespace

absl::StatusOr<std::optional<DType>> ParseWeightFormat(absl::string_view s) {
  if (s == "checkpoint") return std::optional<DType>();
  if (s == "bf16") return std::optional<DType>(DType::kBF16);
  if (s == "q8_0") return std::optional<DType>(DType::kQ8_0);
  if (s == "q4_0") return std::optional<DType>(DType::kQ4_0);
  return absl::InvalidArgumentError(
      absl::StrCat("weights must be checkpoint, bf16, q8_0 or q4_0, not '", s, "'"));
}

std::string WeightFormatName(std::optional<DType> t) {
  if (!t) return "checkpoint";
  switch (*t) {
    case DType::kF32:
      return "fp32";
    case DType::kBF16:
      return "bf16";
    case DType::kF16:
      return "fp16";
    case DType::kQ8_0:
      return "q8_0";
    case DType::kQ4_0:
      return "q4_0";
  }
  return "?";
}

absl::Status ConvertLayerWeights(DType to, int index, bool release_mapped_pages, ThreadPool& pool,
                                 LayerWeights* l) {
  const std::string p = absl::StrCat("model.layers.", index, ".");
  // Row panels for the products that always read every row (attention's, and the gate of a
  // gated FFN); up and down stay row-major, gathered by the union.
  struct Target {
    Matrix* m;
    const char* name;
    bool panels;
  };
  for (auto [m, name, panels] :
       {Target{&l->q, "self_attn.q_proj.weight", true},
        Target{&l->k, "self_attn.k_proj.weight", true},
        Target{&l->v, "self_attn.v_proj.weight", true},
        Target{&l->o, "self_attn.o_proj.weight", true},
        Target{&l->gate, "mlp.gate_proj.weight", true}, Target{&l->up, "mlp.up_proj.weight", false},
        Target{&l->down_t, "mlp.down_proj.weight (neuron-major)", false}}) {
    if (m->data == nullptr || m->dtype == to) continue;
    absl::StatusOr<Matrix> c = Convert(*m, to, p + name, release_mapped_pages, panels, pool);
    if (!c.ok()) return c.status();
    *m = *std::move(c);
  }
  return absl::OkStatus();
}

absl::Status ConvertLmHead(DType to, bool release_mapped_pages, ThreadPool& pool, ModelWeights* w) {
  if (w->lm_head.data == nullptr || w->lm_head.dtype == to) return absl::OkStatus();
  // A tied head shares the embedding's storage: the converted copy is the head's alone, and the
  // embedding's pages stay mapped.
  const bool tied = w->lm_head.data == w->embed.data;
  absl::StatusOr<Matrix> c =
      Convert(w->lm_head, to, tied ? "model.embed_tokens.weight (tied LM head)" : "lm_head.weight",
              release_mapped_pages && !tied, /*panels=*/true, pool);
  if (!c.ok()) return c.status();
  w->lm_head = *std::move(c);
  return absl::OkStatus();
}

absl::Status PanelLayerWeights(bool release_mapped_pages, LayerWeights* l) {
  for (Matrix* m : {&l->q, &l->k, &l->v, &l->o, &l->gate}) {
    if (m->data == nullptr || !IsBlockQuantized(m->dtype) || m->panels) continue;
    const Matrix row_major = *m;
    *m = ToPanels(row_major);
    if (release_mapped_pages && row_major.owner == nullptr)
      ReleaseMappedPages(row_major.data, row_major.bytes());
  }
  return absl::OkStatus();
}

absl::Status PanelLmHead(bool release_mapped_pages, ModelWeights* w) {
  Matrix& m = w->lm_head;
  if (m.data == nullptr || !IsBlockQuantized(m.dtype) || m.panels) return absl::OkStatus();
  const Matrix row_major = m;
  m = ToPanels(row_major);
  // A tied head's rows are still the embedding's.
  if (release_mapped_pages && row_major.owner == nullptr && row_major.data != w->embed.data)
    ReleaseMappedPages(row_major.data, row_major.bytes());
  return absl::OkStatus();
}

absl::Status ConvertLinearWeights(DType to, int threads, bool release_mapped_pages,
                                  const ProgressFn& progress, ModelWeights* w) {
  ThreadPool pool(std::max(1, threads));
  const int total = static_cast<int>(w->layers.size()) + 1;
  const std::string what = absl::StrCat("layers converted to ", WeightFormatName(to));
  for (size_t i = 0; i < w->layers.size(); ++i) {
    const absl::Status s =
        ConvertLayerWeights(to, static_cast<int>(i), release_mapped_pages, pool, &w->layers[i]);
    if (!s.ok()) return s;
    if (progress) progress(static_cast<int>(i) + 1, total, what);
  }
  const absl::Status s = ConvertLmHead(to, release_mapped_pages, pool, w);
  if (!s.ok()) return s;
  if (progress) progress(total, total, what);
  return absl::OkStatus();
}

}  // namespace sparsed
