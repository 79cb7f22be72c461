// sparsed-make-model: writes a synthetic checkpoint in the Hugging Face layout.
#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "engine/common/dtype.h"
#include "engine/common/help_flags.h"
#include "tools/synthetic.h"

ABSL_FLAG(std::string, out, "", "Output directory (required).");
ABSL_FLAG(std::string, preset, "tiny", "Shape preset: tiny, small, tinyllama-1.1b, llama2-7b.");
ABSL_FLAG(std::string, model_type, "llama",
          "config.json model_type: llama, mistral, sparsellama, minicpm.");
ABSL_FLAG(std::string, activation, "relu", "hidden_act: silu, relu, relu2, fatrelu, gelu.");
ABSL_FLAG(double, act_param, 0.01, "FATReLU threshold (hidden_act_param).");
ABSL_FLAG(bool, gated, true, "Gated FFN (gate_proj); false writes ffn_gated: false.");
ABSL_FLAG(std::string, dtype, "bf16", "Weight dtype: bf16, fp16, fp32.");
ABSL_FLAG(double, active_ratio, 0.11,
          "Target fraction of FFN neurons active per token (ReLU family).");
ABSL_FLAG(double, skew, 0.0,
          "Hot-neuron skew: 0 = uniform rates; 2-4 = a few hot neurons fire often.");
ABSL_FLAG(uint64_t, seed, 1, "Random seed.");
ABSL_FLAG(int64_t, shard_mb, 0,
          "Shard the weights into files of about this many MiB (0 = one file).");
ABSL_FLAG(int64_t, hidden, 0, "Override hidden_size.");
ABSL_FLAG(int64_t, intermediate, 0, "Override intermediate_size.");
ABSL_FLAG(int64_t, layers, 0, "Override num_hidden_layers.");
ABSL_FLAG(int64_t, heads, 0, "Override num_attention_heads.");
ABSL_FLAG(int64_t, kv_heads, 0, "Override num_key_value_heads.");
ABSL_FLAG(int64_t, vocab, 0, "Override vocab_size.");
ABSL_FLAG(bool, tie_embeddings, false, "Tie the LM head to the embeddings.");

int main(int argc, char** argv) {
  sparsed::ListHelpFlagsFrom("make_model_main.cc");
  absl::SetProgramUsageMessage(
      "Writes a synthetic LLaMA-family checkpoint (config.json, safetensors, tokenizer.model).\n"
      "Example: sparsed-make-model --out /tmp/m --preset tinyllama-1.1b --activation fatrelu "
      "--active_ratio 0.11 --skew 2");
  absl::ParseCommandLine(argc, argv);
  sparsed::SyntheticModelSpec s;
  const std::string out = absl::GetFlag(FLAGS_out);
  if (out.empty()) {
    std::fprintf(stderr, "error: --out is required\n");
    return 2;
  }
  auto dt = sparsed::ParseDTypeName(absl::GetFlag(FLAGS_dtype));
  if (!dt) {
    std::fprintf(stderr, "error: --dtype must be bf16, fp16 or fp32\n");
    return 2;
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
