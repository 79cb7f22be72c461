#include "tools/synthetic.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "engine/common/status_macros.h"
#include "engine/model/safetensors_writer.h"
#include "engine/tokenizer/tokenizer.h"
#include "nlohmann/json.hpp"

namespace sparsed {

std::vector<double> NeuronRates(int64_t neurons, double active_ratio, double skew, uint64_t seed) {
  std::mt19937_64 rng(seed ^ 0x5eedull);
  std::uniform_real_distribution<double> uni(0.0, 1.0);
  std::vector<double> r(neurons);
  for (double& v : r) v = skew <= 0 ? 1.0 : std::pow(uni(rng), skew);
  // Scale to the requested mean, capping each rate at 0.98 and redistributing the excess.
  for (int iter = 0; iter < 20; ++iter) {
    double sum = 0;
    for (double v : r) sum += v;
    const double scale = active_ratio * neurons / std::max(sum, 1e-12);
    bool capped = false;
    for (double& v : r) {
      v *= scale;
      if (v > 0.98) {
        v = 0.98;
        capped = true;
      }
    }
    if (!capped) break;
  }
  return r;
}

std::vector<std::vector<uint8_t>> DrawMasks(const std::vector<double>& rates, int tokens, std::mt19937_64& rng) {
  std::uniform_real_distribution<double> uni(0.0, 1.0);
  std::vector<std::vector<uint8_t>> m(tokens, std::vector<uint8_t>(rates.size()));
  for (auto& row : m) {
    for (size_t i = 0; i < rates.size(); ++i) row[i] = uni(rng) < rates[i];
  }
  return m;
}

absl::Status ResolvePreset(SyntheticModelSpec* s) {
  struct Shape { int64_t d, f, l, h, kv, v; };
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
    return absl::InvalidArgumentError(absl::StrCat("preset '", s->preset,
                                                   "' is not one of: tiny, small, tinyllama-1.1b, llama2-7b"));
  }
  if (!s->hidden) s->hidden = p.d;
  if (!s->intermediate) s->intermediate = p.f;
  if (!s->layers) s->layers = p.l;
  if (!s->heads) s->heads = p.h;
  if (!s->kv_heads) s->kv_heads = p.kv;
  if (!s->vocab) s->vocab = p.v;
  if (s->hidden % s->heads || s->heads % s->kv_heads || (s->hidden / s->heads) % 2) {
    return absl::InvalidArgumentError("heads must divide hidden (even head size) and kv_heads must divide heads");
  }
  return absl::OkStatus();
}

