#include "scheduler/block_manager.h"

#include <cstdlib>

#include "absl/strings/str_cat.h"

namespace sparsed {

BlockManager::BlockManager(int num_blocks, int block_size)
    : block_size_(block_size), refs_(num_blocks, 0) {
  free_.reserve(num_blocks);
  for (int b = num_blocks - 1; b >= 0; --b) free_.push_back(b);
}

absl::StatusOr<std::vector<int32_t>> BlockManager::Allocate(int n) {
  if (n < 0 || n > num_free()) {
    return absl::ResourceExhaustedError(
        absl::StrCat("need ", n, " KV blocks, ", num_free(), " free"));
  }
  std::vector<int32_t> out(free_.end() - n, free_.end());
  free_.resize(free_.size() - n);
  for (int32_t b : out) refs_[b] = 1;
  return out;
}

void BlockManager::Free(const std::vector<int32_t>& blocks) {
  for (int32_t b : blocks) {
    if (refs_[b] <= 0) std::abort();  // double free: a scheduler bug, never user input
    if (--refs_[b] == 0) free_.push_back(b);
  }
}

void BlockManager::AddRef(const std::vector<int32_t>& blocks) {
  for (int32_t b : blocks) {
    if (refs_[b] <= 0) std::abort();
    ++refs_[b];
  }
}

}  // namespace sparsed
