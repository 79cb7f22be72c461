#include "engine/model/config.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace sparsed {

absl::string_view ActivationName(Activation a) {
  switch (a) {
    case Activation::kSilu:
      return "silu";
    case Activation::kRelu:
      return "relu";
    case Activation::kRelu2:
      return "relu2";
    case Activation::kFatRelu:
      return "fatrelu";
    case Activation::kGelu:
      return "gelu";
    case Activation::kGeluTanh:
      return "gelu_pytorch_tanh";
  }
  return "?";
}

namespace {

using nlohmann::json;

class Reader {
 public:
  Reader(const json& j, absl::string_view file) : j_(j), file_(file) {}

  absl::Status Error(absl::string_view field, absl::string_view what) const {
    return absl::InvalidArgumentError(absl::StrCat(file_, ": field '", field, "' ", what));
  }
  bool Has(const char* k) const { return j_.contains(k) && !j_[k].is_null(); }

  absl::Status PositiveInt(const char* k, int64_t* out, bool required) const {
    if (!Has(k)) return required ? Error(k, "is missing") : absl::OkStatus();
    if (!j_[k].is_number_integer() || j_[k].get<int64_t>() <= 0)
      return Error(k, "must be a positive integer");
    *out = j_[k].get<int64_t>();
    return absl::OkStatus();
  }
  absl::Status PositiveNumber(const char* k, double* out) const {
    if (!Has(k)) return absl::OkStatus();
    if (!j_[k].is_number() || !(j_[k].get<double>() > 0) || !std::isfinite(j_[k].get<double>()))
      return Error(k, "must be a positive number");
    *out = j_[k].get<double>();
    return absl::OkStatus();
  }
  absl::Status Bool(const char* k, bool* out) const {
    if (!Has(k)) return absl::OkStatus();
    if (!j_[k].is_boolean()) return Error(k, "must be true or false");
    *out = j_[k].get<bool>();
    return absl::OkStatus();
  }

 private:
  const json& j_;
  absl::string_view file_;
};

#define CFG_TRY(expr)         \
  do {                        \
    absl::Status _s = (expr); \
    if (!_s.ok()) return _s;  \
  } while (0)

}  // namespace

