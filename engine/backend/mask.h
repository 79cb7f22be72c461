// Activation functions, per-token neuron masks and their union, on host memory.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/common/activation.h"

namespace sparsed {

// act(g) with FATReLU's threshold where the activation is fatrelu.
float Activate(float g, Activation act, float threshold);

// In-place act() over n values; returns the number of non-zero outputs.
int64_t ActivateInPlace(float* a, int64_t n, Activation act, float threshold);

// Bit b set where a[b] != 0, for b < n <= 64.
uint64_t NonZeroBits(const float* a, int n);

// Threshold sparsity on n <= 64 values: h[b] = 0 where |h[b]| < threshold[b] (a NaN stays), and
// returns NonZeroBits of the result. Branch-free: which values pass is data, not control flow.
uint64_t ThresholdBits(float* h, const float* threshold, int n);

// A set of neuron indices kept as a bitmap and compacted to a sorted index list.
class NeuronUnion {
 public:
  explicit NeuronUnion(int64_t neurons) : bits_((neurons + 63) / 64, 0) {}
  void Clear() { std::fill(bits_.begin(), bits_.end(), 0); }
  // ORs in bits for neurons [64·w, 64·w + 64). Calls for different w may run concurrently.
  void OrWord(int64_t w, uint64_t bits) { bits_[w] |= bits; }
  // Sets the bits for neurons [64·w, 64·w + 64). Calls for different w may run concurrently.
  void SetWord(int64_t w, uint64_t bits) { bits_[w] = bits; }
  int64_t words() const { return static_cast<int64_t>(bits_.size()); }
  // Sorted indices of the union (ascending neuron order).
  void Compact(std::vector<int32_t>* out) const;
  int64_t Count() const;

 private:
  std::vector<uint64_t> bits_;
};

}  // namespace sparsed
