// The GGUF parser against valid and malformed files, and a llama model served from GGUF: the
// same weights as its Hugging Face source quantized at load, the same forward pass as the scalar
// reference, exact mode bitwise `off`.
#include "engine/model/gguf.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>

#include "engine/common/panel.h"
#include "engine/common/quantize.h"
#include "engine/model/checkpoint.h"
#include "tests/gguf_writer.h"
#include "tests/reference/reference.h"
#include "tests/reference/test_models.h"

namespace sparsed {
namespace {

using testing::BuildGguf;
using testing::GgufKv;
using testing::GgufTensorSpec;

std::string Bytes(const void* p, size_t n) { return std::string(static_cast<const char*>(p), n); }

std::string F32Bytes(const std::vector<float>& v) { return Bytes(v.data(), v.size() * 4); }

// A small valid file: two kinds of metadata and three tensors.
std::vector<GgufTensorSpec> SmallTensors() {
  std::vector<float> norm = {1.f, 2.f, 3.f, 4.f};
  std::vector<float> w(64 * 3);
  for (size_t i = 0; i < w.size(); ++i) w[i] = 0.01f * static_cast<float>(i) - 0.5f;
  std::string q8(SpanBytes(DType::kQ8_0, 64) * 3, '\0');
  for (int r = 0; r < 3; ++r)
    QuantizeRow(&w[r * 64], 64, DType::kQ8_0, &q8[r * SpanBytes(DType::kQ8_0, 64)]);
  return {{"norm", {4}, 0, F32Bytes(norm)},
          {"w.q8", {64, 3}, 8, q8},
          {"w.q4k", {256, 1}, 12, std::string(144, '\x01')}};
}

std::vector<GgufKv> SmallKvs() {
  return {testing::KvStr("general.architecture", "llama"), testing::KvU32("n", 7),
          testing::KvF32("eps", 0.5f), testing::KvStrArray("toks", {"a", "bc"}),
          testing::KvF32Array("scores", {1.f, 2.f, 3.f})};
}

TEST(Gguf, ParsesMetadataAndTensorInfos) {
  const std::string file = BuildGguf(SmallKvs(), SmallTensors());
  auto h = ParseGguf(file, "small.gguf");
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->version, 3u);
  EXPECT_EQ(h->metadata.at("general.architecture").s, "llama");
  EXPECT_EQ(h->metadata.at("n").i, 7);
  EXPECT_EQ(h->metadata.at("eps").f, 0.5);
  EXPECT_EQ(h->metadata.at("toks").strings, (std::vector<std::string>{"a", "bc"}));
  EXPECT_EQ(h->metadata.at("scores").array_count, 3u);
  const GgufTensorInfo& q8 = h->tensors.at("w.q8");
  EXPECT_EQ(q8.ne, (std::vector<int64_t>{64, 3}));
  EXPECT_EQ(q8.bytes, 3 * SpanBytes(DType::kQ8_0, 64));
  EXPECT_EQ(q8.dtype, DType::kQ8_0);
  EXPECT_EQ(q8.offset % 32, 0u);
  EXPECT_FALSE(h->tensors.at("w.q4k").dtype.has_value());
  EXPECT_EQ(GgufTypeName(12), "Q4_K");

  testing::TempDir dir;
  std::ofstream(dir.File("small.gguf"), std::ios::binary) << file;
  auto f = GgufFile::Open(dir.File("small.gguf"));
  ASSERT_TRUE(f.ok()) << f.status();
  auto v = (*f)->Get("w.q8");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->shape, (std::vector<int64_t>{3, 64}));  // row-major: [rows, cols]
  EXPECT_EQ(0, std::memcmp(v->data, SmallTensors()[1].data.data(), q8.bytes));
  auto norm = (*f)->Get("norm");
  ASSERT_TRUE(norm.ok());
  EXPECT_EQ(static_cast<const float*>(norm->data)[3], 4.f);
  auto k = (*f)->Get("w.q4k");
  ASSERT_FALSE(k.ok());
  EXPECT_NE(k.status().message().find("'w.q4k' is Q4_K"), std::string::npos) << k.status();
  EXPECT_NE(k.status().message().find("llama-quantize"), std::string::npos) << k.status();
  EXPECT_EQ((*f)->Get("nope").status().code(), absl::StatusCode::kNotFound);
}

