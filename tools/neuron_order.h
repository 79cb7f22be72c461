// Neuron order for block-level sparsity: renumbers each FFN layer's neurons so that neurons that
// fire together sit in the same aligned block, which lets kernels that read whole blocks of
// neurons read fewer of them. A permutation of FFN neurons (gate/up rows with the matching down
// columns) leaves the model's function unchanged up to the order of the down projection's sum.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "engine/model/checkpoint.h"
#include "tools/union_profile.h"

namespace sparsed {

enum class NeuronOrderKind {
  // By activation count, most active first (ties: lower id): hot neurons share blocks, which
  // most tokens read anyway, and cold blocks are rarely read.
  kFrequency,
  // Blocks of `block` neurons built greedily over the count order: each starts from the most
  // active unplaced neuron and grows by the one, among the next 4·block unplaced in count order,
  // that adds the fewest tokens to the block's token set (tokens for which some neuron of the
  // block is active). On the bundled models it reads more blocks than kFrequency on held-out text
  // (bench/results/neuron_order.md); kept for models whose co-activation is stronger.
  kCoActivation,
};

// One layer's order, from the masks of `tokens` only. Returns perm: new neuron j is old neuron
// perm[j].
std::vector<int32_t> NeuronOrder(const LayerMasks& masks, const std::vector<int64_t>& tokens,
                                 NeuronOrderKind kind, int block);

// `masks` with neurons renumbered by perm (new j = old perm[j]), same sequences and tokens.
LayerMasks PermuteNeurons(const LayerMasks& masks, const std::vector<int32_t>& perm);

// True when perm holds every id in [0, n) once.
bool IsPermutation(const std::vector<int32_t>& perm, int n);

// Writes `out_dir` (created; files in it are replaced): `src` with layer l's FFN neurons
// renumbered by perms[l] — rows of model.layers.l.mlp.gate_proj / up_proj and columns of
// down_proj — in one model.safetensors, every other tensor unchanged. config.json and the other
// files of src are copied; a sparsity.json is re-stamped with the new model's fingerprint (its
// per-layer thresholds do not depend on the neurons' order).
absl::Status WritePermutedCheckpoint(const Checkpoint& src,
                                     const std::vector<std::vector<int32_t>>& perms,
                                     const std::string& out_dir);

}  // namespace sparsed
