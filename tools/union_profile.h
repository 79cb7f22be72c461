// How union sparsity behaves under batching: per-token neuron masks recorded from real text, and
// the union ratio of batches of B tokens drawn from different sequences or consecutive tokens of
// one sequence, beside the independence baseline 1 − (1 − a)^B; at neuron level and at the level
// of aligned neuron blocks (what vectorised and tensor-core kernels read); and how much grouping a
// batch's tokens into tiles by mask similarity shrinks each tile's union.
#pragma once

#include <cstdint>
#include <vector>

namespace sparsed {

// Block sizes the profile reports (1: neuron level).
inline constexpr int kProfileBlocks[] = {1, 8, 16, 32, 64};
inline constexpr int kNumProfileBlocks = 5;

// One layer's masks: tokens × neurons bits, tokens grouped by sequence.
class LayerMasks {
 public:
  explicit LayerMasks(int neurons) : neurons_(neurons), words_((neurons + 63) / 64) {}
  // Appends one token's mask (active[i] != 0) to sequence `seq` (sequences numbered from 0 in
  // order of first appearance).
  void Add(int seq, const uint8_t* active);
  // The same from a mask as words() 64-bit words (bit i of word w: neuron 64·w + i; bits at or
  // beyond neurons() zero).
  void AddBits(int seq, const uint64_t* bits);
  int neurons() const { return neurons_; }
  int64_t tokens() const { return static_cast<int64_t>(seq_of_.size()); }
  double ActiveRatio() const;
  // Union ratio of the given tokens' masks.
  double UnionRatio(const std::vector<int64_t>& tokens) const;
  // Share of the ⌈neurons / block⌉ aligned blocks of `block` neurons (block divides 64) holding
  // at least one neuron active for one of the tokens. block 1 is UnionRatio.
  double BlockUnionRatio(const std::vector<int64_t>& tokens, int block) const;
  // BlockUnionRatio at every kProfileBlocks size, from one union of the tokens' masks.
  void BlockUnionRatios(const std::vector<int64_t>& tokens, double out[kNumProfileBlocks]) const;
  // Token t's mask as words() 64-bit words (bit i of word w: neuron 64·w + i).
  const uint64_t* Bits(int64_t t) const { return bits_.data() + t * words_; }
  int words() const { return words_; }
  // The sequence token t was added to.
  int sequence_of(int64_t t) const { return seq_of_[t]; }
  const std::vector<std::vector<int64_t>>& sequences() const { return sequences_; }

 private:
  // OR of the tokens' masks, words() words.
  std::vector<uint64_t> UnionBits(const std::vector<int64_t>& tokens) const;
  // Share of aligned blocks of `block` neurons with a bit set in u.
  double BlockShare(const std::vector<uint64_t>& u, int block) const;

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
  // Block-level unions (kProfileBlocks; [0] repeats across / consecutive).
  double across_blocks[kNumProfileBlocks] = {};
  double consecutive_blocks[kNumProfileBlocks] = {};
};

// Splits n tokens with the given masks (`words` words each) into tiles of at most `tile` tokens
// so that tokens whose masks overlap share a tile: each tile starts from the unassigned token
// with the most active neurons and grows by the token that adds the fewest neurons to the tile's
// union. Returns tile membership as indices into masks, tile after tile, in tile order.
std::vector<std::vector<int>> GroupBySimilarity(const std::vector<const uint64_t*>& masks,
                                                int words, int tile);

struct TilingPoint {
  int batch = 0, tile = 0;
  // Mean union ratio per tile at each kProfileBlocks level, tiles formed from a batch of `batch`
  // tokens of different sequences: in arrival (random) order, or by GroupBySimilarity over each
  // sequence's previous token's mask (the mask the server knows when it forms the step).
  double arrival[kNumProfileBlocks] = {};
  double similar[kNumProfileBlocks] = {};
  // The same, for `tile` consecutive tokens of one sequence (a prefill chunk).
  double by_sequence[kNumProfileBlocks] = {};
  double group_us = 0;  // host time of one GroupBySimilarity call for the batch
};

// Tiling curve for each batch size (≥ tile, ≤ the number of sequences; others are skipped), mean
// over `samples` random batches (deterministic for a seed).
std::vector<TilingPoint> TilingCurve(const LayerMasks& masks, const std::vector<int>& batch_sizes,
                                     int tile, int samples, uint64_t seed);

// Mean union ratios over `samples` random batches per size (deterministic for a seed). Sizes
// larger than the number of sequences (across) or the longest sequence (consecutive) get NaN.
std::vector<UnionPoint> UnionCurve(const LayerMasks& masks, const std::vector<int>& batch_sizes,
                                   int samples, uint64_t seed);

}  // namespace sparsed
