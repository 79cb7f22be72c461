// The continuous-batching policy: a pure function from the running and waiting sequences and
// the free KV blocks to the next step's batch and the sequences to preempt. No model, no
// threads — tested by iteration tables (tests/scheduler_policy_test.cc).
#pragma once

#include <cstdint>
#include <vector>

namespace sparsed {

struct SchedulerLimits {
  int max_num_seqs = 64;             // sequences per step
  int max_num_batched_tokens = 512;  // tokens per step (decodes + prefill chunks)
  int max_prefill_chunk = 256;       // tokens one prefill may take per step
  // A waiting sequence that cannot be admitted (no sequence slot or no KV blocks) preempts
  // running sequences of strictly lower priority to make room (Schedule, step 0).
  bool priority_preemption = true;
  // ... but never one already preempted this many times (for any reason), so that low priority
  // still finishes.
  int max_priority_preemptions = 4;
};

// What the policy sees of a sequence.
struct SeqView {
  int64_t id = 0;
  int priority = 0;          // higher is served first among waiting sequences
  int64_t arrival = 0;       // submission order (ties of priority)
  int64_t admitted = 0;      // order of (re)admission to running; the latest is preempted first
  int64_t total_tokens = 0;  // prompt + generated so far
  int64_t computed = 0;      // tokens whose K/V are in the cache
  int blocks_held = 0;
  // Running sequences only: of blocks_held, those another sequence also holds (a shared cached
  // prefix). Preempting this sequence does not free them.
  int blocks_shared = 0;
  // Waiting sequences only: leading tokens the prefix cache holds (whole blocks, fewer than
  // total_tokens), and how many of those blocks are evictable (counted in the free blocks now,
  // consumed when the sequence takes them).
  int64_t cached_tokens = 0;
  int cached_evictable = 0;
  int64_t preemptions = 0;  // times it has been preempted so far
};

struct ScheduledChunk {
  int64_t id = 0;
  int tokens = 0;      // tokens to run this step: [computed, computed + tokens)
  int new_blocks = 0;  // blocks to allocate first
  bool from_waiting = false;
  int64_t cached_tokens = 0;  // from_waiting only: taken from the prefix cache first; the chunk
                              // then runs [cached_tokens, cached_tokens + tokens)
};

struct ScheduleDecision {
  std::vector<ScheduledChunk> scheduled;  // running sequences first, then newly admitted ones
  std::vector<int64_t> preempted;  // running sequences to evict (blocks freed, recomputed later)
  int batched_tokens = 0;
};

// The order in which waiting sequences are admitted: higher priority first, then arrival.
bool AdmitsBefore(const SeqView& a, const SeqView& b);

// Decides one step:
//  0. with priority_preemption: waiting sequences in admission order that do not fit (no free
//     sequence slot, or too few free blocks for their first chunk beside what the running ones
//     need this step) preempt running sequences of strictly lower priority — lowest priority
//     first, then the most recently admitted, skipping those preempted max_priority_preemptions
//     times — but only as many as make the waiting one fit, and none when even all of them
//     would not. Stops at the first waiting sequence no running one has a lower priority than.
//     The waiting sequences it made room for are admitted in this step (2), unless step 1 also
//     had to preempt for memory;
//  1. running sequences, highest priority first, then oldest admission: a decode takes 1 token,
//     an unfinished prefill a chunk of at most max_prefill_chunk; when its blocks do not fit,
//     the lowest-priority, most recently admitted running sequence is preempted (possibly
//     itself) until they do — never deadlock;
//  2. unless step 1 preempted: waiting sequences by priority, then arrival: each admitted with a
//  prefill chunk while the
//     token budget, the sequence limit and the free blocks allow; the first that does not fit
//     stops admission (no overtaking, so a long prompt is not starved). A waiting sequence's
//     cached prefix costs neither tokens nor compute, only its evictable blocks.
// Requires: every waiting sequence fits the whole cache on its own (checked at submission).
ScheduleDecision Schedule(const std::vector<SeqView>& running, const std::vector<SeqView>& waiting,
                          int free_blocks, int block_size, const SchedulerLimits& limits);

}  // namespace sparsed
