#include "engine/model/weights.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/common/quantize.h"
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

// A matrix over buf (which it keeps alive): rows × cols of dtype.
Matrix Owned(DType dtype, int64_t rows, int64_t cols, std::shared_ptr<char[]> buf) {
  Matrix t;
  t.data = buf.get();
  t.dtype = dtype;
  t.rows = rows;
  t.cols = cols;
  t.owner = std::shared_ptr<const void>(buf, buf.get());
  return t;
}

// Block types: W dequantized, transposed and quantized again along its new rows (a neuron's
// down-projection row) — the one conversion of a quantized checkpoint's values (a GGUF file's
// down projection is stored output-major). `name` for errors.
absl::StatusOr<Matrix> TransposeBlocks(const Matrix& w, const std::string& name) {
  if (w.rows % kQuantBlock != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        name, ": a ", DTypeName(w.dtype), " down projection is stored neuron-major in blocks of ",
        kQuantBlock, " outputs, and this one has ", w.rows));
  }
  std::vector<float> f(static_cast<size_t>(w.rows * w.cols));
  std::vector<float> col(static_cast<size_t>(w.rows));
  for (int64_t r = 0; r < w.rows; ++r) DequantizeRow(w.Row(r), w.dtype, w.cols, &f[r * w.cols]);
  const size_t out_row = SpanBytes(w.dtype, w.rows);
  auto buf = std::shared_ptr<char[]>(new char[std::max<size_t>(out_row * w.cols, 1)]);
  for (int64_t c = 0; c < w.cols; ++c) {
    for (int64_t r = 0; r < w.rows; ++r) col[r] = f[r * w.cols + c];
    QuantizeRow(col.data(), w.rows, w.dtype, buf.get() + c * out_row);  // finite: dequantized
  }
  return Owned(w.dtype, w.cols, w.rows, std::move(buf));
}

// GGUF's q and k rows (checkpoint.h, rotary_pairs_interleaved) in rotate-half order: head h's
// row 2i + j holds what rotate-half reads at row j · hd/2 + i.
Matrix RotaryHalves(const Matrix& w, int64_t head_dim) {
  const size_t rb = w.row_bytes();
  auto buf = std::shared_ptr<char[]>(new char[std::max<size_t>(w.bytes(), 1)]);
  const int64_t half = head_dim / 2;
  for (int64_t r = 0; r < w.rows; ++r) {
    const int64_t h = r / head_dim, k = r % head_dim;
    const int64_t src = h * head_dim + (k % half) * 2 + k / half;
    std::memcpy(buf.get() + r * rb, w.Row(src), rb);
  }
  return Owned(w.dtype, w.rows, w.cols, std::move(buf));
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
    if (ck.rotary_pairs_interleaved()) {
      for (Matrix* m : {&l.q, &l.k}) {
        const Matrix mapped = *m;
        *m = RotaryHalves(mapped, hd);
        ReleaseMappedPages(mapped.data, mapped.bytes());
      }
    }
    ASSIGN_OR_RETURN(l.v, LoadMatrix(ck, p + "self_attn.v_proj.weight", c.num_kv_heads * hd, d));
    ASSIGN_OR_RETURN(l.o, LoadMatrix(ck, p + "self_attn.o_proj.weight", d, c.num_heads * hd));
    if (c.gated_ffn) {
      ASSIGN_OR_RETURN(l.gate, LoadMatrix(ck, p + "mlp.gate_proj.weight", f, d));
    }
    ASSIGN_OR_RETURN(l.up, LoadMatrix(ck, p + "mlp.up_proj.weight", f, d));
    ASSIGN_OR_RETURN(Matrix down, LoadMatrix(ck, p + "mlp.down_proj.weight", d, f));
    if (IsBlockQuantized(down.dtype)) {
      ASSIGN_OR_RETURN(
          l.down_t, TransposeBlocks(down, absl::StrCat(ck.FileOf(p + "mlp.down_proj.weight"),
                                                       ": tensor '", p, "mlp.down_proj.weight'")));
    } else {
      l.down_t = Transpose(down);
    }
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
