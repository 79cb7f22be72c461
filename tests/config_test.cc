#include "engine/model/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

namespace sparsed {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

// The published ProSparse-LLaMA-2-7B config (fields the engine reads).
constexpr char kProSparse[] = R"({
  "architectures": ["SparseLlamaForCausalLM"], "model_type": "sparsellama",
  "hidden_act": "fatrelu", "hidden_act_param": 0.01, "hidden_size": 4096,
  "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32,
  "num_key_value_heads": 32, "vocab_size": 32000, "rms_norm_eps": 1e-05,
  "max_position_embeddings": 4096, "bos_token_id": 1, "eos_token_id": 2,
  "tie_word_embeddings": false, "torch_dtype": "bfloat16", "rope_scaling": null})";

// The published MiniCPM-S-1B config (fields the engine reads).
constexpr char kMiniCpmS[] = R"({
  "architectures": ["MiniCPMForCausalLM"], "model_type": "minicpm", "hidden_act": "fatrelu",
  "hidden_act_param": 0.03, "hidden_size": 1536, "intermediate_size": 3840,
  "num_hidden_layers": 52, "num_attention_heads": 24, "num_key_value_heads": 8,
  "vocab_size": 73440, "scale_emb": 12, "dim_model_base": 256, "scale_depth": 1.4,
  "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "bos_token_id": 1, "eos_token_id": 2,
  "torch_dtype": "bfloat16"})";

TEST(Config, ParsesProSparse) {
  auto c = ParseModelConfig(kProSparse, "config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->activation, Activation::kFatRelu);
  EXPECT_FLOAT_EQ(c->activation_threshold, 0.01f);
  EXPECT_EQ(c->head_dim, 128);
  EXPECT_EQ(c->num_kv_heads, 32);
  EXPECT_EQ(c->architecture, "SparseLlamaForCausalLM");
  EXPECT_FALSE(c->tie_word_embeddings);
  EXPECT_EQ(c->residual_scale, 1.0);
}

TEST(Config, ParsesMiniCpmScalings) {
  auto c = ParseModelConfig(kMiniCpmS, "config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->tie_word_embeddings);  // MiniCPM ties unless told otherwise
  EXPECT_EQ(c->scale_emb, 12.0);
  EXPECT_DOUBLE_EQ(c->residual_scale, 1.4 / std::sqrt(52.0));
  EXPECT_DOUBLE_EQ(c->logit_scale, 256.0 / 1536.0);
  EXPECT_EQ(c->num_kv_heads, 8);
  EXPECT_EQ(c->head_dim, 64);
}

// Without scale_emb, scale_depth and dim_model_base, a minicpm config takes the published MiniCPM
// configuration's defaults (1 each): the logits are still divided by hidden_size / 1.
TEST(Config, MiniCpmDefaultsFollowThePublishedConfiguration) {
  auto c = ParseModelConfig(R"({"model_type":"minicpm","hidden_size":64,"intermediate_size":128,
    "num_hidden_layers":4,"num_attention_heads":4,"vocab_size":100})",
                            "c.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->scale_emb, 1.0);
  EXPECT_DOUBLE_EQ(c->residual_scale, 1.0 / std::sqrt(4.0));
  EXPECT_DOUBLE_EQ(c->logit_scale, 1.0 / 64.0);
  EXPECT_TRUE(c->tie_word_embeddings);
}

TEST(Config, EosListAndRopeScaling) {
  auto c = ParseModelConfig(R"({"model_type":"llama","hidden_size":64,"intermediate_size":128,
    "num_hidden_layers":1,"num_attention_heads":4,"vocab_size":100,"eos_token_id":[2,7],
    "rope_scaling":{"type":"linear","factor":2.0}})",
                            "c.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->eos_token_ids, (std::vector<int32_t>{2, 7}));
  EXPECT_EQ(c->rope_linear_factor, 2.0);
  EXPECT_EQ(c->activation, Activation::kSilu);
}

std::string Err(const std::string& json) {
  auto c = ParseModelConfig(json, "dir/config.json");
  EXPECT_FALSE(c.ok());
  return std::string(c.status().message());
}

TEST(Config, ErrorsNameFileAndField) {
  const std::string base =
      R"("model_type":"llama","hidden_size":64,"intermediate_size":128,"num_hidden_layers":1,"num_attention_heads":4,"vocab_size":100)";
  EXPECT_THAT(Err("{" + base + R"(,"hidden_act":"swiglu9"})"),
              AllOf(HasSubstr("dir/config.json"), HasSubstr("'hidden_act'"), HasSubstr("swiglu9")));
  EXPECT_THAT(Err("{" + base + R"(,"hidden_act":"fatrelu"})"), HasSubstr("'hidden_act_param'"));
  EXPECT_THAT(Err(R"({"model_type":"gpt2"})"), HasSubstr("'model_type'"));
  EXPECT_THAT(Err(R"({"model_type":"llama","hidden_size":64})"),
              HasSubstr("'intermediate_size' is missing"));
  EXPECT_THAT(Err("{" + base + R"(,"num_key_value_heads":3})"), HasSubstr("'num_key_value_heads'"));
  EXPECT_THAT(Err("{" + base + R"(,"hidden_size":-5})"), HasSubstr("positive"));
  EXPECT_THAT(Err("{" + base + R"(,"eos_token_id":1000})"), HasSubstr("'eos_token_id'"));
  EXPECT_THAT(Err("{" + base + R"(,"rope_scaling":{"type":"yarn","factor":4}})"),
              HasSubstr("'rope_scaling'"));
  EXPECT_THAT(Err("not json"), HasSubstr("not a valid JSON"));
}

}  // namespace
}  // namespace sparsed
