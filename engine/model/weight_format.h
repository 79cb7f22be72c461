// The weight type the linear layers run in (--weights): the checkpoint's own, or a conversion at
// load — bf16, or the block-quantized q8_0 / q4_0 of dtype.h.
//
// Converted: every layer's q, k, v, o, gate, up and (transposed) down projections, and the LM
// head (a copy of its own when it is tied to the embedding). The embedding table stays in the
// checkpoint's type: a step reads only its tokens' rows. Quantization runs along each stored
// row — the reduction dimension of q/k/v/o/gate/up/LM head, and the hidden dimension of a
// neuron's down-projection row — so a union still gathers whole, independently addressable
// rows. Block-quantized matrices that only dense products read (q, k, v, o, the gate of a gated
// FFN, the LM head) are stored in row panels instead (panel.h): the same values, laid out for
// the dense quantized dot (kernels.h, dot_panels_q). Every path reads a converted matrix the same
// way (the CPU kernels: quantized dots against per-token int8 activations, exact dequantization in
// the down projection), so `exact` stays bitwise `off` of the same converted model. Conversion can
// run while loading, layer by layer (ConvertLayerWeights from LoadModelWeights' LayerHook), so the
// checkpoint's type is resident one layer at a time.
#pragma once

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/common/dtype.h"
#include "engine/common/thread_pool.h"
#include "engine/model/weights.h"

namespace sparsed {

// "checkpoint" → nullopt (as stored); "bf16", "q8_0", "q4_0" → that type. INVALID_ARGUMENT
// naming the accepted spellings otherwise.
absl::StatusOr<std::optional<DType>> ParseWeightFormat(absl::string_view s);
// The spelling ParseWeightFormat accepts for `t` ("bf16", "q8_0", ...); "checkpoint" for nullopt.
std::string WeightFormatName(std::optional<DType> t);

// Converts w's linear weights to `to` in place, over `threads` threads (at least 1), reporting
// progress per layer. With `release_mapped_pages`, the pages a converted view (a Matrix without
// an owner) was read from are dropped from the resident set (ReleaseMappedPages): REQUIRES then
// that every such view lies in a read-only file mapping, as LoadModelWeights' do. Errors name
// the tensor: INVALID_ARGUMENT when a block type meets a row length that is not a multiple of
// 32, or a weight that is not finite.
absl::Status ConvertLinearWeights(DType to, int threads, bool release_mapped_pages,
                                  const ProgressFn& progress, ModelWeights* w);

// The two halves of ConvertLinearWeights, for converting while loading (LoadModelWeights'
// LayerHook): layer `index`'s matrices, and the LM head, on `pool`.
absl::Status ConvertLayerWeights(DType to, int index, bool release_mapped_pages, ThreadPool& pool,
                                 LayerWeights* l);
absl::Status ConvertLmHead(DType to, bool release_mapped_pages, ThreadPool& pool, ModelWeights* w);

// Block-quantized matrices of the dense products that are still row-major (a quantized
// checkpoint's, as a GGUF file stores them) into row panels: layer `l`'s q, k, v, o and gate, and
// the LM head (a copy of its own when tied). Other matrices are left as they are.
// release_mapped_pages as for ConvertLinearWeights.
absl::Status PanelLayerWeights(bool release_mapped_pages, LayerWeights* l);
absl::Status PanelLmHead(bool release_mapped_pages, ModelWeights* w);

}  // namespace sparsed
