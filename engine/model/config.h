// Model hyper-parameters parsed from a Hugging Face config.json.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/common/activation.h"

namespace sparsed {

absl::string_view ActivationName(Activation a);

struct ModelConfig {
  std::string model_type;    // llama | mistral | sparsellama | minicpm
  std::string architecture;  // architectures[0]
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t vocab_size = 0;
  int64_t max_position_embeddings = 2048;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  double rope_linear_factor = 1.0;  // rope_scaling {"type": "linear", "factor": f}
  bool tie_word_embeddings = false;
  int32_t bos_token_id = 1;
  std::vector<int32_t> eos_token_ids = {2};
  Activation activation = Activation::kSilu;
  float activation_threshold = 0.f;  // fatrelu: hidden_act_param
  bool gated_ffn = true;  // sparsed extension "ffn_gated": false for W_down·act(W_up·x)
  std::string torch_dtype;
  // MiniCPM scalings (identity for other architectures). A minicpm config.json without
  // scale_emb, scale_depth or dim_model_base gets the published MiniCPM configuration's default
  // for it, 1 each: scale_emb = 1, residual_scale = 1 / sqrt(num_layers) and
  // logit_scale = 1 / hidden_size.
  double scale_emb = 1.0;       // embeddings are multiplied by this
  double residual_scale = 1.0;  // scale_depth / sqrt(num_layers)
  double logit_scale = 1.0;     // 1 / (hidden_size / dim_model_base)
};

// Parses config.json text. `file_name` appears in every error, with the offending field.
absl::StatusOr<ModelConfig> ParseModelConfig(absl::string_view json_text,
                                             absl::string_view file_name);

}  // namespace sparsed
