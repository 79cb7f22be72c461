// How union sparsity behaves under batching: per-token neuron masks recorded from real text, and
// the union ratio of batches of B tokens drawn from different sequences or consecutive tokens of
// one sequence, beside the independence baseline 1 − (1 − a)^B.
#pragma once

#include <cstdint>
#include <vector>

namespace sparsed {

// One layer's masks: tokens × neurons bits, tokens grouped by sequence.
class LayerMasks {
 public:
  explicit LayerMasks(int neurons) : neurons_(neurons), words_((neurons + 63) / 64) {}
  // Appends one token's mask (active[i] != 0) to sequence `seq` (sequences numbered from 0 in
  // order of first appearance).
  void Add(int seq, const uint8_t* active);
  int neurons() const { return neurons_; }
  int64_t tokens() const { return static_cast<int64_t>(seq_of_.size()); }
  double ActiveRatio() const;
  // Union ratio of the given tokens' masks.
  double UnionRatio(const std::vector<int64_t>& tokens) const;
  const std::vector<std::vector<int64_t>>& sequences() const { return sequences_; }

 private:
  int neurons_, words_;
  std::vector<uint64_t> bits_;                   // tokens × words_
  std::vector<int> seq_of_;                      // per token
  std::vector<std::vector<int64_t>> sequences_;  // token indices per sequence
  int64_t active_ = 0;
};

struct UnionPoint {
  int batch = 0;
  double active = 0;       // mean per-token active ratio
  double across = 0;       // union, B tokens from B different sequences
  double consecutive = 0;  // union, B consecutive tokens of one sequence
  double independent = 0;  // 1 − (1 − active)^B
};

// Mean union ratios over `samples` random batches per size (deterministic for a seed). Sizes
// larger than the number of sequences (across) or the longest sequence (consecutive) get NaN.
std::vector<UnionPoint> UnionCurve(const LayerMasks& masks, const std::vector<int>& batch_sizes,
                                   int samples, uint64_t seed);

}  // namespace sparsed
