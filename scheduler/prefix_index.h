// The prefix cache's index: which KV block holds the keys and values of a given full block of
// tokens after a given prefix.
//
// A cached block is a node of a tree. Its key is (the serial number of its parent node, the
// block's own token ids); the root's serial is 0. Serial numbers are never reused, so a key names
// exactly one token prefix — every token from position 0 to the block's end — with no hash
// collision possible: a lookup that succeeds found a block computed from the same tokens. The
// keys and values of those tokens are then bitwise those a recomputation would produce, because
// the engine's kernels make every token's result independent of its batch-mates and of how a
// prompt is cut into chunks (tests/engine_loop_test.cc, PrefixCache*). One index serves one
// engine: its model, sparsity mode and KV dtype never change while it lives.
//
// Thread-safety: none; owned by the BlockManager.
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"

namespace sparsed {

class PrefixIndex {
 public:
  struct Node {
    int32_t block = -1;
    uint64_t serial = 0;
  };

  explicit PrefixIndex(int num_blocks) : key_of_block_(num_blocks) {}

  // The serial that roots the tree of `salt` ("" → 0, the common tree): a salt's prefixes are
  // found only under its own root, so requests of different salts share no block. Roots are
  // issued like node serials (never reused); past kMaxRoots salts each further lookup gets a
  // root of its own (no sharing, no growth). FindRoot: the same without issuing (null: none).
  static constexpr size_t kMaxRoots = 4096;
  uint64_t Root(absl::string_view salt);
  std::optional<uint64_t> FindRoot(absl::string_view salt) const;

  // The node holding `tokens` (one block's worth) after the node with serial `parent`.
  std::optional<Node> Find(uint64_t parent, std::span<const int32_t> tokens) const;
  // Adds `block` as the node for `tokens` after `parent` and returns it. Requires: no node has
  // that key and `block` is not in the index.
  Node Insert(uint64_t parent, std::span<const int32_t> tokens, int32_t block);
  // Removes the node held by `block`. Its children stay in the index, unreachable (their
  // parent's serial is never issued again) until they are evicted in turn.
  void Erase(int32_t block);

  bool Contains(int32_t block) const { return key_of_block_[block].has_value(); }
  int size() const { return static_cast<int>(nodes_.size()); }

 private:
  struct Key {
    uint64_t parent = 0;
    std::vector<int32_t> tokens;
  };
  struct KeyView {
    uint64_t parent = 0;
    std::span<const int32_t> tokens;
  };
  // Transparent, so that lookups need no temporary vector.
  struct KeyHash {
    using is_transparent = void;
    size_t operator()(const KeyView& k) const;
    size_t operator()(const Key& k) const { return (*this)(KeyView{k.parent, k.tokens}); }
  };
  struct KeyEq {
    using is_transparent = void;
    static KeyView View(const Key& k) { return {k.parent, k.tokens}; }
    static KeyView View(const KeyView& k) { return k; }
    template <typename A, typename B>
    bool operator()(const A& a, const B& b) const {
      const KeyView x = View(a), y = View(b);
      return x.parent == y.parent &&
             std::equal(x.tokens.begin(), x.tokens.end(), y.tokens.begin(), y.tokens.end());
    }
  };
  absl::flat_hash_map<Key, Node, KeyHash, KeyEq> nodes_;
  absl::flat_hash_map<std::string, uint64_t> roots_;
  std::vector<std::optional<Key>> key_of_block_;
  uint64_t next_serial_ = 1;
};

}  // namespace sparsed
