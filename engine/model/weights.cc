#include "engine/model/weights.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "engine/common/status_macros.h"
#include "engine/model/mapped_file.h"

namespace sparsed {
namespace {

absl::StatusOr<Matrix> LoadMatrix(const Checkpoint& ck, const std::string& name, int64_t rows,
                                  int64_t cols) {
  ASSIGN_OR_RETURN(TensorView v, ck.GetShaped(name, {rows, cols}));
  Matrix m;
  m.data = v.data;
  m.dtype = v.dtype;
  m.rows = rows;
  m.cols = cols;
  return m;
}

absl::StatusOr<std::vector<float>> LoadVector(const Checkpoint& ck, const std::string& name,
                                              int64_t n) {
  ASSIGN_OR_RETURN(TensorView v, ck.GetShaped(name, {n}));
  std::vector<float> out(n);
  for (int64_t i = 0; i < n; ++i) out[i] = LoadAsF32(v.data, v.dtype, i);
  return out;
}

// Copies W [rows × cols] into a new [cols × rows] matrix of the same dtype.
Matrix Transpose(const Matrix& w) {
  const size_t es = DTypeSize(w.dtype);
  auto buf = std::shared_ptr<char[]>(new char[w.bytes()]);
  const char* src = static_cast<const char*>(w.data);
  constexpr int64_t kTile = 64;
  for (int64_t r0 = 0; r0 < w.rows; r0 += kTile) {
    for (int64_t c0 = 0; c0 < w.cols; c0 += kTile) {
      for (int64_t r = r0; r < std::min(r0 + kTile, w.rows); ++r) {
        for (int64_t c = c0; c < std::min(c0 + kTile, w.cols); ++c) {
          std::memcpy(buf.get() + (c * w.rows + r) * es, src + (r * w.cols + c) * es, es);
        }
      }
    }
  }
  Matrix t;
  t.data = buf.get();
  t.dtype = w.dtype;
  t.rows = w.cols;
  t.cols = w.rows;
  t.owner = std::shared_ptr<const void>(buf, buf.get());
  return t;
}

}  // namespace

absl::StatusOr<ModelWeights> LoadModelWeights(const Checkpoint& ck, const ProgressFn& progress,
                                              const LayerHook& on_layer) {
  const ModelConfig& c = ck.config();
  const int64_t d = c.hidden_size, f = c.intermediate_size, hd = c.head_dim;
  ModelWeights w;
  ASSIGN_OR_RETURN(w.embed, LoadMatrix(ck, "model.embed_tokens.weight", c.vocab_size, d));
  if (c.tie_word_embeddings) {
    w.lm_head = w.embed;
  } else {
    ASSIGN_OR_RETURN(w.lm_head, LoadMatrix(ck, "lm_head.weight", c.vocab_size, d));
  }
  ASSIGN_OR_RETURN(w.final_norm, LoadVector(ck, "model.norm.weight", d));
  for (int64_t i = 0; i < c.num_layers; ++i) {
    const std::string p = absl::StrCat("model.layers.", i, ".");
    LayerWeights l;
    ASSIGN_OR_RETURN(l.attn_norm, LoadVector(ck, p + "input_layernorm.weight", d));
    ASSIGN_OR_RETURN(l.ffn_norm, LoadVector(ck, p + "post_attention_layernorm.weight", d));
    ASSIGN_OR_RETURN(l.q, LoadMatrix(ck, p + "self_attn.q_proj.weight", c.num_heads * hd, d));
    ASSIGN_OR_RETURN(l.k, LoadMatrix(ck, p + "self_attn.k_proj.weight", c.num_kv_heads * hd, d));
    ASSIGN_OR_RETURN(l.v, LoadMatrix(ck, p + "self_attn.v_proj.weight", c.num_kv_heads * hd, d));
    ASSIGN_OR_RETURN(l.o, LoadMatrix(ck, p + "self_attn.o_proj.weight", d, c.num_heads * hd));
    if (c.gated_ffn) {
      ASSIGN_OR_RETURN(l.gate, LoadMatrix(ck, p + "mlp.gate_proj.weight", f, d));
    }
    ASSIGN_OR_RETURN(l.up, LoadMatrix(ck, p + "mlp.up_proj.weight", f, d));
    ASSIGN_OR_RETURN(Matrix down, LoadMatrix(ck, p + "mlp.down_proj.weight", d, f));
    l.down_t = Transpose(down);
    // The mapped original is not read again (the engine reads the transposed copy).
    ReleaseMappedPages(down.data, down.bytes());
    if (on_layer) RETURN_IF_ERROR(on_layer(static_cast<int>(i), &l));
    w.layers.push_back(std::move(l));
    if (progress)
      progress(static_cast<int>(i + 1), static_cast<int>(c.num_layers), "layers loaded");
  }
  return w;
}

}  // namespace sparsed