namespace {

// Inverse of the standard normal CDF (Acklam's rational approximation, |error| < 1.2e-9).
double NormalQuantile(double p) {
  static const double a[] = {-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02,
                             1.383577518672690e+02, -3.066479806614716e+01, 2.506628277459239e+00};
  static const double b[] = {-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
                             6.680131188771972e+01, -1.328068155288572e+01};
  static const double c[] = {-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
                             -2.549671010050049e+00, 4.374664141464968e+00, 2.938163982698783e+00};
  static const double d[] = {7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
                             3.754408661907416e+00};
  p = std::clamp(p, 1e-12, 1 - 1e-12);
  if (p < 0.02425) {
    const double q = std::sqrt(-2 * std::log(p));
    return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
           ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  }
  if (p > 1 - 0.02425) return -NormalQuantile(1 - p);
  const double q = p - 0.5, r = q * q;
  return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
         (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
}

class Gen {
 public:
  explicit Gen(uint64_t seed) : rng_(seed) {}
  std::vector<float> Normal(size_t n, double std) {
    std::normal_distribution<float> nd(0.f, static_cast<float>(std));
    std::vector<float> v(n);
    for (float& x : v) x = nd(rng_);
    return v;
  }
  std::mt19937_64& rng() { return rng_; }

 private:
  std::mt19937_64 rng_;
};

constexpr char kFallbackCorpus[] =
    "The quick brown fox jumps over the lazy dog. A sparse model skips the neurons that stay silent.\n"
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

  nlohmann::json cfg = {
      {"model_type", s.model_type},
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
      {"torch_dtype", s.dtype == DType::kF32 ? "float32" : s.dtype == DType::kBF16 ? "bfloat16" : "float16"}};
  if (s.model_type == "sparsellama") cfg["architectures"] = {"SparseLlamaForCausalLM"};
  else if (minicpm) cfg["architectures"] = {"MiniCPMForCausalLM"};
  else if (s.model_type == "mistral") cfg["architectures"] = {"MistralForCausalLM"};
  else cfg["architectures"] = {"LlamaForCausalLM"};
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

  Gen g(s.seed);
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
  auto add = [&](const std::string& name, std::vector<int64_t> shape, const std::vector<float>& v) -> absl::Status {
    TensorToWrite t{name, s.dtype, std::move(shape), EncodeTensor(v, s.dtype)};
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
  if (!tie) RETURN_IF_ERROR(add("lm_head.weight", {s.vocab, d}, g.Normal(static_cast<size_t>(s.vocab) * d, 1.0 / std::sqrt(d))));

  const bool relu_family = s.activation == "relu" || s.activation == "relu2" || s.activation == "fatrelu";
  for (int64_t l = 0; l < s.layers; ++l) {
    const std::string p = absl::StrCat("model.layers.", l, ".");
    RETURN_IF_ERROR(add(p + "input_layernorm.weight", {d}, std::vector<float>(d, 1.f)));
    RETURN_IF_ERROR(add(p + "post_attention_layernorm.weight", {d}, std::vector<float>(d, 1.f)));
    const double wstd = 1.0 / std::sqrt(static_cast<double>(d));
    RETURN_IF_ERROR(add(p + "self_attn.q_proj.weight", {s.heads * hd, d}, g.Normal(s.heads * hd * d, wstd)));
    RETURN_IF_ERROR(add(p + "self_attn.k_proj.weight", {s.kv_heads * hd, d}, g.Normal(s.kv_heads * hd * d, wstd)));
    RETURN_IF_ERROR(add(p + "self_attn.v_proj.weight", {s.kv_heads * hd, d}, g.Normal(s.kv_heads * hd * d, wstd)));
    // Residual branches stay small, and never write channel 0, so it stays a constant 1.
    std::vector<float> o = g.Normal(d * s.heads * hd, 0.1 / std::sqrt(static_cast<double>(s.heads * hd)));
    for (int64_t c = 0; c < s.heads * hd; ++c) o[c] = 0.f;
    RETURN_IF_ERROR(add(p + "self_attn.o_proj.weight", {d, s.heads * hd}, o));
    // Gate rows: channel 0 gets -z_i·‖w_i‖ so that P(gate_i > 0) ≈ the neuron's rate.
    std::vector<double> rates = NeuronRates(f, s.active_ratio, s.skew, s.seed * 7919 + l);
    std::vector<float> gate = g.Normal(f * d, wstd);
    if (relu_family) {
      for (int64_t i = 0; i < f; ++i) {
        double norm2 = 0;
        for (int64_t c = 1; c < d; ++c) norm2 += double(gate[i * d + c]) * gate[i * d + c];
        gate[i * d] = static_cast<float>(-NormalQuantile(1.0 - rates[i]) * std::sqrt(norm2));
      }
    }
    if (s.gated) RETURN_IF_ERROR(add(p + "mlp.gate_proj.weight", {f, d}, gate));
    RETURN_IF_ERROR(add(p + "mlp.up_proj.weight", {f, d}, s.gated ? g.Normal(f * d, wstd) : gate));
    std::vector<float> down = g.Normal(d * f, 0.3 / std::sqrt(static_cast<double>(f) * std::max(0.02, s.active_ratio)));
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
    nlohmann::json index = {{"metadata", {{"total_size", 0}}}, {"weight_map", nlohmann::json::object()}};
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