absl::StatusOr<ModelConfig> ParseModelConfig(absl::string_view json_text,
                                             absl::string_view file_name) {
  json j = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(file_name, ": not a valid JSON object"));
  }
  Reader r(j, file_name);
  ModelConfig c;
  if (!r.Has("model_type") || !j["model_type"].is_string())
    return r.Error("model_type", "is missing");
  c.model_type = j["model_type"].get<std::string>();
  if (c.model_type != "llama" && c.model_type != "mistral" && c.model_type != "sparsellama" &&
      c.model_type != "minicpm") {
    return r.Error(
        "model_type",
        absl::StrCat("is '", c.model_type, "'; supported: llama, mistral, sparsellama, minicpm"));
  }
  if (r.Has("architectures") && j["architectures"].is_array() && !j["architectures"].empty() &&
      j["architectures"][0].is_string()) {
    c.architecture = j["architectures"][0].get<std::string>();
  }
  CFG_TRY(r.PositiveInt("hidden_size", &c.hidden_size, true));
  CFG_TRY(r.PositiveInt("intermediate_size", &c.intermediate_size, true));
  CFG_TRY(r.PositiveInt("num_hidden_layers", &c.num_layers, true));
  CFG_TRY(r.PositiveInt("num_attention_heads", &c.num_heads, true));
  c.num_kv_heads = c.num_heads;
  CFG_TRY(r.PositiveInt("num_key_value_heads", &c.num_kv_heads, false));
  CFG_TRY(r.PositiveInt("vocab_size", &c.vocab_size, true));
  CFG_TRY(r.PositiveInt("max_position_embeddings", &c.max_position_embeddings, false));
  if (c.hidden_size % c.num_heads != 0)
    return r.Error("num_attention_heads", "must divide hidden_size");
  c.head_dim = c.hidden_size / c.num_heads;
  CFG_TRY(r.PositiveInt("head_dim", &c.head_dim, false));
  if (c.head_dim % 2 != 0) return r.Error("head_dim", "must be even for rotary embeddings");
  if (c.num_heads % c.num_kv_heads != 0)
    return r.Error("num_key_value_heads", "must divide num_attention_heads");
  CFG_TRY(r.PositiveNumber("rms_norm_eps", &c.rms_norm_eps));
  CFG_TRY(r.PositiveNumber("rope_theta", &c.rope_theta));
  if (r.Has("rope_scaling")) {
    const json& rs = j["rope_scaling"];
    const std::string type =
        rs.is_object() && rs.contains("type") && rs["type"].is_string()
            ? rs["type"].get<std::string>()
            : (rs.is_object() && rs.contains("rope_type") && rs["rope_type"].is_string()
                   ? rs["rope_type"].get<std::string>()
                   : "");
    if (type != "linear" || !rs.contains("factor") || !rs["factor"].is_number() ||
        !(rs["factor"].get<double>() > 0)) {
      return r.Error("rope_scaling",
                     "is supported only as {\"type\": \"linear\", \"factor\": f > 0}");
    }
    c.rope_linear_factor = rs["factor"].get<double>();
  }
  c.tie_word_embeddings = c.model_type == "minicpm";
  CFG_TRY(r.Bool("tie_word_embeddings", &c.tie_word_embeddings));
  CFG_TRY(r.Bool("ffn_gated", &c.gated_ffn));
  if (r.Has("bos_token_id")) {
    if (!j["bos_token_id"].is_number_integer())
      return r.Error("bos_token_id", "must be an integer");
    c.bos_token_id = j["bos_token_id"].get<int32_t>();
  }
  if (r.Has("eos_token_id")) {
    const json& e = j["eos_token_id"];
    c.eos_token_ids.clear();
    if (e.is_number_integer()) {
      c.eos_token_ids.push_back(e.get<int32_t>());
    } else if (e.is_array()) {
      for (const auto& v : e) {
        if (!v.is_number_integer())
          return r.Error("eos_token_id", "must be an integer or a list of integers");
        c.eos_token_ids.push_back(v.get<int32_t>());
      }
    } else {
      return r.Error("eos_token_id", "must be an integer or a list of integers");
    }
  }
  for (int32_t id : c.eos_token_ids) {
    if (id < 0 || id >= c.vocab_size) return r.Error("eos_token_id", "is outside the vocabulary");
  }
  if (c.bos_token_id < 0 || c.bos_token_id >= c.vocab_size)
    return r.Error("bos_token_id", "is outside the vocabulary");

  std::string act = "silu";
  if (r.Has("hidden_act")) {
    if (!j["hidden_act"].is_string()) return r.Error("hidden_act", "must be a string");
    act = j["hidden_act"].get<std::string>();
  }
  if (act == "silu" || act == "swish") {
    c.activation = Activation::kSilu;
  } else if (act == "relu") {
    c.activation = Activation::kRelu;
  } else if (act == "relu2" || act == "relu_squared") {
    c.activation = Activation::kRelu2;
  } else if (act == "fatrelu") {
    c.activation = Activation::kFatRelu;
    if (!r.Has("hidden_act_param") || !j["hidden_act_param"].is_number() ||
        j["hidden_act_param"].get<double>() < 0) {
      return r.Error("hidden_act_param",
                     "must be a non-negative number when hidden_act is fatrelu");
    }
    c.activation_threshold = j["hidden_act_param"].get<float>();
  } else if (act == "gelu") {
    c.activation = Activation::kGelu;
  } else if (act == "gelu_new" || act == "gelu_pytorch_tanh" || act == "gelu_fast") {
    c.activation = Activation::kGeluTanh;
  } else {
    return r.Error("hidden_act",
                   absl::StrCat("is '", act,
                                "'; supported: silu, relu, relu2, fatrelu, gelu, gelu_new, "
                                "gelu_pytorch_tanh"));
  }
  if (r.Has("torch_dtype") && j["torch_dtype"].is_string())
    c.torch_dtype = j["torch_dtype"].get<std::string>();

  if (c.model_type == "minicpm") {
    // Absent fields take the published MiniCPM configuration's defaults: scale_emb = 1,
    // scale_depth = 1, dim_model_base = 1 (so the logits are divided by hidden_size).
    CFG_TRY(r.PositiveNumber("scale_emb", &c.scale_emb));
    double scale_depth = 1.0;
    CFG_TRY(r.PositiveNumber("scale_depth", &scale_depth));
    c.residual_scale = scale_depth / std::sqrt(static_cast<double>(c.num_layers));
    double dim_model_base = 1.0;
    CFG_TRY(r.PositiveNumber("dim_model_base", &dim_model_base));
    c.logit_scale = dim_model_base / static_cast<double>(c.hidden_size);
  }
  return c;
}

}  // namespace sparsed
