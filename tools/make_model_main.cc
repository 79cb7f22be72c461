// sparsed-make-model: writes a synthetic checkpoint in the Hugging Face layout.
#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "cli/cli_status.h"
#include "cli/help_flags.h"
#include "engine/common/dtype.h"
#include "tools/synthetic.h"

ABSL_FLAG(std::string, out, "", "Output directory (required).");
ABSL_FLAG(std::string, preset, "tiny", "Shape preset: tiny, small, tinyllama-1.1b, llama2-7b.");
ABSL_FLAG(std::string, model_type, "llama",
          "config.json model_type: llama, mistral, sparsellama, minicpm.");
ABSL_FLAG(std::string, activation, "relu", "hidden_act: silu, relu, relu2, fatrelu, gelu.");
ABSL_FLAG(double, act_param, 0.01, "FATReLU threshold (hidden_act_param) [0, 100].");
ABSL_FLAG(bool, gated, true, "Gated FFN (gate_proj); false writes ffn_gated: false.");
ABSL_FLAG(std::string, dtype, "bf16", "Weight dtype: bf16, fp16, fp32.");
ABSL_FLAG(double, active_ratio, 0.11,
          "Target fraction of FFN neurons active per token (ReLU family) [0.001, 1].");
ABSL_FLAG(double, skew, 0.0,
          "Hot-neuron skew: 0 = uniform rates; 2-4 = a few hot neurons fire often [0, 16].");
ABSL_FLAG(uint64_t, seed, 1, "Random seed [0, 18446744073709551615].");
ABSL_FLAG(int64_t, shard_mb, 0,
          "Shard the weights into files of about this many MiB (0 = one file) [0, 1048576].");
ABSL_FLAG(int64_t, hidden, 0, "Override hidden_size (0 = the preset's) [0, 65536].");
ABSL_FLAG(int64_t, intermediate, 0, "Override intermediate_size (0 = the preset's) [0, 1048576].");
ABSL_FLAG(int64_t, layers, 0, "Override num_hidden_layers (0 = the preset's) [0, 1024].");
ABSL_FLAG(int64_t, heads, 0, "Override num_attention_heads (0 = the preset's) [0, 1024].");
ABSL_FLAG(int64_t, kv_heads, 0, "Override num_key_value_heads (0 = the preset's) [0, 1024].");
ABSL_FLAG(int64_t, vocab, 0, "Override vocab_size (0 = the preset's) [0, 4194304].");
ABSL_FLAG(bool, tie_embeddings, false, "Tie the LM head to the embeddings.");

int main(int argc, char** argv) {
  sparsed::ParseFlags(
      argc, argv, "make_model_main.cc",
      "Writes a synthetic LLaMA-family checkpoint (config.json, safetensors, tokenizer.model).\n"
      "Example: sparsed-make-model --out /tmp/m --preset tinyllama-1.1b --activation fatrelu "
      "--active_ratio 0.11 --skew 2");
  sparsed::SyntheticModelSpec s;
  const std::string out = absl::GetFlag(FLAGS_out);
  if (out.empty()) {
    std::fprintf(stderr, "error: --out is required\n");
    return sparsed::kUsageExit;
  }
  auto dt = sparsed::ParseDTypeName(absl::GetFlag(FLAGS_dtype));
  if (!dt) {
    std::fprintf(stderr, "error: --dtype must be bf16, fp16 or fp32\n");
    return sparsed::kUsageExit;
  }
  s.preset = absl::GetFlag(FLAGS_preset);
  s.model_type = absl::GetFlag(FLAGS_model_type);
  s.activation = absl::GetFlag(FLAGS_activation);
  s.act_param = static_cast<float>(absl::GetFlag(FLAGS_act_param));
  s.gated = absl::GetFlag(FLAGS_gated);
  s.dtype = *dt;
  s.active_ratio = absl::GetFlag(FLAGS_active_ratio);
  s.skew = absl::GetFlag(FLAGS_skew);
  s.seed = absl::GetFlag(FLAGS_seed);
  s.shard_bytes = absl::GetFlag(FLAGS_shard_mb) << 20;
  s.hidden = absl::GetFlag(FLAGS_hidden);
  s.intermediate = absl::GetFlag(FLAGS_intermediate);
  s.layers = absl::GetFlag(FLAGS_layers);
  s.heads = absl::GetFlag(FLAGS_heads);
  s.kv_heads = absl::GetFlag(FLAGS_kv_heads);
  s.vocab = absl::GetFlag(FLAGS_vocab);
  s.tie_embeddings = absl::GetFlag(FLAGS_tie_embeddings);
  const auto status = sparsed::MakeSyntheticModel(s, out, [](const std::string& msg) {
    std::fprintf(stderr, "make-model: %s\n", msg.c_str());
  });
  if (!status.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(status.message()).c_str());
    return 1;
  }
  std::fprintf(stderr, "make-model: wrote %s\n", out.c_str());
  return 0;
}
