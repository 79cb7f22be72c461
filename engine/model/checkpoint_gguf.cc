// Checkpoint over a GGUF file of the llama architecture (checkpoint.h): its metadata as a
// config.json, its tensors under their Hugging Face names.
//
// Keys read (llama.cpp's names): general.architecture ("llama"), llama.embedding_length,
// llama.feed_forward_length, llama.block_count, llama.attention.head_count,
// llama.attention.head_count_kv, llama.attention.key_length, llama.context_length,
// llama.attention.layer_norm_rms_epsilon, llama.rope.freq_base, llama.rope.scaling.type and
// .factor (linear), llama.rope.dimension_count (must cover the whole head),
// tokenizer.ggml.bos_token_id and eos_token_id. GGUF has no field for a ReLU-family FFN, so
// sparsed reads its own: sparsed.hidden_act ("relu", "relu2", "fatrelu", … as config.json's
// hidden_act) and sparsed.hidden_act_param; without them the FFN is llama's SiLU.
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "engine/common/status_macros.h"
#include "engine/model/checkpoint.h"
#include "nlohmann/json.hpp"

namespace sparsed {
namespace {

using json = nlohmann::json;

const GgufValue* Find(const GgufHeader& h, const std::string& key) {
  auto it = h.metadata.find(key);
  return it == h.metadata.end() ? nullptr : &it->second;
}

}  // namespace

absl::Status Checkpoint::OpenGguf(const std::string& path) {
  namespace fs = std::filesystem;
  ASSIGN_OR_RETURN(gguf_, GgufFile::Open(path));
  dir_ = fs::path(path).parent_path().string();
  if (dir_.empty()) dir_ = ".";
  const GgufHeader& h = gguf_->header();
  config_text_ = std::string(gguf_->header_bytes());
  auto bad = [&](const std::string& key, absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": metadata '", key, "' ", what));
  };
  auto integer = [&](const std::string& key, bool required, json* out,
                     const char* field) -> absl::Status {
    const GgufValue* v = Find(h, key);
    if (v == nullptr) return required ? bad(key, "is missing") : absl::OkStatus();
    if (v->kind != GgufValue::Kind::kInt) return bad(key, "must be an integer");
    (*out)[field] = v->i;
    return absl::OkStatus();
  };
  auto number = [&](const std::string& key, json* out, const char* field) -> absl::Status {
    const GgufValue* v = Find(h, key);
    if (v == nullptr) return absl::OkStatus();
    if (v->kind != GgufValue::Kind::kFloat && v->kind != GgufValue::Kind::kInt)
      return bad(key, "must be a number");
    (*out)[field] = v->kind == GgufValue::Kind::kFloat ? v->f : static_cast<double>(v->i);
    return absl::OkStatus();
  };

  const GgufValue* arch = Find(h, "general.architecture");
  if (arch == nullptr || arch->kind != GgufValue::Kind::kString)
    return bad("general.architecture", "is missing or not a string");
  if (arch->s != "llama") {
    return bad("general.architecture",
               absl::StrCat("is '", arch->s, "'; sparsed serves the llama architecture from GGUF"));
  }
  json c = json::object();
  c["model_type"] = "llama";
  c["architectures"] = json::array({"LlamaForCausalLM"});
  RETURN_IF_ERROR(integer("llama.embedding_length", true, &c, "hidden_size"));
  RETURN_IF_ERROR(integer("llama.feed_forward_length", true, &c, "intermediate_size"));
  RETURN_IF_ERROR(integer("llama.block_count", true, &c, "num_hidden_layers"));
  RETURN_IF_ERROR(integer("llama.attention.head_count", true, &c, "num_attention_heads"));
  RETURN_IF_ERROR(integer("llama.attention.head_count_kv", false, &c, "num_key_value_heads"));
  RETURN_IF_ERROR(integer("llama.attention.key_length", false, &c, "head_dim"));
  RETURN_IF_ERROR(integer("llama.context_length", false, &c, "max_position_embeddings"));
  RETURN_IF_ERROR(number("llama.attention.layer_norm_rms_epsilon", &c, "rms_norm_eps"));
  RETURN_IF_ERROR(number("llama.rope.freq_base", &c, "rope_theta"));
  RETURN_IF_ERROR(integer("tokenizer.ggml.bos_token_id", false, &c, "bos_token_id"));
  RETURN_IF_ERROR(integer("tokenizer.ggml.eos_token_id", false, &c, "eos_token_id"));
  if (const GgufValue* t = Find(h, "llama.rope.scaling.type")) {
    if (t->kind != GgufValue::Kind::kString)
      return bad("llama.rope.scaling.type", "must be a string");
    if (t->s == "linear") {
      json rs = {{"type", "linear"}};
      RETURN_IF_ERROR(number("llama.rope.scaling.factor", &rs, "factor"));
      c["rope_scaling"] = rs;
    } else if (t->s != "none") {
      return bad("llama.rope.scaling.type", absl::StrCat("is '", t->s, "'; supported: linear"));
    }
  }
  if (const GgufValue* act = Find(h, "sparsed.hidden_act")) {
    if (act->kind != GgufValue::Kind::kString) return bad("sparsed.hidden_act", "must be a string");
    c["hidden_act"] = act->s;
    RETURN_IF_ERROR(number("sparsed.hidden_act_param", &c, "hidden_act_param"));
  }
  const auto emb = h.tensors.find("token_embd.weight");
  if (emb == h.tensors.end() || emb->second.ne.size() != 2) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": tensor 'token_embd.weight' is missing or not 2-D"));
  }
  c["vocab_size"] = emb->second.ne[1];
  if (const GgufValue* n = Find(h, "llama.vocab_size")) {
    if (n->kind != GgufValue::Kind::kInt || n->i != emb->second.ne[1])
      return bad("llama.vocab_size", "disagrees with token_embd.weight's rows");
  }
  c["tie_word_embeddings"] = h.tensors.count("output.weight") == 0;
  c["ffn_gated"] = h.tensors.count("blk.0.ffn_gate.weight") != 0;
  if (const GgufValue* rd = Find(h, "llama.rope.dimension_count")) {
    const int64_t heads = c["num_attention_heads"].get<int64_t>();
    const int64_t hd = c.contains("head_dim") ? c["head_dim"].get<int64_t>()
                                              : c["hidden_size"].get<int64_t>() / heads;
    if (rd->kind != GgufValue::Kind::kInt || rd->i != hd) {
      return bad("llama.rope.dimension_count",
                 absl::StrCat("must equal the head dimension (", hd,
                              "): partial rotary embeddings are not supported"));
    }
  }
  ASSIGN_OR_RETURN(config_, ParseModelConfig(c.dump(), absl::StrCat(path, " (metadata)")));

  gguf_names_["model.embed_tokens.weight"] = "token_embd.weight";
  gguf_names_["model.norm.weight"] = "output_norm.weight";
  if (!config_.tie_word_embeddings) gguf_names_["lm_head.weight"] = "output.weight";
  for (int64_t i = 0; i < config_.num_layers; ++i) {
    const std::string hf = absl::StrCat("model.layers.", i, "."), g = absl::StrCat("blk.", i, ".");
    for (auto [from, to] : {std::pair{"input_layernorm.weight", "attn_norm.weight"},
                            std::pair{"post_attention_layernorm.weight", "ffn_norm.weight"},
                            std::pair{"self_attn.q_proj.weight", "attn_q.weight"},
                            std::pair{"self_attn.k_proj.weight", "attn_k.weight"},
                            std::pair{"self_attn.v_proj.weight", "attn_v.weight"},
                            std::pair{"self_attn.o_proj.weight", "attn_output.weight"},
                            std::pair{"mlp.gate_proj.weight", "ffn_gate.weight"},
                            std::pair{"mlp.up_proj.weight", "ffn_up.weight"},
                            std::pair{"mlp.down_proj.weight", "ffn_down.weight"}}) {
      if (std::string(from) == "mlp.gate_proj.weight" && !config_.gated_ffn) continue;
      gguf_names_[hf + from] = g + to;
    }
  }
  return absl::OkStatus();
}

}  // namespace sparsed
