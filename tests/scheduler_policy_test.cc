// The batching policy and the block manager, step by step, without a model.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <string>

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

// Blocks another sequence shares (a cached prefix) stay taken when their holder is preempted:
// the policy counts only the blocks preemption really frees, and preempts further when those do
// not suffice.
TEST(Policy, PreemptionCountsOnlyTheBlocksItFrees) {
  SchedulerLimits lim{8, 100, 100};
  // 1 and 2 each cross into a new block; 3 (latest) holds 2 blocks, both shared with 1.
  SeqView shared = Seq(3, 20, 19, 2, 2);
  shared.blocks_shared = 2;
  auto d = Schedule({Seq(1, 33, 32, 2, 0), Seq(2, 17, 16, 1, 1), shared}, {}, 0, 16, lim);
  // Preempting 3 frees nothing, so 2 goes too, and then 1 gets 2's block.
  EXPECT_THAT(d.preempted, ElementsAre(3, 2));
  EXPECT_THAT(Chunks(d), ElementsAre(std::pair<int64_t, int>{1, 1}));
  // Unshared, preempting 3 alone frees enough for both.
  auto u =
      Schedule({Seq(1, 33, 32, 2, 0), Seq(2, 17, 16, 1, 1), Seq(3, 20, 19, 2, 2)}, {}, 0, 16, lim);
  EXPECT_THAT(u.preempted, ElementsAre(3));
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

namespace sparsed {
namespace {

// A step-by-step simulation of the policy: sequences arrive at given steps with prompt lengths,
// each scheduled token is "computed", a sequence that completes its prompt generates one token per
// step until `gen` tokens. The table records, per step, "id:tokens" of every scheduled chunk.
struct SimSeq {
  int64_t id;
  int arrive_step;
  int prompt;
  int gen;
  int priority = 0;
};

std::vector<std::string> Simulate(const std::vector<SimSeq>& seqs, int blocks, int block_size,
                                  const SchedulerLimits& lim, int steps) {
  struct State {
    SeqView v;
    bool running = false, done = false;
    int generated = 0;
    int gen = 0;
  };
  std::map<int64_t, State> st;
  int free_blocks = blocks;
  int64_t admit = 0;
  std::vector<std::string> table;
  for (int step = 0; step < steps; ++step) {
    for (const SimSeq& s : seqs) {
      if (s.arrive_step == step) {
        State x;
        x.v.id = s.id;
        x.v.arrival = s.id;
        x.v.priority = s.priority;
        x.v.total_tokens = s.prompt;
        x.gen = s.gen;
        st[s.id] = x;
      }
    }
    std::vector<SeqView> running, waiting;
    for (auto& [id, x] : st) {
      if (!x.done) (x.running ? running : waiting).push_back(x.v);
    }
    const ScheduleDecision d = Schedule(running, waiting, free_blocks, block_size, lim);
    std::string row;
    for (int64_t id : d.preempted) {
      State& x = st[id];
      free_blocks += x.v.blocks_held;
      x.v.blocks_held = 0;
      x.v.computed = 0;
      x.running = false;
      row += "P" + std::to_string(id) + " ";
    }
    for (const ScheduledChunk& c : d.scheduled) {
      State& x = st[c.id];
      free_blocks -= c.new_blocks;
      x.v.blocks_held += c.new_blocks;
      if (c.from_waiting) {
        x.running = true;
        x.v.admitted = admit++;
      }
      x.v.computed += c.tokens;
      row += std::to_string(c.id) + ":" + std::to_string(c.tokens) + " ";
      if (x.v.computed == x.v.total_tokens) {  // the step produced a token
        if (++x.generated >= x.gen) {
          x.done = true;
          free_blocks += x.v.blocks_held;
          x.v.blocks_held = 0;
        } else {
          ++x.v.total_tokens;
        }
      }
    }
    if (!row.empty()) row.pop_back();
    table.push_back(row);
  }
  return table;
}

TEST(PolicyTable, ChunkedPrefillBoundedShareAndMaxSeqs) {
  // Budget 8 tokens per step, one prefill may take 6: the 20-token prompt of 2 is split and never
  // takes the whole step; decodes of 1 keep running; max_num_seqs 2 holds 3 back.
  SchedulerLimits lim{2, 8, 6};
  const auto t = Simulate({{1, 0, 3, 4}, {2, 1, 20, 2}, {3, 1, 2, 2}}, 100, 4, lim, 9);
  EXPECT_THAT(t, ElementsAre("1:3",      // 1 prefills its 3 tokens (and produces its first token)
                             "1:1 2:6",  // 1 decodes; 2 takes one bounded chunk; 3 waits (2 seqs)
                             "1:1 2:6",
                             "1:1 2:6",  // 1 has its 4 tokens: done
                             "2:2 3:2",  // 2 finishes its prompt; 3 is admitted
                             "2:1 3:1",  // both produce their second token: done
                             "", "", ""));
}

TEST(PolicyTable, PreemptionAndResumption) {
  // 3 blocks of 4 tokens: 1 and 2 grow until blocks run out; the later one (2) is preempted,
  // recomputes its prompt and generated token later, and finishes.
  SchedulerLimits lim{4, 64, 64};
  const auto t = Simulate({{1, 0, 4, 5}, {2, 0, 3, 3}}, 3, 4, lim, 10);
  EXPECT_THAT(
      t, ElementsAre("1:4 2:3",  // both prefill: 1 block each
                     "1:1 2:1",  // 1 takes the last block (pos 4); 2 stays in its block (pos 3)
                     "P2 1:1",   // 2 needs a block at pos 4, none left: 2 (latest) is preempted
                     "1:1",      // 2 waits: its 5 tokens need 2 blocks, 1 is free
                     "1:1",      // 1 produces its 5th token and frees its blocks
                     "2:5",      // 2 resumes: recomputes 3 prompt + 2 generated tokens, then done
                     "", "", "", ""));
}

TEST(PolicyTable, PriorityServedFirst) {
  SchedulerLimits lim{1, 64, 64};
  const auto t =
      Simulate({{1, 0, 2, 1}, {2, 0, 2, 1}, {3, 0, 2, 1, /*priority=*/1}}, 10, 4, lim, 4);
  EXPECT_THAT(t, ElementsAre("3:2", "1:2", "2:2", ""));
}

// Priority preemption (step 0): a table of running/waiting sets and who is preempted.
TEST(PriorityPreemption, TheLowestLatestRunningMakesRoomForAHigherWaiting) {
  SchedulerLimits lim{2, 64, 32};  // two sequence slots, both taken
  std::vector<SeqView> running = {Seq(1, 20, 19, 2, 0, 0), Seq(2, 20, 19, 2, 1, 0)};
  auto d = Schedule(running, {Seq(3, 10, 0, 0, 2, 10)}, 100, 16, lim);
  // The latest admitted of the lowest priority goes, and the waiting request takes its slot in
  // the same step.
  EXPECT_THAT(d.preempted, ElementsAre(2));
  EXPECT_THAT(Chunks(d),
              ElementsAre(std::pair<int64_t, int>{1, 1}, std::pair<int64_t, int>{3, 10}));
  EXPECT_TRUE(d.scheduled[1].from_waiting);
  // Next step: 2 waits at priority 0; it preempts nobody (3 has the higher priority, 1 the same).
  auto d2 = Schedule({Seq(1, 21, 20, 2, 0, 0), Seq(3, 11, 10, 1, 2, 10)}, {Seq(2, 20, 0, 0, 1, 0)},
                     101, 16, lim);
  EXPECT_TRUE(d2.preempted.empty());
  EXPECT_THAT(Chunks(d2),
              ElementsAre(std::pair<int64_t, int>{3, 1}, std::pair<int64_t, int>{1, 1}));
}

TEST(PriorityPreemption, LowestPriorityFirstAndOnlyAsManyAsNeeded) {
  SchedulerLimits lim{3, 64, 32};
  std::vector<SeqView> running = {Seq(1, 20, 19, 2, 0, 5), Seq(2, 20, 19, 2, 1, 1),
                                  Seq(3, 20, 19, 2, 2, 3)};
  // One waiting request at priority 4 needs one slot: only 2 (priority 1) goes, not 3 (priority
  // 3, later admitted) and never 1 (priority 5, higher than the waiting one).
  auto d = Schedule(running, {Seq(4, 10, 0, 0, 3, 4)}, 100, 16, lim);
  EXPECT_THAT(d.preempted, ElementsAre(2));
  // Two waiting at priority 4 need two slots: 2, then 3.
  auto d2 = Schedule(running, {Seq(4, 10, 0, 0, 3, 4), Seq(5, 10, 0, 0, 4, 4)}, 100, 16, lim);
  EXPECT_THAT(d2.preempted, ElementsAre(2, 3));
}

TEST(PriorityPreemption, EqualOrLowerPriorityNeverPreempts) {
  SchedulerLimits lim{2, 64, 32};
  std::vector<SeqView> running = {Seq(1, 20, 19, 2, 0, 3), Seq(2, 20, 19, 2, 1, 3)};
  EXPECT_TRUE(Schedule(running, {Seq(3, 10, 0, 0, 2, 3)}, 100, 16, lim).preempted.empty());
  EXPECT_TRUE(Schedule(running, {Seq(3, 10, 0, 0, 2, 1)}, 100, 16, lim).preempted.empty());
}

TEST(PriorityPreemption, BoundedPerSequenceAndOffByFlag) {
  SchedulerLimits lim{1, 64, 32};
  SeqView low = Seq(1, 20, 19, 2, 0, 0);
  low.preemptions = lim.max_priority_preemptions;  // preempted enough: it now finishes
  EXPECT_TRUE(Schedule({low}, {Seq(2, 10, 0, 0, 1, 9)}, 100, 16, lim).preempted.empty());
  low.preemptions = lim.max_priority_preemptions - 1;
  EXPECT_THAT(Schedule({low}, {Seq(2, 10, 0, 0, 1, 9)}, 100, 16, lim).preempted, ElementsAre(1));
  lim.priority_preemption = false;
  EXPECT_TRUE(Schedule({low}, {Seq(2, 10, 0, 0, 1, 9)}, 100, 16, lim).preempted.empty());
}

TEST(PriorityPreemption, ForKvBlocksOnlyWhenThatMakesItFit) {
  SchedulerLimits lim{8, 256, 64};
  // Slots are free but KV is not: 1 free block; the waiting prompt of 40 tokens needs 3.
  std::vector<SeqView> running = {Seq(1, 40, 39, 3, 0, 0), Seq(2, 18, 17, 2, 1, 0)};
  // Preempting 2 (2 blocks) gives 3: enough, and the prompt runs at once.
  auto d = Schedule(running, {Seq(3, 40, 0, 0, 2, 5)}, 1, 16, lim);
  EXPECT_THAT(d.preempted, ElementsAre(2));
  EXPECT_THAT(Chunks(d),
              ElementsAre(std::pair<int64_t, int>{1, 1}, std::pair<int64_t, int>{3, 40}));
  // A 200-token prompt needs 4 blocks for its first chunk of 64: both must go (2 + 3 + 1 = 6).
  EXPECT_THAT(Schedule(running, {Seq(3, 200, 0, 0, 2, 5)}, 1, 16, lim).preempted,
              ElementsAre(2, 1));
  // One that would not fit even with both gone preempts nobody.
  lim.max_prefill_chunk = 256;
  EXPECT_TRUE(Schedule(running, {Seq(3, 200, 0, 0, 2, 5)}, 1, 16, lim).preempted.empty());
  // Blocks another sequence shares are not freed by preempting it.
  running[1].blocks_shared = 2;
  lim.max_prefill_chunk = 64;
  EXPECT_THAT(Schedule(running, {Seq(3, 40, 0, 0, 2, 5)}, 1, 16, lim).preempted, ElementsAre(2, 1));
}

TEST(PriorityPreemption, MemoryPressureEvictsTheLowestPriorityFirst) {
  SchedulerLimits lim{8, 64, 32};
  lim.priority_preemption = false;  // step 1's own eviction order
  // Both decodes cross into a new block; one block is free. The later admitted (2) has the higher
  // priority, so 1 is evicted rather than 2.
  auto d = Schedule({Seq(1, 33, 32, 2, 0, 0), Seq(2, 33, 32, 2, 1, 7)}, {}, 1, 16, lim);
  EXPECT_THAT(d.preempted, ElementsAre(1));
  EXPECT_THAT(Chunks(d), ElementsAre(std::pair<int64_t, int>{2, 1}));
}

}  // namespace
}  // namespace sparsed
