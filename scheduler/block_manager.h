// Paged KV-cache block accounting: which of the engine's KV blocks are free, and who holds the
// rest.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"

namespace sparsed {

// Blocks are reference-counted so that a later prefix cache can share them; a block returns to
// the free list when its count drops to zero.
// Thread-safety: none; owned and used by the engine-loop thread.
class BlockManager {
 public:
  BlockManager(int num_blocks, int block_size);

  int block_size() const { return block_size_; }
  int num_blocks() const { return static_cast<int>(refs_.size()); }
  int num_free() const { return static_cast<int>(free_.size()); }
  int num_used() const { return num_blocks() - num_free(); }

  // Blocks needed to hold `tokens` tokens.
  int BlocksFor(int64_t tokens) const {
    return static_cast<int>((tokens + block_size_ - 1) / block_size_);
  }
  // Dry run: could `n` more blocks be allocated now?
  bool CanAllocate(int n) const { return n <= num_free(); }
  // Takes `n` blocks (each with one reference); RESOURCE_EXHAUSTED without side effects when
  // fewer are free.
  absl::StatusOr<std::vector<int32_t>> Allocate(int n);
  // Drops one reference of each block.
  void Free(const std::vector<int32_t>& blocks);
  // Adds a reference to each block (sharing).
  void AddRef(const std::vector<int32_t>& blocks);
  int RefCount(int32_t block) const { return refs_[block]; }

 private:
  int block_size_;
  std::vector<int32_t> refs_;
  std::vector<int32_t> free_;  // a stack: the most recently freed block is reused first
};

}  // namespace sparsed
