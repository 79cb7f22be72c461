// FFN activation functions by kind: the one enumeration every layer uses (model config, CPU and
// CUDA backends, tools). Free of other dependencies so that CUDA sources include it too.
#pragma once

namespace sparsed {

enum class Activation { kSilu, kRelu, kRelu2, kFatRelu, kGelu, kGeluTanh };

// True when the activation outputs exact zeros (exact sparsity applies).
constexpr bool IsReluFamily(Activation a) {
  return a == Activation::kRelu || a == Activation::kRelu2 || a == Activation::kFatRelu;
}

}  // namespace sparsed