// Every malformation a file can carry fails with a message that says what is wrong — never a
// crash, never a read outside the file (the suite runs under ASan too; fuzz_gguf goes further).
TEST(Gguf, RejectsMalformedFiles) {
  struct Case {
    const char* name;
    std::function<std::string()> make;
    const char* expect;
  };
  auto kvs = SmallKvs();
  auto ts = SmallTensors();
  auto with_tensor = [&](GgufTensorSpec t) {
    auto v = ts;
    v.push_back(std::move(t));
    return BuildGguf(kvs, v);
  };
  auto with_kv = [&](GgufKv kv) {
    auto k = kvs;
    k.push_back(std::move(kv));
    return BuildGguf(k, ts);
  };
  const std::vector<Case> cases = {
      {"magic",
       [&] {
         auto s = BuildGguf(kvs, ts);
         s[0] = 'X';
         return s;
       },
       "not a GGUF file"},
      {"version 1", [&] { return BuildGguf(kvs, ts, 32, 1); }, "version 1"},
      {"version 9", [&] { return BuildGguf(kvs, ts, 32, 9); }, "unknown GGUF version 9"},
      {"big-endian", [&] { return BuildGguf(kvs, ts, 32, 0x03000000); }, "big-endian"},
      {"unknown tensor type",
       [&] {
         return with_tensor({"weird", {32}, 77, std::string(64, '\0')});
       },
       "tensor 'weird' has unknown tensor type id 77"},
      {"truncated tensor data",
       [&] {
         auto s = BuildGguf(kvs, ts);
         s.resize(s.size() - 10);
         return s;
       },
       "runs past the end of the file"},
      {"rows off the block",
       [&] {
         return with_tensor({"odd", {48, 2}, 8, std::string(102, '\0')});
       },
       "rows of 48 elements, not a multiple of 32"},
      {"five dimensions",
       [&] {
         return with_tensor({"t5", {1, 1, 1, 1, 1}, 0, "abcd"});
       },
       "5 dimensions"},
      {"empty dimension",
       [&] {
         return with_tensor({"t0", {4, 0}, 0, ""});
       },
       "dimension 1 of 0"},
      {"duplicate key", [&] { return with_kv(testing::KvU32("n", 8)); },
       "metadata 'n' appears twice"},
      {"duplicate tensor", [&] { return with_tensor(ts[0]); }, "tensor 'norm' appears twice"},
      {"alignment not a power of two",
       [&] { return with_kv(testing::KvU32("general.alignment", 24)); }, "power of two"},
      {"nested array",
       [&] {
         testing::GgufBytes b;
         b.Raw<uint32_t>(9).Raw<uint32_t>(9).Raw<uint64_t>(1);
         return with_kv({"nest", b.bytes()});
       },
       "array of arrays"},
      {"unknown value type",
       [&] {
         testing::GgufBytes b;
         b.Raw<uint32_t>(42);
         return with_kv({"bad", b.bytes()});
       },
       "unknown value type 42"},
      {"string longer than the file",
       [&] {
         testing::GgufBytes b;
         b.Raw<uint32_t>(0x46554747).Raw<uint32_t>(3).Raw<uint64_t>(0).Raw<uint64_t>(1);
         b.Raw<uint64_t>(1ull << 40);
         return b.bytes() + std::string(64, 'k');
       },
       "claims 1099511627776 bytes"},
      {"counts beyond the file",
       [&] {
         testing::GgufBytes b;
         b.Raw<uint32_t>(0x46554747).Raw<uint32_t>(3).Raw<uint64_t>(1ull << 60).Raw<uint64_t>(0);
         return b.bytes();
       },
       "cannot fit in the file"},
      {"misaligned offset",
       [&] {
         auto s = BuildGguf(kvs, ts);
         // The first tensor info's offset field: patch it to 4.
         const size_t at = s.find("norm") + 4 + 4 + 8;
         const uint64_t four = 4;
         std::memcpy(&s[at + 4], &four, 8);
         return s;
       },
       "not a multiple of the alignment"},
      {"overlapping tensors",
       [&] {
         auto s = BuildGguf(kvs, ts);
         const size_t at = s.find("w.q8") + 4 + 4 + 16;  // name, n_dims, ne[2]
         const uint64_t zero = 0;
         std::memcpy(&s[at + 4], &zero, 8);
         return s;
       },
       "overlap"},
  };
  for (const Case& c : cases) {
    const std::string bytes = c.make();
    auto h = ParseGguf(bytes, "bad.gguf");
    ASSERT_FALSE(h.ok()) << c.name;
    EXPECT_EQ(h.status().code(), absl::StatusCode::kInvalidArgument) << c.name;
    EXPECT_NE(h.status().message().find(c.expect), std::string::npos)
        << c.name << ": " << h.status();
    EXPECT_NE(h.status().message().find("bad.gguf"), std::string::npos) << c.name;
  }
  // Every truncation of a valid file fails cleanly.
  const std::string full = BuildGguf(kvs, ts);
  for (size_t n = 0; n < full.size(); ++n) {
    auto h = ParseGguf(absl::string_view(full.data(), n), "cut.gguf");
    EXPECT_FALSE(h.ok()) << "a file cut at " << n << " of " << full.size() << " bytes parsed";
  }
}

