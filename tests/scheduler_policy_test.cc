// The batching policy and the block manager, step by step, without a model.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "scheduler/block_manager.h"
#include "scheduler/policy.h"

namespace sparsed {
namespace {

using ::testing::ElementsAre;

SeqView Seq(int64_t id, int64_t total, int64_t computed, int blocks, int64_t order,
            int priority = 0) {
  SeqView s;
  s.id = id;
  s.total_tokens = total;
  s.computed = computed;
  s.blocks_held = blocks;
  s.arrival = order;
  s.admitted = order;
  s.priority = priority;
  return s;
}

std::vector<std::pair<int64_t, int>> Chunks(const ScheduleDecision& d) {
  std::vector<std::pair<int64_t, int>> out;
  for (const auto& c : d.scheduled) out.emplace_back(c.id, c.tokens);
  return out;
}

TEST(BlockManager, AllocatesFreesAndCounts) {
  BlockManager bm(4, 16);
  EXPECT_EQ(bm.BlocksFor(0), 0);
  EXPECT_EQ(bm.BlocksFor(16), 1);
  EXPECT_EQ(bm.BlocksFor(17), 2);
  auto a = bm.Allocate(3);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(bm.num_free(), 1);
  EXPECT_FALSE(bm.CanAllocate(2));
  auto fail = bm.Allocate(2);
  EXPECT_EQ(fail.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(bm.num_free(), 1);  // a failed allocation takes nothing
  bm.AddRef({(*a)[0]});
  bm.Free(*a);
  EXPECT_EQ(bm.num_free(), 3);  // the shared block stays held
  EXPECT_EQ(bm.RefCount((*a)[0]), 1);
  bm.Free({(*a)[0]});
  EXPECT_EQ(bm.num_free(), 4);
}

TEST(Policy, DecodesFirstThenChunkedPrefill) {
  SchedulerLimits lim{8, 64, 32};
  // Two decoding sequences and one 100-token prompt waiting; 100 free blocks of 16.
  auto d =
      Schedule({Seq(1, 20, 19, 2, 0), Seq(2, 40, 39, 3, 1)}, {Seq(3, 100, 0, 0, 2)}, 100, 16, lim);
  EXPECT_THAT(Chunks(d), ElementsAre(std::pair<int64_t, int>{1, 1}, std::pair<int64_t, int>{2, 1},
                                     std::pair<int64_t, int>{3, 32}));
  EXPECT_EQ(d.batched_tokens, 34);
  EXPECT_EQ(d.scheduled[1].new_blocks, 0);  // position 39 is inside block 3
  EXPECT_EQ(d.scheduled[2].new_blocks, 2);
  // Next step: the prompt continues as a running prefill chunk, decodes still go first.
  auto d2 = Schedule({Seq(1, 21, 20, 2, 0), Seq(2, 41, 40, 3, 1), Seq(3, 100, 32, 2, 2)}, {}, 98,
                     16, lim);
  EXPECT_THAT(Chunks(d2), ElementsAre(std::pair<int64_t, int>{1, 1}, std::pair<int64_t, int>{2, 1},
                                      std::pair<int64_t, int>{3, 32}));
  EXPECT_EQ(d2.scheduled[0].new_blocks, 0);
  EXPECT_EQ(d2.scheduled[1].new_blocks, 0);
  EXPECT_EQ(d2.scheduled[2].new_blocks, 2);
}

TEST(Policy, TokenBudgetAndSequenceLimit) {
  SchedulerLimits lim{2, 10, 8};
  auto d =
      Schedule({}, {Seq(1, 30, 0, 0, 0), Seq(2, 5, 0, 0, 1), Seq(3, 5, 0, 0, 2)}, 100, 16, lim);
  // First prompt takes a chunk of 8, the second the remaining budget of 2; the limit stops the
  // third.
  EXPECT_THAT(Chunks(d), ElementsAre(std::pair<int64_t, int>{1, 8}, std::pair<int64_t, int>{2, 2}));
}

TEST(Policy, PriorityThenArrival) {
  SchedulerLimits lim{8, 100, 100};
  auto d =
      Schedule({}, {Seq(1, 10, 0, 0, 0), Seq(2, 10, 0, 0, 1, /*priority=*/5), Seq(3, 10, 0, 0, 2)},
               100, 16, lim);
  EXPECT_THAT(Chunks(d), ElementsAre(std::pair<int64_t, int>{2, 10}, std::pair<int64_t, int>{1, 10},
                                     std::pair<int64_t, int>{3, 10}));
}

TEST(Policy, HeadOfLineWaitsForBlocks) {
  SchedulerLimits lim{8, 100, 100};
  // 3 free blocks: the first waiting prompt needs 4, so nobody overtakes it.
  auto d = Schedule({}, {Seq(1, 60, 0, 0, 0), Seq(2, 10, 0, 0, 1)}, 3, 16, lim);
  EXPECT_TRUE(d.scheduled.empty());
  EXPECT_TRUE(d.preempted.empty());
}

TEST(Policy, PreemptsLatestAdmittedWhenBlocksRunOut) {
  SchedulerLimits lim{8, 100, 100};
  // No free block; sequences 1 and 2 each cross into a new block; 3 (latest) holds 2 blocks.
  auto d = Schedule({Seq(1, 33, 32, 2, 0), Seq(2, 17, 16, 1, 1), Seq(3, 20, 19, 2, 2)},
                    {Seq(4, 5, 0, 0, 3)}, 0, 16, lim);
  EXPECT_THAT(d.preempted, ElementsAre(3));
  EXPECT_THAT(Chunks(d), ElementsAre(std::pair<int64_t, int>{1, 1}, std::pair<int64_t, int>{2, 1}));
  EXPECT_EQ(d.scheduled[0].new_blocks + d.scheduled[1].new_blocks, 2);
}

TEST(Policy, PreemptsItselfWhenItIsTheLatest) {
  SchedulerLimits lim{8, 100, 100};
  auto d = Schedule({Seq(1, 20, 19, 2, 0), Seq(2, 33, 32, 2, 1)}, {}, 0, 16, lim);
  EXPECT_THAT(Chunks(d), ElementsAre(std::pair<int64_t, int>{1, 1}));
  EXPECT_THAT(d.preempted, ElementsAre(2));
}

TEST(Policy, PreemptedSequenceComesBackFirst) {
  SchedulerLimits lim{8, 100, 100};
  // Sequence 2 was preempted (computed reset to 0, arrival 1) and 5 arrived later.
  auto d = Schedule({Seq(1, 21, 20, 2, 0)}, {Seq(5, 4, 0, 0, 9), Seq(2, 33, 0, 0, 1)}, 10, 16, lim);
  EXPECT_THAT(Chunks(d), ElementsAre(std::pair<int64_t, int>{1, 1}, std::pair<int64_t, int>{2, 33},
                                     std::pair<int64_t, int>{5, 4}));
}

}  // namespace
}  // namespace sparsed
