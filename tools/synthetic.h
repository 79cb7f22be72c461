// Synthetic checkpoints in the Hugging Face layout, and neuron-activation patterns with a
// chosen active ratio and hot-neuron skew (for tests and benchmarks).
#pragma once

#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/common/dtype.h"
#include "engine/model/config.h"
#include "tools/neuron_rates.h"

namespace sparsed {

struct SyntheticModelSpec {
  std::string preset = "tiny";       // tiny | tinyllama-1.1b | llama2-7b (fills the shape fields)
  std::string model_type = "llama";  // llama | mistral | sparsellama | minicpm
  int64_t hidden = 0, intermediate = 0, layers = 0, heads = 0, kv_heads = 0,
          vocab = 0;                // 0 = preset's
  std::string activation = "relu";  // silu | relu | relu2 | fatrelu | gelu
  float act_param = 0.01f;          // fatrelu threshold
  bool gated = true;
  DType dtype = DType::kBF16;
  double active_ratio = 0.11;  // target fraction of FFN neurons active per token (ReLU family)
  double skew = 0.0;           // hot-neuron skew, see NeuronRates
  uint64_t seed = 1;
  int64_t shard_bytes = 0;  // >0: shard into files of about this size with an index
  bool tie_embeddings = false;
  bool tokenizer = true;  // train and write tokenizer.model
};

// Fills the shape fields from the preset; INVALID_ARGUMENT for an unknown preset.
absl::Status ResolvePreset(SyntheticModelSpec* spec);

// Writes config.json, safetensors (sharded or not) and tokenizer.model into `dir`.
absl::Status MakeSyntheticModel(const SyntheticModelSpec& spec, const std::string& dir,
                                const std::function<void(const std::string&)>& progress = {});

}  // namespace sparsed