// ---------------------------------------------------------------------------------------------
// A synthetic Hugging Face model written as GGUF the way llama.cpp's converter writes it (q and
// k rows permuted to interleaved rotary pairs, the down projection output-major), in `type`.

// m's rows (in `order`, or as stored) as a GGUF tensor of `type` (8 Q8_0, 2 Q4_0, 30 BF16).
std::string RowsAs(const Matrix& m, uint32_t type, const std::vector<int64_t>& order = {}) {
  const DType dt = type == 8 ? DType::kQ8_0 : type == 2 ? DType::kQ4_0 : DType::kBF16;
  const size_t rb = SpanBytes(dt, m.cols);
  std::string out(rb * m.rows, '\0');
  std::vector<float> row(m.cols);
  for (int64_t r = 0; r < m.rows; ++r) {
    const int64_t src = order.empty() ? r : order[r];
    for (int64_t c = 0; c < m.cols; ++c) row[c] = LoadAsF32(m.Row(src), m.dtype, c);
    if (dt == DType::kBF16) {
      for (int64_t c = 0; c < m.cols; ++c) {
        const uint16_t b = F32ToBf16(row[c]);
        std::memcpy(&out[r * rb + 2 * c], &b, 2);
      }
    } else {
      EXPECT_TRUE(QuantizeRow(row.data(), m.cols, dt, &out[r * rb]));
    }
  }
  return out;
}

// GGUF row g of a head holds the Hugging Face row j·hd/2 + i for g = 2i + j.
std::vector<int64_t> InterleavedOrder(int64_t rows, int64_t hd) {
  std::vector<int64_t> order(rows);
  for (int64_t g = 0; g < rows; ++g) {
    const int64_t h = g / hd, k = g % hd;
    order[g] = h * hd + (k % 2) * (hd / 2) + k / 2;
  }
  return order;
}

Matrix ViewOf(const TensorView& v) {
  Matrix m;
  m.data = v.data;
  m.dtype = v.dtype;
  m.rows = v.shape[0];
  m.cols = v.shape.size() > 1 ? v.shape[1] : 1;
  return m;
}

