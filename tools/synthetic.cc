#include "tools/synthetic.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "engine/common/mix.h"
#include "engine/common/status_macros.h"
#include "engine/common/thread_pool.h"
#include "engine/model/safetensors_writer.h"
#include "engine/tokenizer/tokenizer.h"
#include "nlohmann/json.hpp"
#include "tools/neuron_rates.h"

namespace sparsed {

absl::Status ResolvePreset(SyntheticModelSpec* s) {
  struct Shape {
    int64_t d, f, l, h, kv, v;
  };
  Shape p;
  if (s->preset == "tiny") {
    p = {64, 256, 2, 4, 2, 1024};
  } else if (s->preset == "small") {
    p = {256, 1024, 4, 8, 4, 2048};
  } else if (s->preset == "tinyllama-1.1b") {
    p = {2048, 5632, 22, 32, 4, 32000};
  } else if (s->preset == "llama2-7b") {
    p = {4096, 11008, 32, 32, 32, 32000};
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "preset '", s->preset, "' is not one of: tiny, small, tinyllama-1.1b, llama2-7b"));
  }
  if (!s->hidden) s->hidden = p.d;
  if (!s->intermediate) s->intermediate = p.f;
  if (!s->layers) s->layers = p.l;
  if (!s->heads) s->heads = p.h;
  if (!s->kv_heads) s->kv_heads = p.kv;
  if (!s->vocab) s->vocab = p.v;
  if (s->hidden % s->heads || s->heads % s->kv_heads || (s->hidden / s->heads) % 2) {
    return absl::InvalidArgumentError(
        "heads must divide hidden (even head size) and kv_heads must divide heads");
  }
  return absl::OkStatus();
}

namespace {

// Runs fn(chunk, begin, end) over [0, n) cut into fixed chunks of `chunk` elements, on the
// pool's threads. fn must depend on its chunk alone (never on the thread running it), so the
// results are the same on every machine.
void ForChunks(ThreadPool& pool, size_t n, size_t chunk,
               const std::function<void(size_t, size_t, size_t)>& fn) {
  const size_t chunks = (n + chunk - 1) / chunk;
  pool.ParallelFor(static_cast<int>(chunks),
                   [&](int c) { fn(c, c * chunk, std::min(n, (c + 1) * chunk)); });
}

constexpr size_t kGenChunk = size_t{1} << 20;

// Deterministic weights: each tensor draws one seed from the spec's generator, and each 1 Mi-value
// chunk of it has its own generator seeded from that, so large presets are generated on all cores
// with the same values as on one.
class Gen {
 public:
  Gen(uint64_t seed, ThreadPool& pool) : rng_(seed), pool_(pool) {}
  std::vector<float> Normal(size_t n, double std) {
    const uint64_t seed = rng_();
    std::vector<float> v(n);
    ForChunks(pool_, n, kGenChunk, [&](size_t c, size_t begin, size_t end) {
      std::mt19937_64 r(Mix64(seed ^ Mix64(c)));
      std::normal_distribution<float> nd(0.f, static_cast<float>(std));
      for (size_t i = begin; i < end; ++i) v[i] = nd(r);
    });
    return v;
  }

 private:
  std::mt19937_64 rng_;
  ThreadPool& pool_;
};

// EncodeTensor on the pool's threads.
std::vector<uint8_t> Encode(ThreadPool& pool, const std::vector<float>& v, DType dtype) {
  std::vector<uint8_t> out(v.size() * DTypeSize(dtype));
  ForChunks(pool, v.size(), kGenChunk, [&](size_t, size_t begin, size_t end) {
    for (size_t i = begin; i < end; ++i) StoreFromF32(out.data(), dtype, i, v[i]);
  });
  return out;
}

constexpr char kFallbackCorpus[] =
    "The quick brown fox jumps over the lazy dog. A sparse model skips the neurons that stay "
    "silent.\n"
    "Serving large language models quickly means reading fewer weights for every generated token.\n"
    "Each layer keeps a mask of active neurons, and a batch shares the union of those masks.\n";

absl::Status WriteTokenizer(const std::string& dir, int64_t vocab) {
  namespace fs = std::filesystem;
  const fs::path corpus = fs::path(dir) / ".tokenizer_corpus.txt";
  {
    std::ofstream out(corpus);
    std::ifstream gpl("/usr/share/common-licenses/GPL-3");
    if (gpl) {
      out << gpl.rdbuf();
    }
    for (int i = 0; i < 20; ++i) out << kFallbackCorpus;
  }
  const int64_t pieces = std::min<int64_t>(vocab, 1000);
  const std::string prefix = (fs::path(dir) / "tokenizer").string();
  const absl::Status s = TrainSentencePiece(absl::StrCat(
      "--input=", corpus.string(), " --model_prefix=", prefix, " --vocab_size=", pieces,
      " --model_type=bpe --byte_fallback=true --hard_vocab_limit=false --character_coverage=1.0",
      " --minloglevel=2 --num_threads=1"));
  fs::remove(corpus);
  fs::remove(prefix + ".vocab");
  return s;
}

}  // namespace

