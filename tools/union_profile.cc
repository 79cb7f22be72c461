#include "tools/union_profile.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <random>

namespace sparsed {

void LayerMasks::Add(int seq, const uint8_t* active) {
  const int64_t t = tokens();
  bits_.resize(bits_.size() + words_, 0);
  uint64_t* row = bits_.data() + t * words_;
  for (int i = 0; i < neurons_; ++i) {
    if (active[i]) {
      row[i / 64] |= uint64_t{1} << (i % 64);
      ++active_;
    }
  }
  seq_of_.push_back(seq);
  if (seq >= static_cast<int>(sequences_.size())) sequences_.resize(seq + 1);
  sequences_[seq].push_back(t);
}

double LayerMasks::ActiveRatio() const {
  return tokens() ? double(active_) / (double(tokens()) * neurons_) : 0;
}

double LayerMasks::UnionRatio(const std::vector<int64_t>& tokens) const {
  std::vector<uint64_t> u(words_, 0);
  for (int64_t t : tokens) {
    const uint64_t* row = bits_.data() + t * words_;
    for (int w = 0; w < words_; ++w) u[w] |= row[w];
  }
  int64_t n = 0;
  for (uint64_t w : u) n += std::popcount(w);
  return double(n) / neurons_;
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
  for (int B : batch_sizes) {
    UnionPoint p;
    p.batch = B;
    p.active = a;
    p.independent = 1 - std::pow(1 - a, B);
    p.across = p.consecutive = nan;
    if (static_cast<size_t>(B) <= seqs.size()) {
      double sum = 0;
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
        sum += masks.UnionRatio(pick);
      }
      p.across = sum / samples;
    }
    if (static_cast<size_t>(B) <= longest) {
      std::vector<const std::vector<int64_t>*> fit;
      for (const auto& s : seqs) {
        if (s.size() >= static_cast<size_t>(B)) fit.push_back(&s);
      }
      double sum = 0;
      for (int s = 0; s < samples; ++s) {
        const auto& seq = *fit[std::uniform_int_distribution<size_t>(0, fit.size() - 1)(rng)];
        const size_t start = std::uniform_int_distribution<size_t>(0, seq.size() - B)(rng);
        sum += masks.UnionRatio(std::vector<int64_t>(seq.begin() + start, seq.begin() + start + B));
      }
      p.consecutive = sum / samples;
    }
    out.push_back(p);
  }
  return out;
}

}  // namespace sparsed