std::string WriteGgufOf(const std::string& hf_dir, uint32_t type, const std::string& out_dir) {
  auto ck = Checkpoint::Open(hf_dir);
  EXPECT_TRUE(ck.ok()) << ck.status();
  const ModelConfig& c = (*ck)->config();
  auto get = [&](const std::string& name) {
    auto v = (*ck)->Get(name);
    EXPECT_TRUE(v.ok()) << v.status();
    return ViewOf(*v);
  };
  auto vec = [&](const std::string& name) {
    const Matrix m = get(name);
    std::vector<float> f(m.rows);
    for (int64_t i = 0; i < m.rows; ++i) f[i] = LoadAsF32(m.data, m.dtype, i);
    return F32Bytes(f);
  };
  const int64_t d = c.hidden_size, F = c.intermediate_size, hd = c.head_dim, V = c.vocab_size;
  std::vector<GgufKv> kvs = {
      testing::KvStr("general.architecture", "llama"),
      testing::KvU32("llama.embedding_length", static_cast<uint32_t>(d)),
      testing::KvU32("llama.feed_forward_length", static_cast<uint32_t>(F)),
      testing::KvU32("llama.block_count", static_cast<uint32_t>(c.num_layers)),
      testing::KvU32("llama.attention.head_count", static_cast<uint32_t>(c.num_heads)),
      testing::KvU32("llama.attention.head_count_kv", static_cast<uint32_t>(c.num_kv_heads)),
      testing::KvU32("llama.context_length", static_cast<uint32_t>(c.max_position_embeddings)),
      testing::KvU32("llama.rope.dimension_count", static_cast<uint32_t>(hd)),
      testing::KvF32("llama.attention.layer_norm_rms_epsilon", static_cast<float>(c.rms_norm_eps)),
      testing::KvF32("llama.rope.freq_base", static_cast<float>(c.rope_theta)),
      testing::KvU32("tokenizer.ggml.bos_token_id", static_cast<uint32_t>(c.bos_token_id)),
      testing::KvU32("tokenizer.ggml.eos_token_id", static_cast<uint32_t>(c.eos_token_ids[0])),
      testing::KvStr("sparsed.hidden_act", std::string(ActivationName(c.activation))),
      testing::KvF32("sparsed.hidden_act_param", c.activation_threshold),
  };
  std::vector<GgufTensorSpec> ts;
  ts.push_back({"token_embd.weight", {d, V}, 30, RowsAs(get("model.embed_tokens.weight"), 30)});
  ts.push_back({"output_norm.weight", {d}, 0, vec("model.norm.weight")});
  ts.push_back({"output.weight", {d, V}, type, RowsAs(get("lm_head.weight"), type)});
  for (int64_t i = 0; i < c.num_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    const std::string g = "blk." + std::to_string(i) + ".";
    const Matrix q = get(p + "self_attn.q_proj.weight"), k = get(p + "self_attn.k_proj.weight");
    ts.push_back({g + "attn_norm.weight", {d}, 0, vec(p + "input_layernorm.weight")});
    ts.push_back({g + "ffn_norm.weight", {d}, 0, vec(p + "post_attention_layernorm.weight")});
    ts.push_back(
        {g + "attn_q.weight", {d, q.rows}, type, RowsAs(q, type, InterleavedOrder(q.rows, hd))});
    ts.push_back(
        {g + "attn_k.weight", {d, k.rows}, type, RowsAs(k, type, InterleavedOrder(k.rows, hd))});
    const Matrix v = get(p + "self_attn.v_proj.weight"), o = get(p + "self_attn.o_proj.weight");
    ts.push_back({g + "attn_v.weight", {d, v.rows}, type, RowsAs(v, type)});
    ts.push_back({g + "attn_output.weight", {o.cols, d}, type, RowsAs(o, type)});
    ts.push_back(
        {g + "ffn_gate.weight", {d, F}, type, RowsAs(get(p + "mlp.gate_proj.weight"), type)});
    ts.push_back({g + "ffn_up.weight", {d, F}, type, RowsAs(get(p + "mlp.up_proj.weight"), type)});
    ts.push_back(
        {g + "ffn_down.weight", {F, d}, type, RowsAs(get(p + "mlp.down_proj.weight"), type)});
  }
  const std::string path = out_dir + "/model.gguf";
  std::ofstream(path, std::ios::binary) << BuildGguf(kvs, ts);
  std::filesystem::copy_file(hf_dir + "/tokenizer.model", out_dir + "/tokenizer.model");
  return path;
}

class GgufModel : public ::testing::TestWithParam<DType> {
 protected:
  void SetUp() override {
    SyntheticModelSpec s;
    s.preset = "tiny";
    s.activation = "fatrelu";
    s.act_param = 0.01f;
    s.active_ratio = 0.15;
    hf_ = testing::MakeModel(s);
    gguf_dir_ = std::make_unique<testing::TempDir>();
    path_ = WriteGgufOf(hf_->path(), GetParam() == DType::kQ8_0 ? 8 : 2, gguf_dir_->path());
  }
  std::unique_ptr<testing::TempDir> hf_, gguf_dir_;
  std::string path_;
};

