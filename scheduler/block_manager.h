// Paged KV-cache block accounting: which of the engine's KV blocks are free, who holds the rest,
// and the prefix cache — full blocks kept after their sequences end so that a later prompt with
// the same leading tokens reuses their keys and values instead of recomputing them.
#pragma once

#include <cstdint>
#include <list>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "scheduler/prefix_index.h"

namespace sparsed {

struct PrefixCacheOptions {
  bool enabled = false;
  double max_fraction = 1.0;  // of all blocks the index may hold, referenced or not; (0, 1]
};

// A sequence's place in the prefix cache: how many of its leading full blocks the index knows
// (found there or published by it), and the serial number of the last of them (with none: the
// root of its prefix-cache salt, 0 for the common tree).
struct PrefixCursor {
  int blocks = 0;
  uint64_t parent = 0;
};

// What a lookup would reuse: leading full blocks found, and how many of them are unreferenced
// (so counted in num_free() now, and no longer once a sequence takes them).
struct PrefixHit {
  int blocks = 0;
  int evictable = 0;
};

// Blocks are reference-counted: each sequence holding a block counts one, and the prefix cache
// one more for each block in its index. A cached block that only the cache holds is evictable:
// it sits in an LRU list and Allocate takes it back (oldest first) when the free list runs short,
// so the cache never causes a preemption. num_free() counts such blocks as free.
// Thread-safety: none; owned and used by the engine-loop thread.
class BlockManager {
 public:
  BlockManager(int num_blocks, int block_size, PrefixCacheOptions cache = {});

  int block_size() const { return block_size_; }
  int num_blocks() const { return static_cast<int>(refs_.size()); }
  // Blocks an allocation can take now: free ones and evictable cached ones.
  int num_free() const { return static_cast<int>(free_.size() + lru_.size()); }
  // Blocks held by sequences.
  int num_used() const { return num_blocks() - num_free(); }
  // Blocks in the prefix index, held by sequences or only by the cache.
  int num_cached() const { return index_.size(); }
  bool prefix_cache_enabled() const { return max_cached_ > 0; }

  // Blocks needed to hold `tokens` tokens.
  int BlocksFor(int64_t tokens) const {
    return static_cast<int>((tokens + block_size_ - 1) / block_size_);
  }
  // Dry run: could `n` more blocks be allocated now?
  bool CanAllocate(int n) const { return n <= num_free(); }
  // Takes `n` blocks (each with one reference), evicting least recently used cached blocks when
  // the free list runs short; RESOURCE_EXHAUSTED without side effects when fewer are free.
  absl::StatusOr<std::vector<int32_t>> Allocate(int n);
  // Drops one reference of each block. Cached blocks left with only the cache's reference become
  // evictable, the last of `blocks` first (a prefix's tail goes before its head).
  void Free(const std::vector<int32_t>& blocks);
  // Adds a reference to each block (sharing).
  void AddRef(const std::vector<int32_t>& blocks);
  int RefCount(int32_t block) const { return refs_[block]; }
  // Of one sequence's `blocks`, those another sequence also holds: Free(blocks) would leave them
  // taken.
  int SharedBlocks(const std::vector<int32_t>& blocks) const;

  // The leading full blocks of `tokens` in the prefix cache, at most `max_blocks`. Changes
  // nothing. Callers keep max_blocks * block_size < tokens.size() so that a sequence always
  // computes at least its last prompt token (its logits are needed).
  // `salt`: the prefix-cache partition (PrefixIndex::Root); blocks are shared within one only.
  PrefixHit Peek(std::span<const int32_t> tokens, int max_blocks,
                 absl::string_view salt = {}) const;
  // Takes a reference on each block Peek would return and returns them; sets `cursor` (which
  // Publish then continues under the same salt).
  std::vector<int32_t> Acquire(std::span<const int32_t> tokens, int max_blocks,
                               PrefixCursor* cursor, absl::string_view salt = {});
  // Adds the sequence's full blocks whose keys and values are computed (the first `computed` of
  // `tokens`, in `blocks`) to the index, after `cursor`, which it advances. A block whose tokens
  // are already cached in another block stays private, and the chain continues through the
  // cached one. Stops early when the index is full of referenced blocks.
  void Publish(std::span<const int32_t> tokens, const std::vector<int32_t>& blocks,
               int64_t computed, PrefixCursor* cursor);

  // INTERNAL naming the first broken invariant (reference counts, free list, LRU, index); for
  // tests.
  absl::Status CheckConsistency() const;

 private:
  void EvictOne();
  // The index's nodes for the leading full blocks of `tokens`, at most `max_blocks`.
  std::vector<PrefixIndex::Node> Lookup(std::span<const int32_t> tokens, int max_blocks,
                                        uint64_t root) const;
  std::span<const int32_t> BlockTokens(std::span<const int32_t> tokens, int k) const {
    return tokens.subspan(static_cast<size_t>(k) * block_size_, block_size_);
  }

  int block_size_;
  int max_cached_;
  std::vector<int32_t> refs_;
  std::vector<int32_t> free_;  // a stack: the most recently freed block is reused first
  std::list<int32_t> lru_;     // evictable cached blocks, least recently released first
  std::vector<std::list<int32_t>::iterator> lru_pos_;  // lru_.end() when not in lru_
  PrefixIndex index_;
};

}  // namespace sparsed
