// The prefix cache's block accounting without a model: lookups, sharing, LRU eviction, the
// index's bound, and a randomized run that checks every invariant and every reused block's
// tokens after each operation.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <random>

#include "scheduler/block_manager.h"
#include "scheduler/policy.h"

namespace sparsed {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;

constexpr PrefixCacheOptions kOn{.enabled = true, .max_fraction = 1.0};

std::vector<int32_t> Range(int32_t from, int n) {
  std::vector<int32_t> v(n);
  for (int i = 0; i < n; ++i) v[i] = from + i;
  return v;
}

TEST(PrefixCache, PublishedBlocksAreFoundAfterTheirSequenceEnds) {
  BlockManager bm(8, 4, kOn);
  const std::vector<int32_t> a = Range(100, 10);  // two full blocks and two tokens
  auto blocks = bm.Allocate(3);
  ASSERT_TRUE(blocks.ok());
  PrefixCursor cur;
  bm.Publish(a, *blocks, 6, &cur);  // only block 0 is complete
  EXPECT_EQ(cur.blocks, 1);
  EXPECT_EQ(bm.num_cached(), 1);
  bm.Publish(a, *blocks, 10, &cur);
  EXPECT_EQ(cur.blocks, 2);  // the partial third block is never cached
  EXPECT_EQ(bm.num_cached(), 2);
  EXPECT_EQ(bm.RefCount((*blocks)[0]), 2);  // the sequence's and the cache's
  bm.Free(*blocks);
  EXPECT_EQ(bm.num_used(), 0);  // cached blocks count as free
  EXPECT_EQ(bm.num_free(), 8);
  EXPECT_EQ(bm.num_cached(), 2);
  ASSERT_TRUE(bm.CheckConsistency().ok()) << bm.CheckConsistency();

  // Same first 8 tokens, different continuation: both blocks reused.
  std::vector<int32_t> b = Range(100, 8);
  b.insert(b.end(), {7, 7, 7});
  const PrefixHit hit = bm.Peek(b, 2);
  EXPECT_EQ(hit.blocks, 2);
  EXPECT_EQ(hit.evictable, 2);
  PrefixCursor cb;
  const auto got = bm.Acquire(b, 2, &cb);
  EXPECT_THAT(got, ElementsAre((*blocks)[0], (*blocks)[1]));
  EXPECT_EQ(cb.blocks, 2);
  EXPECT_EQ(bm.num_used(), 2);
  EXPECT_EQ(bm.Peek(b, 2).evictable, 0);  // held now
  // The lookup stops at the first differing block, and at max_blocks.
  std::vector<int32_t> c = Range(100, 4);
  c.insert(c.end(), {1, 2, 3, 4, 5});
  EXPECT_EQ(bm.Peek(c, 2).blocks, 1);
  EXPECT_EQ(bm.Peek(a, 1).blocks, 1);
  EXPECT_EQ(bm.Peek(Range(101, 9), 2).blocks, 0);  // a shifted prefix is another prefix
  bm.Free(got);
  ASSERT_TRUE(bm.CheckConsistency().ok()) << bm.CheckConsistency();
}

// A block counts as shared while another sequence holds it too; the cache's own reference does not
// count.
TEST(PrefixCache, SharedBlocksCountOtherSequencesOnly) {
  BlockManager bm(8, 4, kOn);
  const std::vector<int32_t> a = Range(100, 9);
  auto blocks = bm.Allocate(3);
  ASSERT_TRUE(blocks.ok());
  PrefixCursor cur;
  bm.Publish(a, *blocks, 9, &cur);         // blocks 0 and 1 cached
  EXPECT_EQ(bm.SharedBlocks(*blocks), 0);  // the cache's references only
  PrefixCursor cb;
  const auto got = bm.Acquire(a, 2, &cb);  // a second sequence takes the cached prefix
  EXPECT_EQ(bm.SharedBlocks(*blocks), 2);
  EXPECT_EQ(bm.SharedBlocks(got), 2);
  const int free_before = bm.num_free();
  bm.Free(got);  // preempting the second frees none of its blocks...
  EXPECT_EQ(bm.num_free(), free_before);
  EXPECT_EQ(bm.SharedBlocks(*blocks), 0);
  bm.Free(*blocks);  // ...and the first, all three (two stay cached, evictable)
  EXPECT_EQ(bm.num_free(), free_before + 3);
  ASSERT_TRUE(bm.CheckConsistency().ok()) << bm.CheckConsistency();
}

TEST(PrefixCache, AllocationEvictsTheLeastRecentlyReleasedTailFirst) {
  BlockManager bm(4, 2, kOn);
  const std::vector<int32_t> a = Range(0, 6);
  auto blocks = bm.Allocate(3);
  ASSERT_TRUE(blocks.ok());
  PrefixCursor cur;
  bm.Publish(a, *blocks, 6, &cur);
  bm.Free(*blocks);
  ASSERT_EQ(bm.num_cached(), 3);
  // One truly free block plus three evictable ones: taking two evicts the prefix's tail only.
  auto two = bm.Allocate(2);
  ASSERT_TRUE(two.ok());
  EXPECT_EQ(bm.num_cached(), 2);
  EXPECT_EQ(bm.Peek(a, 3).blocks, 2);
  ASSERT_TRUE(bm.CheckConsistency().ok()) << bm.CheckConsistency();
  // A held cached block is never evicted: with the head held, only the middle can go.
  PrefixCursor ch;
  auto head = bm.Acquire(a, 1, &ch);
  ASSERT_EQ(head.size(), 1u);
  EXPECT_EQ(bm.num_free(), 1);
  auto last = bm.Allocate(1);
  ASSERT_TRUE(last.ok());
  EXPECT_EQ(bm.num_cached(), 1);
  EXPECT_EQ(bm.Allocate(1).status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(bm.Peek(a, 3).blocks, 1);
  ASSERT_TRUE(bm.CheckConsistency().ok()) << bm.CheckConsistency();
}

TEST(PrefixCache, TheSameTokensInAnotherBlockStayPrivateAndTheChainContinues) {
  BlockManager bm(8, 2, kOn);
  const std::vector<int32_t> a = Range(0, 4);
  auto x = bm.Allocate(2), y = bm.Allocate(2);
  ASSERT_TRUE(x.ok() && y.ok());
  PrefixCursor cx, cy;
  bm.Publish(a, *x, 2, &cx);  // x publishes its first block
  bm.Publish(a, *y, 4, &cy);  // y computed the same first block on its own, then a second
  EXPECT_EQ(cy.blocks, 2);
  EXPECT_EQ(bm.num_cached(), 2);
  EXPECT_EQ(bm.RefCount((*y)[0]), 1);  // private: x's block is the cached one
  EXPECT_EQ(bm.RefCount((*y)[1]), 2);
  PrefixCursor cz;
  EXPECT_THAT(bm.Acquire(a, 2, &cz), ElementsAre((*x)[0], (*y)[1]));
  ASSERT_TRUE(bm.CheckConsistency().ok()) << bm.CheckConsistency();
}

TEST(PrefixCache, TheIndexBoundEvictsUnreferencedBlocksAndOtherwiseStops) {
  BlockManager bm(8, 2, {.enabled = true, .max_fraction = 0.25});  // at most 2 cached blocks
  const std::vector<int32_t> a = Range(0, 8);
  auto blocks = bm.Allocate(4);
  ASSERT_TRUE(blocks.ok());
  PrefixCursor cur;
  bm.Publish(a, *blocks, 8, &cur);
  EXPECT_EQ(bm.num_cached(), 2);  // all held: the chain stops at the bound
  EXPECT_EQ(cur.blocks, 2);
  bm.Free(*blocks);
  const std::vector<int32_t> b = Range(50, 4);
  auto bb = bm.Allocate(2);
  ASSERT_TRUE(bb.ok());
  PrefixCursor cb;
  bm.Publish(b, *bb, 4, &cb);  // evicts a's two (unreferenced) blocks to make room
  EXPECT_EQ(bm.num_cached(), 2);
  EXPECT_EQ(bm.Peek(b, 2).blocks, 2);
  EXPECT_EQ(bm.Peek(a, 3).blocks, 0);
  ASSERT_TRUE(bm.CheckConsistency().ok()) << bm.CheckConsistency();
}

TEST(PrefixCache, DisabledCachesNothing) {
  BlockManager bm(4, 2);
  const std::vector<int32_t> a = Range(0, 4);
  auto blocks = bm.Allocate(2);
  ASSERT_TRUE(blocks.ok());
  PrefixCursor cur;
  bm.Publish(a, *blocks, 4, &cur);
  bm.Free(*blocks);
  EXPECT_EQ(bm.num_cached(), 0);
  EXPECT_EQ(bm.Peek(a, 2).blocks, 0);
  EXPECT_FALSE(bm.prefix_cache_enabled());
}

TEST(PrefixCache, PolicyChargesNeitherTokensNorComputeForACachedPrefix) {
  SchedulerLimits lim{8, 40, 32};
  SeqView s;
  s.id = 1;
  s.total_tokens = 100;
  s.cached_tokens = 96;
  s.cached_evictable = 6;
  // 96 cached tokens (6 blocks of 16, all evictable) + 4 to compute in a 7th block: 7 blocks.
  auto d = Schedule({}, {s}, 7, 16, lim);
  ASSERT_EQ(d.scheduled.size(), 1u);
  EXPECT_EQ(d.scheduled[0].tokens, 4);
  EXPECT_EQ(d.scheduled[0].cached_tokens, 96);
  EXPECT_EQ(d.scheduled[0].new_blocks, 1);
  EXPECT_EQ(d.batched_tokens, 4);
  // With 6 free blocks the evictable ones it takes leave no room for the seventh.
  EXPECT_TRUE(Schedule({}, {s}, 6, 16, lim).scheduled.empty());
  // Held cached blocks cost nothing: one free block is enough.
  s.cached_evictable = 0;
  EXPECT_EQ(Schedule({}, {s}, 1, 16, lim).scheduled.size(), 1u);
}

// Sequences drawn from a few shared prefixes arrive, compute in random chunks, publish, finish,
// get preempted, and allocations evict. After every operation: the manager's invariants hold;
// every block a sequence holds has at least as many references as holders (never freed while
// referenced); every block a lookup returns holds exactly the tokens it stands for; no block
// leaks when everything ends.
TEST(PrefixCache, RandomizedOperationsKeepEveryInvariant) {
  constexpr int kBlocks = 48, kBs = 4;
  for (double fraction : {1.0, 0.3}) {
    BlockManager bm(kBlocks, kBs, {.enabled = true, .max_fraction = fraction});
    std::mt19937 rng(7);
    // What each block's keys and values were computed from: the token prefix up to its end.
    std::map<int32_t, std::vector<int32_t>> content;
    struct Seq {
      std::vector<int32_t> tokens;
      std::vector<int32_t> blocks;
      int64_t computed = 0;
      PrefixCursor cursor;
    };
    std::vector<Seq> live;
    const std::vector<std::vector<int32_t>> stems = {Range(0, 12), Range(100, 9), Range(0, 6)};
    int64_t hits = 0;
    for (int op = 0; op < 4000; ++op) {
      const int kind = static_cast<int>(rng() % 4);
      if (kind == 0 && live.size() < 6) {  // arrive: a stem plus a random tail
        Seq s;
        s.tokens = stems[rng() % stems.size()];
        const int tail = static_cast<int>(rng() % 10);
        for (int i = 0; i < tail; ++i) s.tokens.push_back(static_cast<int32_t>(rng() % 3));
        if (s.tokens.size() < 2) continue;
        const int max_blocks = static_cast<int>((s.tokens.size() - 1) / kBs);
        const PrefixHit hit = bm.Peek(s.tokens, max_blocks);
        s.blocks = bm.Acquire(s.tokens, max_blocks, &s.cursor);
        ASSERT_EQ(static_cast<int>(s.blocks.size()), hit.blocks);
        s.computed = static_cast<int64_t>(s.blocks.size()) * kBs;
        hits += hit.blocks;
        for (size_t k = 0; k < s.blocks.size(); ++k) {
          const std::vector<int32_t> want(s.tokens.begin(), s.tokens.begin() + (k + 1) * kBs);
          ASSERT_EQ(content[s.blocks[k]], want)
              << "op " << op << ": block " << s.blocks[k] << " reused for other tokens";
        }
        live.push_back(std::move(s));
      } else if (kind == 1 && !live.empty()) {  // compute a chunk (allocating first)
        Seq& s = live[rng() % live.size()];
        const int64_t left = static_cast<int64_t>(s.tokens.size()) - s.computed;
        if (left == 0) continue;
        const int64_t n = 1 + static_cast<int64_t>(rng() % left);
        const int need = bm.BlocksFor(s.computed + n) - static_cast<int>(s.blocks.size());
        if (!bm.CanAllocate(need)) continue;
        auto nb = bm.Allocate(need);
        ASSERT_TRUE(nb.ok());
        for (int32_t b : *nb) {
          ASSERT_EQ(bm.RefCount(b), 1);
          content.erase(b);  // a fresh block: whatever it held is gone
        }
        s.blocks.insert(s.blocks.end(), nb->begin(), nb->end());
        s.computed += n;
        for (size_t k = 0; k < s.blocks.size(); ++k) {
          const size_t end = std::min<size_t>((k + 1) * kBs, s.computed);
          if (bm.RefCount(s.blocks[k]) == 1 && end == (k + 1) * kBs)
            content[s.blocks[k]] = {s.tokens.begin(), s.tokens.begin() + end};
        }
        bm.Publish(s.tokens, s.blocks, s.computed, &s.cursor);
      } else if (kind >= 2 && !live.empty()) {  // finish or be preempted
        const size_t i = rng() % live.size();
        bm.Free(live[i].blocks);
        live.erase(live.begin() + i);
      }
      ASSERT_TRUE(bm.CheckConsistency().ok()) << "op " << op << ": " << bm.CheckConsistency();
      std::map<int32_t, int> holders;
      for (const Seq& s : live)
        for (int32_t b : s.blocks) ++holders[b];
      for (auto [b, n] : holders) ASSERT_GE(bm.RefCount(b), n) << "op " << op;
      ASSERT_EQ(bm.num_used(), static_cast<int>(holders.size())) << "op " << op;
    }
    for (Seq& s : live) bm.Free(s.blocks);
    ASSERT_TRUE(bm.CheckConsistency().ok()) << bm.CheckConsistency();
    EXPECT_EQ(bm.num_used(), 0);
    EXPECT_EQ(bm.num_free(), kBlocks);
    EXPECT_GT(hits, 100) << "the run should reuse blocks often";
    EXPECT_LE(bm.num_cached(), static_cast<int>(fraction * kBlocks));
  }
}

}  // namespace
}  // namespace sparsed
