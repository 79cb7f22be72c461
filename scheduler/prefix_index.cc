#include "scheduler/prefix_index.h"

#include <cstdlib>

#include "engine/common/mix.h"

namespace sparsed {

size_t PrefixIndex::KeyHash::operator()(const KeyView& k) const {
  uint64_t h = Mix64(k.parent);
  for (int32_t t : k.tokens) h = Mix64(h ^ static_cast<uint32_t>(t));
  return static_cast<size_t>(h);
}

std::optional<PrefixIndex::Node> PrefixIndex::Find(uint64_t parent,
                                                   std::span<const int32_t> tokens) const {
  auto it = nodes_.find(KeyView{parent, tokens});
  if (it == nodes_.end()) return std::nullopt;
  return it->second;
}

PrefixIndex::Node PrefixIndex::Insert(uint64_t parent, std::span<const int32_t> tokens,
                                      int32_t block) {
  if (key_of_block_[block].has_value()) std::abort();  // a scheduler bug, never user input
  Key key{parent, {tokens.begin(), tokens.end()}};
  const Node node{block, next_serial_++};
  if (!nodes_.emplace(key, node).second) std::abort();
  key_of_block_[block] = std::move(key);
  return node;
}

void PrefixIndex::Erase(int32_t block) {
  if (!key_of_block_[block].has_value()) std::abort();
  nodes_.erase(*key_of_block_[block]);
  key_of_block_[block].reset();
}

uint64_t PrefixIndex::Root(absl::string_view salt) {
  if (salt.empty()) return 0;
  if (auto it = roots_.find(salt); it != roots_.end()) return it->second;
  const uint64_t root = next_serial_++;
  if (roots_.size() < kMaxRoots) roots_.emplace(std::string(salt), root);
  return root;
}

std::optional<uint64_t> PrefixIndex::FindRoot(absl::string_view salt) const {
  if (salt.empty()) return 0;
  auto it = roots_.find(salt);
  if (it == roots_.end()) return std::nullopt;
  return it->second;
}

}  // namespace sparsed
