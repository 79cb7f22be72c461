// The model's weights, resolved and shape-checked from a checkpoint.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/common/matrix.h"
#include "engine/model/checkpoint.h"

namespace sparsed {

struct LayerWeights {
  std::vector<float> attn_norm;  // [d]
  std::vector<float> ffn_norm;   // [d]
  Matrix q;                      // [H·hd × d]
  Matrix k;                      // [KV·hd × d]
  Matrix v;                      // [KV·hd × d]
  Matrix o;                      // [d × H·hd]
  Matrix gate;                   // [F × d]; empty when the FFN is not gated
  Matrix up;                     // [F × d]
  Matrix down_t;  // [F × d]: W_down transposed at load, so neuron i's output vector is row i
};

struct ModelWeights {
  Matrix embed;                   // [V × d]
  Matrix lm_head;                 // [V × d]; the embedding when tied
  std::vector<float> final_norm;  // [d]
  std::vector<LayerWeights> layers;
};

// (done, total, what) — called as layers load.
using ProgressFn = std::function<void(int done, int total, const std::string& what)>;

// Called with each layer as soon as it is resolved, before the next one is read (to convert it
// while its pages are resident: weight_format.h); an error stops the load.
using LayerHook = std::function<absl::Status(int layer, LayerWeights* l)>;

// Resolves every tensor of a LLaMA-family model. Matrices stay views into the mapped files
// except the transposed down projections and, from a GGUF file, q and k (rows put back in
// rotate-half order), whose mapped originals leave the resident set once copied. A
// block-quantized down projection (GGUF) is quantized again along its neuron-major rows.
// Errors name the file and the tensor.
absl::StatusOr<ModelWeights> LoadModelWeights(const Checkpoint& ck, const ProgressFn& progress,
                                              const LayerHook& on_layer = {});

}  // namespace sparsed