absl::Status MakeSyntheticModel(const SyntheticModelSpec& spec_in, const std::string& dir,
                                const std::function<void(const std::string&)>& progress) {
  namespace fs = std::filesystem;
  SyntheticModelSpec s = spec_in;
  RETURN_IF_ERROR(ResolvePreset(&s));
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return absl::PermissionDeniedError(absl::StrCat(dir, ": cannot create: ", ec.message()));
  const int64_t d = s.hidden, f = s.intermediate, hd = d / s.heads;
  const bool minicpm = s.model_type == "minicpm";
  const bool tie = s.tie_embeddings || minicpm;

  nlohmann::json cfg = {{"model_type", s.model_type},
                        {"hidden_size", d},
                        {"intermediate_size", f},
                        {"num_hidden_layers", s.layers},
                        {"num_attention_heads", s.heads},
                        {"num_key_value_heads", s.kv_heads},
                        {"vocab_size", s.vocab},
                        {"max_position_embeddings", 4096},
                        {"rms_norm_eps", 1e-5},
                        {"rope_theta", 10000.0},
                        {"hidden_act", s.activation},
                        {"tie_word_embeddings", tie},
                        {"bos_token_id", 1},
                        {"eos_token_id", 2},
                        {"torch_dtype", s.dtype == DType::kF32    ? "float32"
                                        : s.dtype == DType::kBF16 ? "bfloat16"
                                                                  : "float16"}};
  if (s.model_type == "sparsellama")
    cfg["architectures"] = {"SparseLlamaForCausalLM"};
  else if (minicpm)
    cfg["architectures"] = {"MiniCPMForCausalLM"};
  else if (s.model_type == "mistral")
    cfg["architectures"] = {"MistralForCausalLM"};
  else
    cfg["architectures"] = {"LlamaForCausalLM"};
  if (s.activation == "fatrelu") cfg["hidden_act_param"] = s.act_param;
  if (!s.gated) cfg["ffn_gated"] = false;
  if (minicpm) {
    cfg["scale_emb"] = 12;
    cfg["scale_depth"] = 1.4;
    cfg["dim_model_base"] = std::max<int64_t>(1, d / 4);
  }
  {
    std::ofstream out(fs::path(dir) / "config.json");
    out << cfg.dump(2) << "\n";
    if (!out) return absl::DataLossError(absl::StrCat(dir, "/config.json: write failed"));
  }

  ThreadPool pool(static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  Gen g(s.seed, pool);
  std::vector<TensorToWrite> shard;
  int64_t shard_size = 0;
  std::vector<std::string> shard_files;
  nlohmann::json weight_map = nlohmann::json::object();
  std::vector<std::vector<std::string>> names_per_shard;
  auto flush = [&]() -> absl::Status {
    if (shard.empty()) return absl::OkStatus();
    const std::string name = absl::StrCat("shard-", shard_files.size());
    RETURN_IF_ERROR(WriteSafetensors((fs::path(dir) / name).string(), shard, {{"format", "pt"}}));
    names_per_shard.emplace_back();
    for (const auto& t : shard) names_per_shard.back().push_back(t.name);
    shard_files.push_back(name);
    shard.clear();
    shard_size = 0;
    return absl::OkStatus();
  };
  auto add = [&](const std::string& name, std::vector<int64_t> shape,
                 const std::vector<float>& v) -> absl::Status {
    TensorToWrite t{name, s.dtype, std::move(shape), Encode(pool, v, s.dtype)};
    shard_size += static_cast<int64_t>(t.bytes.size());
    shard.push_back(std::move(t));
    if (s.shard_bytes > 0 && shard_size >= s.shard_bytes) return flush();
    return absl::OkStatus();
  };

  // Embeddings: channel 0 holds a constant that the FFN gates use as a bias (see below).
  std::vector<float> emb = g.Normal(static_cast<size_t>(s.vocab) * d, 1.0);
  for (int64_t v = 0; v < s.vocab; ++v) emb[v * d] = 1.0f;
  RETURN_IF_ERROR(add("model.embed_tokens.weight", {s.vocab, d}, emb));
  RETURN_IF_ERROR(add("model.norm.weight", {d}, std::vector<float>(d, 1.f)));
  if (!tie)
    RETURN_IF_ERROR(add("lm_head.weight", {s.vocab, d},
                        g.Normal(static_cast<size_t>(s.vocab) * d, 1.0 / std::sqrt(d))));

  const bool relu_family =
      s.activation == "relu" || s.activation == "relu2" || s.activation == "fatrelu";
  for (int64_t l = 0; l < s.layers; ++l) {
    const std::string p = absl::StrCat("model.layers.", l, ".");
    RETURN_IF_ERROR(add(p + "input_layernorm.weight", {d}, std::vector<float>(d, 1.f)));
    RETURN_IF_ERROR(add(p + "post_attention_layernorm.weight", {d}, std::vector<float>(d, 1.f)));
    const double wstd = 1.0 / std::sqrt(static_cast<double>(d));
    RETURN_IF_ERROR(
        add(p + "self_attn.q_proj.weight", {s.heads * hd, d}, g.Normal(s.heads * hd * d, wstd)));
    RETURN_IF_ERROR(add(p + "self_attn.k_proj.weight", {s.kv_heads * hd, d},
                        g.Normal(s.kv_heads * hd * d, wstd)));
    RETURN_IF_ERROR(add(p + "self_attn.v_proj.weight", {s.kv_heads * hd, d},
                        g.Normal(s.kv_heads * hd * d, wstd)));
    // Residual branches stay small, and never write channel 0, so it stays a constant 1.
    std::vector<float> o =
        g.Normal(d * s.heads * hd, 0.1 / std::sqrt(static_cast<double>(s.heads * hd)));
    for (int64_t c = 0; c < s.heads * hd; ++c) o[c] = 0.f;
    RETURN_IF_ERROR(add(p + "self_attn.o_proj.weight", {d, s.heads * hd}, o));
    // Gate rows: channel 0 carries a bias so that P(gate_i > 0) ≈ the neuron's rate.
    std::vector<float> gate = g.Normal(f * d, wstd);
    if (relu_family)
      SetGateBias(&gate, d, NeuronRates(f, s.active_ratio, s.skew, s.seed * 7919 + l));
    if (s.gated) RETURN_IF_ERROR(add(p + "mlp.gate_proj.weight", {f, d}, gate));
    RETURN_IF_ERROR(add(p + "mlp.up_proj.weight", {f, d}, s.gated ? g.Normal(f * d, wstd) : gate));
    std::vector<float> down =
        g.Normal(d * f, 0.3 / std::sqrt(static_cast<double>(f) * std::max(0.02, s.active_ratio)));
    for (int64_t c = 0; c < f; ++c) down[c] = 0.f;  // row 0 of W_down: output channel 0
    RETURN_IF_ERROR(add(p + "mlp.down_proj.weight", {d, f}, down));
    if (progress) progress(absl::StrCat("layer ", l + 1, "/", s.layers, " written"));
  }
  RETURN_IF_ERROR(flush());
  if (shard_files.size() == 1 && s.shard_bytes <= 0) {
    fs::rename(fs::path(dir) / shard_files[0], fs::path(dir) / "model.safetensors", ec);
    if (ec) return absl::InternalError(ec.message());
  } else {
    const int n = static_cast<int>(shard_files.size());
    nlohmann::json index = {{"metadata", {{"total_size", 0}}},
                            {"weight_map", nlohmann::json::object()}};
    for (int i = 0; i < n; ++i) {
      char name[64];
      std::snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", i + 1, n);
      fs::rename(fs::path(dir) / shard_files[i], fs::path(dir) / name, ec);
      if (ec) return absl::InternalError(ec.message());
      for (const auto& t : names_per_shard[i]) index["weight_map"][t] = name;
    }
    std::ofstream out(fs::path(dir) / "model.safetensors.index.json");
    out << index.dump(2) << "\n";
  }
  if (s.tokenizer) RETURN_IF_ERROR(WriteTokenizer(dir, s.vocab));
  return absl::OkStatus();
}

}  // namespace sparsed
