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

// What `s` needs in KV blocks for its next chunk (running: as step 1 would give it, without the
// token budget; waiting: after its cached prefix, counting the evictable cached blocks it takes).
int NextChunkBlocks(const SeqView& s, int block_size, const SchedulerLimits& limits) {
  const int64_t computed = s.computed + s.cached_tokens;
  const int held = s.blocks_held + BlocksFor(s.cached_tokens, block_size);
  const int64_t tokens =
      std::min<int64_t>(std::max<int64_t>(s.total_tokens - computed, 0), limits.max_prefill_chunk);
  return std::max(0, BlocksFor(computed + tokens, block_size) - held) + s.cached_evictable;
}

// The order in which running sequences are served: higher priority first, then earlier
// admission. Preemption takes from the other end.
bool RunsBefore(const SeqView& a, const SeqView& b) {
  return a.priority != b.priority ? a.priority > b.priority : a.admitted < b.admitted;
}

// The KV blocks preempting `s` returns (not those it shares with another sequence).
int BlocksFreedBy(const SeqView& s) { return s.blocks_held - s.blocks_shared; }

// Step 0 of Schedule: the running sequences to preempt for higher-priority waiting ones.
// `waiting` is in admission order (AdmitsBefore).
std::vector<int64_t> PriorityVictims(const std::vector<SeqView>& running,
                                     const std::vector<SeqView>& waiting, int free_blocks,
                                     int block_size, const SchedulerLimits& limits) {
  std::vector<int64_t> victims;
  if (!limits.priority_preemption || waiting.empty() || running.empty()) return victims;
  // Candidates, the first to go first: the last RunsBefore would serve.
  std::vector<const SeqView*> cands;
  int reserve = 0;  // blocks the running sequences take this step
  for (const SeqView& r : running) {
    reserve += NextChunkBlocks(r, block_size, limits);
    if (r.preemptions < limits.max_priority_preemptions) cands.push_back(&r);
  }
  std::sort(cands.begin(), cands.end(),
            [](const SeqView* a, const SeqView* b) { return RunsBefore(*b, *a); });
  int slots = limits.max_num_seqs - static_cast<int>(running.size());
  size_t next = 0;  // cands[next..] are still running
  for (const SeqView& w : waiting) {
    if (next >= cands.size() || cands[next]->priority >= w.priority) break;
    const int need = NextChunkBlocks(w, block_size, limits);
    const size_t checkpoint = victims.size();
    int s = slots, f = free_blocks, res = reserve;
    size_t n = next;
    while ((s < 1 || need > f - res) && n < cands.size() && cands[n]->priority < w.priority) {
      const SeqView& c = *cands[n++];
      victims.push_back(c.id);
      ++s;
      f += BlocksFreedBy(c);
      res -= NextChunkBlocks(c, block_size, limits);
    }
    if (s < 1 || need > f - res) {  // it would not fit even so: preempt nobody for it
      victims.resize(checkpoint);
      break;
    }
    slots = s - 1;
    free_blocks = f - need;
    reserve = res;
    next = n;
  }
  return victims;
}

}  // namespace

bool AdmitsBefore(const SeqView& a, const SeqView& b) {
  return a.priority != b.priority ? a.priority > b.priority : a.arrival < b.arrival;
}

ScheduleDecision Schedule(const std::vector<SeqView>& running_in,
                          const std::vector<SeqView>& waiting_in, int free_blocks, int block_size,
                          const SchedulerLimits& limits) {
  ScheduleDecision d;
  std::vector<SeqView> waiting = waiting_in;
  std::stable_sort(waiting.begin(), waiting.end(), AdmitsBefore);
  d.preempted = PriorityVictims(running_in, waiting, free_blocks, block_size, limits);
  const size_t priority_victims = d.preempted.size();
  std::vector<SeqView> running;
  for (const SeqView& r : running_in) {
    if (std::find(d.preempted.begin(), d.preempted.end(), r.id) == d.preempted.end()) {
      running.push_back(r);
    } else {
      free_blocks += BlocksFreedBy(r);
    }
  }
  std::sort(running.begin(), running.end(), RunsBefore);
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
      free_blocks += BlocksFreedBy(running[end]);
    }
    if (need > free_blocks) {  // it is the latest itself: evict it
      d.preempted.push_back(s.id);
      free_blocks += BlocksFreedBy(s);
      end = i;
      break;
    }
    free_blocks -= need;
    budget -= tokens;
    ++seqs;
    d.scheduled.push_back({s.id, tokens, need, false});
    d.batched_tokens += tokens;
  }
  // Preemption for memory frees capacity for the waiting queue only in later steps: admitting
  // now could evict the newcomer again at once. Preemption for priority (step 0) made room for
  // exactly the waiting sequences that come first in admission order: they are admitted now.
  if (d.preempted.size() > priority_victims) return d;
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
