#include "tools/union_profile.h"

#include <algorithm>
#include <bit>
#include <chrono>
#include <cmath>
#include <limits>
#include <random>

namespace sparsed {

void LayerMasks::Add(int seq, const uint8_t* active) {
  std::vector<uint64_t> row(words_, 0);
  for (int i = 0; i < neurons_; ++i) {
    if (active[i]) row[i / 64] |= uint64_t{1} << (i % 64);
  }
  AddBits(seq, row.data());
}

void LayerMasks::AddBits(int seq, const uint64_t* bits) {
  const int64_t t = tokens();
  bits_.insert(bits_.end(), bits, bits + words_);
  for (int w = 0; w < words_; ++w) active_ += std::popcount(bits[w]);
  seq_of_.push_back(seq);
  if (seq >= static_cast<int>(sequences_.size())) sequences_.resize(seq + 1);
  sequences_[seq].push_back(t);
}

double LayerMasks::ActiveRatio() const {
  return tokens() ? double(active_) / (double(tokens()) * neurons_) : 0;
}

std::vector<uint64_t> LayerMasks::UnionBits(const std::vector<int64_t>& tokens) const {
  std::vector<uint64_t> u(words_, 0);
  for (int64_t t : tokens) {
    const uint64_t* row = Bits(t);
    for (int w = 0; w < words_; ++w) u[w] |= row[w];
  }
  return u;
}

double LayerMasks::BlockShare(const std::vector<uint64_t>& u, int block) const {
  if (block <= 1) {
    int64_t n = 0;
    for (uint64_t w : u) n += std::popcount(w);
    return double(n) / neurons_;
  }
  const uint64_t block_mask = block >= 64 ? ~uint64_t{0} : (uint64_t{1} << block) - 1;
  int64_t read = 0;
  for (int w = 0; w < words_; ++w) {
    for (int b = 0; b < 64; b += block) read += ((u[w] >> b) & block_mask) != 0;
  }
  const int64_t blocks = (neurons_ + block - 1) / block;
  return double(read) / double(blocks);
}

double LayerMasks::UnionRatio(const std::vector<int64_t>& tokens) const {
  return BlockShare(UnionBits(tokens), 1);
}

double LayerMasks::BlockUnionRatio(const std::vector<int64_t>& tokens, int block) const {
  return BlockShare(UnionBits(tokens), block);
}

void LayerMasks::BlockUnionRatios(const std::vector<int64_t>& tokens,
                                  double out[kNumProfileBlocks]) const {
  const std::vector<uint64_t> u = UnionBits(tokens);
  for (int b = 0; b < kNumProfileBlocks; ++b) out[b] = BlockShare(u, kProfileBlocks[b]);
}

std::vector<std::vector<int>> GroupBySimilarity(const std::vector<const uint64_t*>& masks,
                                                int words, int tile) {
  const int n = static_cast<int>(masks.size());
  std::vector<int> weight(n, 0);
  for (int i = 0; i < n; ++i) {
    for (int w = 0; w < words; ++w) weight[i] += std::popcount(masks[i][w]);
  }
  std::vector<bool> used(n, false);
  std::vector<uint64_t> u(words);
  std::vector<std::vector<int>> tiles;
  for (int left = n; left > 0;) {
    int seed = -1;
    for (int i = 0; i < n; ++i) {
      if (!used[i] && (seed < 0 || weight[i] > weight[seed])) seed = i;
    }
    std::vector<int> members = {seed};
    used[seed] = true;
    --left;
    std::copy(masks[seed], masks[seed] + words, u.begin());
    while (static_cast<int>(members.size()) < tile && left > 0) {
      int best = -1, best_add = 0;
      for (int i = 0; i < n; ++i) {
        if (used[i]) continue;
        int add = 0;
        for (int w = 0; w < words; ++w) add += std::popcount(masks[i][w] & ~u[w]);
        if (best < 0 || add < best_add) best = i, best_add = add;
      }
      members.push_back(best);
      used[best] = true;
      --left;
      for (int w = 0; w < words; ++w) u[w] |= masks[best][w];
    }
    tiles.push_back(std::move(members));
  }
  return tiles;
}

std::vector<TilingPoint> TilingCurve(const LayerMasks& masks, const std::vector<int>& batch_sizes,
                                     int tile, int samples, uint64_t seed) {
  std::mt19937_64 rng(seed);
  const auto& seqs = masks.sequences();
  std::vector<int> with_prev;    // sequences with at least two tokens
  std::vector<int> long_enough;  // sequences of at least `tile` tokens
  for (size_t s = 0; s < seqs.size(); ++s) {
    if (seqs[s].size() >= 2) with_prev.push_back(static_cast<int>(s));
    if (seqs[s].size() >= static_cast<size_t>(tile)) long_enough.push_back(static_cast<int>(s));
  }
  std::vector<TilingPoint> out;
  double r[kNumProfileBlocks];
  for (int B : batch_sizes) {
    if (B < tile || static_cast<size_t>(B) > with_prev.size()) continue;
    TilingPoint p;
    p.batch = B;
    p.tile = tile;
    double tiles_seen = 0;
    std::vector<int> order = with_prev;
    for (int s = 0; s < samples; ++s) {
      std::vector<int64_t> cur(B);
      std::vector<const uint64_t*> prev(B);
      for (int k = 0; k < B; ++k) {  // partial Fisher–Yates: B distinct sequences, random order
        std::swap(order[k], order[std::uniform_int_distribution<size_t>(k, order.size() - 1)(rng)]);
        const auto& seq = seqs[order[k]];
        const size_t at = std::uniform_int_distribution<size_t>(1, seq.size() - 1)(rng);
        cur[k] = seq[at];
        prev[k] = masks.Bits(seq[at - 1]);
      }
      const auto t0 = std::chrono::steady_clock::now();
      const auto groups = GroupBySimilarity(prev, masks.words(), tile);
      p.group_us +=
          std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
      for (int k0 = 0; k0 < B; k0 += tile) {
        const std::vector<int64_t> arrival(cur.begin() + k0, cur.begin() + std::min(B, k0 + tile));
        masks.BlockUnionRatios(arrival, r);
        for (int b = 0; b < kNumProfileBlocks; ++b) p.arrival[b] += r[b];
      }
      for (const auto& g : groups) {
        std::vector<int64_t> similar;
        for (int i : g) similar.push_back(cur[i]);
        masks.BlockUnionRatios(similar, r);
        for (int b = 0; b < kNumProfileBlocks; ++b) p.similar[b] += r[b];
      }
      tiles_seen += static_cast<double>(groups.size());
      if (!long_enough.empty()) {
        const auto& seq = seqs[long_enough[std::uniform_int_distribution<size_t>(
            0, long_enough.size() - 1)(rng)]];
        const size_t start = std::uniform_int_distribution<size_t>(0, seq.size() - tile)(rng);
        const std::vector<int64_t> run(seq.begin() + start, seq.begin() + start + tile);
        masks.BlockUnionRatios(run, r);
        for (int b = 0; b < kNumProfileBlocks; ++b) p.by_sequence[b] += r[b] / samples;
      }
    }
    for (int b = 0; b < kNumProfileBlocks; ++b) {
      p.arrival[b] /= tiles_seen;
      p.similar[b] /= tiles_seen;
      if (long_enough.empty()) p.by_sequence[b] = std::numeric_limits<double>::quiet_NaN();
    }
    p.group_us /= samples;
    out.push_back(p);
  }
  return out;
}

std::vector<UnionPoint> UnionCurve(const LayerMasks& masks, const std::vector<int>& batch_sizes,
                                   int samples, uint64_t seed) {
  std::mt19937_64 rng(seed);
  const auto& seqs = masks.sequences();
  size_t longest = 0;
  for (const auto& s : seqs) longest = std::max(longest, s.size());
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double a = masks.ActiveRatio();
  std::vector<UnionPoint> out;
  double r[kNumProfileBlocks];
  for (int B : batch_sizes) {
    UnionPoint p;
    p.batch = B;
    p.active = a;
    p.independent = 1 - std::pow(1 - a, B);
    p.across = p.consecutive = nan;
    for (int b = 0; b < kNumProfileBlocks; ++b) p.across_blocks[b] = p.consecutive_blocks[b] = nan;
    if (static_cast<size_t>(B) <= seqs.size()) {
      double sum = 0;
      std::fill(p.across_blocks, p.across_blocks + kNumProfileBlocks, 0.0);
      std::vector<int> order(seqs.size());
      for (int s = 0; s < samples; ++s) {
        for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int>(i);
        std::vector<int64_t> pick;
        for (int k = 0; k < B; ++k) {  // partial Fisher–Yates: B distinct sequences
          std::uniform_int_distribution<size_t> d(k, order.size() - 1);
          std::swap(order[k], order[d(rng)]);
          const auto& seq = seqs[order[k]];
          pick.push_back(seq[std::uniform_int_distribution<size_t>(0, seq.size() - 1)(rng)]);
        }
        masks.BlockUnionRatios(pick, r);
        sum += r[0];
        for (int b = 1; b < kNumProfileBlocks; ++b) p.across_blocks[b] += r[b] / samples;
      }
      p.across = sum / samples;
      p.across_blocks[0] = p.across;
    }
    if (static_cast<size_t>(B) <= longest) {
      std::vector<const std::vector<int64_t>*> fit;
      for (const auto& s : seqs) {
        if (s.size() >= static_cast<size_t>(B)) fit.push_back(&s);
      }
      double sum = 0;
      std::fill(p.consecutive_blocks, p.consecutive_blocks + kNumProfileBlocks, 0.0);
      for (int s = 0; s < samples; ++s) {
        const auto& seq = *fit[std::uniform_int_distribution<size_t>(0, fit.size() - 1)(rng)];
        const size_t start = std::uniform_int_distribution<size_t>(0, seq.size() - B)(rng);
        const std::vector<int64_t> run(seq.begin() + start, seq.begin() + start + B);
        masks.BlockUnionRatios(run, r);
        sum += r[0];
        for (int b = 1; b < kNumProfileBlocks; ++b) p.consecutive_blocks[b] += r[b] / samples;
      }
      p.consecutive = sum / samples;
      p.consecutive_blocks[0] = p.consecutive;
    }
    out.push_back(p);
  }
  return out;
}

}  // namespace sparsed