TEST_P(GgufModel, ServesTheSourceModelsWeights) {
  auto g = testing::LoadEngine(path_, "", 256);
  auto h = testing::LoadEngine(hf_->path(), "", 256, GetParam());
  ASSERT_NE(g, nullptr);
  ASSERT_NE(h, nullptr);
  const ModelConfig &gc = g->config(), &hc = h->config();
  EXPECT_EQ(gc.hidden_size, hc.hidden_size);
  EXPECT_EQ(gc.num_kv_heads, hc.num_kv_heads);
  EXPECT_EQ(gc.vocab_size, hc.vocab_size);
  EXPECT_EQ(gc.activation, Activation::kFatRelu);
  EXPECT_EQ(gc.activation_threshold, hc.activation_threshold);
  EXPECT_EQ(gc.eos_token_ids, hc.eos_token_ids);
  // q and k back in rotate-half order; every matrix but the down projection holds the values
  // the Hugging Face checkpoint quantized at load holds (the same quantizer, the same rows).
  const LayerWeights &gl = g->weights().layers[1], &hl = h->weights().layers[1];
  for (auto [a, b] :
       {std::pair{&gl.q, &hl.q}, std::pair{&gl.k, &hl.k}, std::pair{&gl.v, &hl.v},
        std::pair{&gl.o, &hl.o}, std::pair{&gl.gate, &hl.gate}, std::pair{&gl.up, &hl.up},
        std::pair{&g->weights().lm_head, &h->weights().lm_head}}) {
    ASSERT_EQ(a->dtype, GetParam());
    ASSERT_EQ(a->rows, b->rows);
    ASSERT_EQ(a->panels, b->panels);
    for (int64_t r = 0; r < a->rows; ++r)
      for (int64_t c = 0; c < a->cols; ++c)
        ASSERT_EQ(MatrixElementAsF32(*a, r, c), MatrixElementAsF32(*b, r, c)) << r << "," << c;
  }
  // The down projection: GGUF stores it output-major, so it is quantized a second time along
  // the neuron axis; each value stays within a block's quantization step of the source's.
  ASSERT_EQ(gl.down_t.rows, hl.down_t.rows);
  double worst = 0, scale = 0;
  for (int64_t r = 0; r < gl.down_t.rows; ++r)
    for (int64_t c = 0; c < gl.down_t.cols; ++c) {
      worst = std::max<double>(worst, std::fabs(MatrixElementAsF32(gl.down_t, r, c) -
                                                MatrixElementAsF32(hl.down_t, r, c)));
      scale = std::max<double>(scale, std::fabs(MatrixElementAsF32(hl.down_t, r, c)));
    }
  EXPECT_LT(worst, scale * (GetParam() == DType::kQ8_0 ? 0.02 : 0.3));

  // The forward pass against the scalar reference on the weights as loaded, and exact mode
  // bitwise `off`.
  const std::vector<int32_t> prompt = {1, 17, 300, 5, 99};
  const int V = static_cast<int>(gc.vocab_size);
  auto r = testing::GreedyBatch(*g, {prompt}, 4);
  const std::vector<float> all = ref::ModelLogits(gc, g->weights(), prompt);
  EXPECT_LT(ref::RelMaxError(r.first_logits[0], std::vector<float>(all.end() - V, all.end())),
            1e-2);
  auto off = testing::LoadEngine(path_, "off", 256);
  auto ro = testing::GreedyBatch(*off, {prompt}, 4);
  EXPECT_EQ(r.tokens, ro.tokens);
  EXPECT_EQ(0, std::memcmp(r.first_logits[0].data(), ro.first_logits[0].data(), V * sizeof(float)));
}

TEST_P(GgufModel, NamesWhatItCannotServe) {
  // A file of another architecture, and a tensor whose shape disagrees with the metadata.
  const std::string bytes = [&] {
    std::ifstream in(path_, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }();
  {
    std::string other = bytes;
    const size_t at = other.find("llama", other.find("general.architecture"));
    other.replace(at, 5, "gemma");
    std::ofstream(path_, std::ios::binary) << other;
    auto ck = Checkpoint::Open(path_);
    ASSERT_FALSE(ck.ok());
    EXPECT_NE(ck.status().message().find("'gemma'"), std::string::npos) << ck.status();
  }
  {
    std::string shaped = bytes;
    const size_t at = shaped.find("llama.feed_forward_length") + 25 + 4;  // key, then the type
    uint32_t d;
    std::memcpy(&d, &shaped[at], 4);
    d *= 2;
    std::memcpy(&shaped[at], &d, 4);
    std::ofstream(path_, std::ios::binary) << shaped;
    EngineOptions o;
    o.model_dir = path_;
    auto e = Engine::Load(o);
    ASSERT_FALSE(e.ok());
    EXPECT_NE(e.status().message().find("model.gguf"), std::string::npos) << e.status();
    EXPECT_NE(e.status().message().find("has shape"), std::string::npos) << e.status();
  }
}

INSTANTIATE_TEST_SUITE_P(Q8AndQ4, GgufModel, ::testing::Values(DType::kQ8_0, DType::kQ4_0),
                         [](const auto& info) { return std::string(DTypeName(info.param)); });

}  // namespace
}  // namespace sparsed
