#include "scheduler/block_manager.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "absl/strings/str_cat.h"

namespace sparsed {

BlockManager::BlockManager(int num_blocks, int block_size, PrefixCacheOptions cache)
    : block_size_(block_size),
      max_cached_(cache.enabled ? static_cast<int>(std::floor(cache.max_fraction * num_blocks))
                                : 0),
      refs_(num_blocks, 0),
      lru_pos_(num_blocks, lru_.end()),
      index_(num_blocks) {
  free_.reserve(num_blocks);
  for (int b = num_blocks - 1; b >= 0; --b) free_.push_back(b);
}

void BlockManager::EvictOne() {
  const int32_t b = lru_.front();
  lru_.pop_front();
  lru_pos_[b] = lru_.end();
  index_.Erase(b);
  refs_[b] = 0;
  free_.push_back(b);
}

absl::StatusOr<std::vector<int32_t>> BlockManager::Allocate(int n) {
  if (n < 0 || n > num_free()) {
    return absl::ResourceExhaustedError(
        absl::StrCat("need ", n, " KV blocks, ", num_free(), " free"));
  }
  while (static_cast<int>(free_.size()) < n) EvictOne();
  std::vector<int32_t> out(free_.end() - n, free_.end());
  free_.resize(free_.size() - n);
  for (int32_t b : out) refs_[b] = 1;
  return out;
}

void BlockManager::Free(const std::vector<int32_t>& blocks) {
  for (auto it = blocks.rbegin(); it != blocks.rend(); ++it) {
    const int32_t b = *it;
    if (refs_[b] <= 0) std::abort();  // double free: a scheduler bug, never user input
    --refs_[b];
    if (refs_[b] == 0) {
      free_.push_back(b);
    } else if (refs_[b] == 1 && index_.Contains(b)) {
      lru_pos_[b] = lru_.insert(lru_.end(), b);
    }
  }
}

int BlockManager::SharedBlocks(const std::vector<int32_t>& blocks) const {
  int shared = 0;
  for (int32_t b : blocks) shared += refs_[b] - (index_.Contains(b) ? 1 : 0) > 1;
  return shared;
}

void BlockManager::AddRef(const std::vector<int32_t>& blocks) {
  for (int32_t b : blocks) {
    if (refs_[b] <= 0) std::abort();
    if (lru_pos_[b] != lru_.end()) {
      lru_.erase(lru_pos_[b]);
      lru_pos_[b] = lru_.end();
    }
    ++refs_[b];
  }
}

std::vector<PrefixIndex::Node> BlockManager::Lookup(std::span<const int32_t> tokens, int max_blocks,
                                                    uint64_t root) const {
  std::vector<PrefixIndex::Node> nodes;
  if (!prefix_cache_enabled()) return nodes;
  max_blocks = std::min<int>(max_blocks, static_cast<int>(tokens.size()) / block_size_);
  uint64_t parent = root;
  for (int k = 0; k < max_blocks; ++k) {
    const auto node = index_.Find(parent, BlockTokens(tokens, k));
    if (!node) break;
    nodes.push_back(*node);
    parent = node->serial;
  }
  return nodes;
}

PrefixHit BlockManager::Peek(std::span<const int32_t> tokens, int max_blocks,
                             absl::string_view salt) const {
  PrefixHit hit;
  const std::optional<uint64_t> root = index_.FindRoot(salt);
  if (!root) return hit;  // a salt never seen has nothing cached
  for (const PrefixIndex::Node& node : Lookup(tokens, max_blocks, *root)) {
    ++hit.blocks;
    if (refs_[node.block] == 1) ++hit.evictable;
  }
  return hit;
}

std::vector<int32_t> BlockManager::Acquire(std::span<const int32_t> tokens, int max_blocks,
                                           PrefixCursor* cursor, absl::string_view salt) {
  *cursor = PrefixCursor{};
  cursor->parent = prefix_cache_enabled() ? index_.Root(salt) : 0;
  std::vector<int32_t> out;
  for (const PrefixIndex::Node& node : Lookup(tokens, max_blocks, cursor->parent)) {
    out.push_back(node.block);
    cursor->parent = node.serial;
    ++cursor->blocks;
  }
  AddRef(out);
  return out;
}

void BlockManager::Publish(std::span<const int32_t> tokens, const std::vector<int32_t>& blocks,
                           int64_t computed, PrefixCursor* cursor) {
  if (!prefix_cache_enabled()) return;
  const int full = static_cast<int>(
      std::min<int64_t>({computed / block_size_, static_cast<int64_t>(blocks.size()),
                         static_cast<int64_t>(tokens.size()) / block_size_}));
  while (cursor->blocks < full) {
    const int k = cursor->blocks;
    const auto span = BlockTokens(tokens, k);
    if (const auto node = index_.Find(cursor->parent, span)) {
      cursor->parent = node->serial;  // cached already (possibly this very block)
      ++cursor->blocks;
      continue;
    }
    if (index_.size() >= max_cached_) {
      if (lru_.empty()) return;  // full of referenced blocks: try again at a later step
      EvictOne();
    }
    cursor->parent = index_.Insert(cursor->parent, span, blocks[k]).serial;
    ++refs_[blocks[k]];
    ++cursor->blocks;
  }
}

absl::Status BlockManager::CheckConsistency() const {
  std::vector<int> in_free(refs_.size(), 0);
  for (int32_t b : free_) ++in_free[b];
  int cached = 0;
  for (int32_t b = 0; b < num_blocks(); ++b) {
    const bool is_cached = index_.Contains(b);
    const bool in_lru = lru_pos_[b] != lru_.end();
    cached += is_cached;
    if (refs_[b] < 0) return absl::InternalError(absl::StrCat("block ", b, ": negative count"));
    if ((refs_[b] == 0) != (in_free[b] == 1) || in_free[b] > 1) {
      return absl::InternalError(absl::StrCat("block ", b, ": ", refs_[b], " references, ",
                                              in_free[b], " times on the free list"));
    }
    if (in_lru != (is_cached && refs_[b] == 1)) {
      return absl::InternalError(absl::StrCat("block ", b, ": ", refs_[b], " references, cached ",
                                              is_cached, ", in LRU ", in_lru));
    }
  }
  if (cached != index_.size() || cached > std::max(max_cached_, 0)) {
    return absl::InternalError(absl::StrCat(cached, " cached blocks, index holds ", index_.size(),
                                            ", limit ", max_cached_));
  }
  return absl::OkStatus();
}

}  // namespace sparsed
