#include "scheduler/policy.h"

#include <algorithm>

namespace sparsed {
namespace {

int BlocksFor(int64_t tokens, int block_size) {
  return static_cast<int>((tokens + block_size - 1) / block_size);
}

int ChunkFor(const SeqView& s, int budget, const SchedulerLimits& limits) {
  const int64_t need = s.total_tokens - s.computed;
  if (need <= 1) return need == 1 && budget >= 1 ? 1 : 0;
  return static_cast<int>(std::min<int64_t>({need, budget, limits.max_prefill_chunk}));
}

}  // namespace

bool AdmitsBefore(const SeqView& a, const SeqView& b) {
  return a.priority != b.priority ? a.priority > b.priority : a.arrival < b.arrival;
}

ScheduleDecision Schedule(const std::vector<SeqView>& running_in,
                          const std::vector<SeqView>& waiting_in, int free_blocks, int block_size,
                          const SchedulerLimits& limits) {
  ScheduleDecision d;
  std::vector<SeqView> running = running_in;
  std::sort(running.begin(), running.end(),
            [](const SeqView& a, const SeqView& b) { return a.admitted < b.admitted; });
  int budget = limits.max_num_batched_tokens;
  int seqs = 0;
  // `end` marks the running sequences still eligible: preemption takes from the back.
  size_t end = running.size();
  for (size_t i = 0; i < end; ++i) {
    const SeqView& s = running[i];
    if (seqs >= limits.max_num_seqs) break;
    const int tokens = ChunkFor(s, budget, limits);
    if (tokens == 0) continue;
    int need = std::max(0, BlocksFor(s.computed + tokens, block_size) - s.blocks_held);
    while (need > free_blocks && end > i + 1) {  // evict the latest-admitted other sequence
      --end;
      d.preempted.push_back(running[end].id);
      free_blocks += running[end].blocks_held - running[end].blocks_shared;
    }
    if (need > free_blocks) {  // it is the latest itself: evict it
      d.preempted.push_back(s.id);
      free_blocks += s.blocks_held - s.blocks_shared;
      end = i;
      break;
    }
    free_blocks -= need;
    budget -= tokens;
    ++seqs;
    d.scheduled.push_back({s.id, tokens, need, false});
    d.batched_tokens += tokens;
  }
  // Preemption frees capacity for the waiting queue only in later steps: admitting now could
  // evict the newcomer again at once.
  if (!d.preempted.empty()) return d;
  std::vector<SeqView> waiting = waiting_in;
  std::stable_sort(waiting.begin(), waiting.end(), AdmitsBefore);
  for (SeqView s : waiting) {
    if (seqs >= limits.max_num_seqs || budget <= 0) break;
    s.computed += s.cached_tokens;
    s.blocks_held += BlocksFor(s.cached_tokens, block_size);
    const int tokens = ChunkFor(s, budget, limits);
    if (tokens == 0) break;
    const int need = std::max(0, BlocksFor(s.computed + tokens, block_size) - s.blocks_held);
    if (need + s.cached_evictable > free_blocks) break;
    free_blocks -= need + s.cached_evictable;
    budget -= tokens;
    ++seqs;
    d.scheduled.push_back({s.id, tokens, need, true, s.cached_tokens});
    d.batched_tokens += tokens;
  }
  return d;
}

}  // namespace sparsed
