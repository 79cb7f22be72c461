// The engine-loop thread: owns the engine and its KV cache, runs continuous batching.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/common/mutex.h"
#include "engine/engine.h"
#include "scheduler/block_manager.h"
#include "scheduler/policy.h"
#include "scheduler/request.h"

namespace sparsed {

struct EngineLoopOptions {
  SchedulerLimits limits;
  int max_waiting_requests = 256;  // backpressure: queued (not yet running) requests
  // Of those, at most this many of one owner (Request::owner, the API key's name); 0: no bound
  // per owner. Requests without an owner count only against the global bound.
  int max_waiting_per_owner = 0;
  int64_t max_waiting_prompt_tokens = 1 << 20;
  // Reuse the keys and values of cached full blocks of earlier sequences' tokens; outputs are
  // bitwise those of recomputation (scheduler/prefix_index.h).
  PrefixCacheOptions prefix_cache{.enabled = true, .max_fraction = 1.0};
  // After this many engine steps fail in a row the engine counts as unhealthy (the daemon's
  // health then says NOT_SERVING, so an orchestrator restarts it); a step that succeeds makes it
  // healthy again.
  int unhealthy_after_failed_steps = 3;
  // Tests: called on the loop thread before each engine step; a non-OK status fails the step as
  // a failing engine would.
  std::function<absl::Status()> inject_step_fault;
};

// What one step did, for metrics.
struct StepReport {
  int sequences = 0;
  int tokens = 0;
  int prefill_tokens = 0;
  int decode_tokens = 0;
  int preempted = 0;
  absl::Duration schedule_time, forward_time, sample_time;
  std::vector<FfnStats> layer_stats;
  int running = 0, waiting = 0, kv_blocks_used = 0, kv_blocks_total = 0;
  int kv_blocks_cached = 0;  // in the prefix cache (some also in use)
  // Sequences admitted this step: prompt tokens looked up in the prefix cache, and found there.
  int64_t prefix_query_tokens = 0, prefix_hit_tokens = 0;
  bool step_failed = false;          // the engine step failed (its sequences ended in errors)
  int consecutive_failed_steps = 0;  // including this one
  bool engine_healthy = true;        // fewer than unhealthy_after_failed_steps failures in a row
};

// Thread-safety: Submit, Cancel and Stats may be called from any thread; everything else runs
// on the loop's own thread, which is the only one that touches the engine.
class EngineLoop {
 public:
  // Takes ownership of the engine and starts the thread. `on_step`, if set, is called on the
  // loop thread after every step, and after idle iterations that freed KV blocks (sequences == 0
  // in the report then); keep it cheap.
  EngineLoop(std::unique_ptr<Engine> engine, const EngineLoopOptions& options,
             std::function<void(const StepReport&)> on_step = {});
  // Cancels everything still queued or running (FinishReason::kShutdown) and joins the thread.
  ~EngineLoop();
  EngineLoop(const EngineLoop&) = delete;
  EngineLoop& operator=(const EngineLoop&) = delete;

  // Queues a request and returns its id. INVALID_ARGUMENT for bad fields (naming them),
  // RESOURCE_EXHAUSTED at once when the waiting queue is full or its owner has
  // max_waiting_per_owner requests waiting, UNAVAILABLE after Shutdown.
  // On success the sink will receive OnFinish exactly once.
  absl::StatusOr<int64_t> Submit(Request request);
  // Cancels a request if it is still queued or running (no-op otherwise). Its sink is told
  // kCancelled — or kDeadline when its deadline has passed by then (a client's deadline reaches
  // the server as a cancellation) — and its KV blocks are freed at the next iteration.
  void Cancel(int64_t id);
  // Cancels every queued or running request whose Request::request_id is `request_id` (from any
  // thread, e.g. a router's abort on another connection) and, when `owner` is given, whose
  // Request::owner is *owner; returns how many. Empty ids match none.
  int CancelByRequestId(const std::string& request_id, const std::string* owner = nullptr);
  int max_waiting_requests() const { return options_.max_waiting_requests; }
  // Refuses new requests (UNAVAILABLE) while the loop finishes what it has.
  void StopAccepting();
  // Refuses new requests and cancels everything queued or running (kShutdown); the thread ends.
  void Shutdown();

  struct Snapshot {
    int running = 0, waiting = 0, kv_blocks_used = 0, kv_blocks_total = 0;
    int64_t preemptions = 0;
    int kv_blocks_cached = 0;
    bool engine_healthy = true;
  };
  Snapshot Stats() const;
  // Stats() with the queue as it is at this moment: `waiting` counts the requests submitted and
  // not yet running, `running` the rest of the unfinished ones (the KV figures stay the last
  // step's; kv_blocks_total is the capacity from the start). What a router's load poll reads.
  Snapshot Current() const;
  // Requests submitted whose sinks have not had OnFinish yet; exact at any moment (Stats() is
  // the state at the end of the last step).
  int Unfinished() const { return unfinished_.load(); }
  // The served model as fixed at load (config, tokenizer, limits): safe from any thread. The
  // engine itself is the loop thread's alone.
  const ModelInfo& model() const { return model_; }

 private:
  struct Sequence;
  // The sequences and batch of one step, in batch order.
  struct StepPlan {
    Batch batch;
    std::vector<Sequence*> order;
  };
  struct PendingFinish {
    std::shared_ptr<TokenSink> sink;
    FinishReason reason;
    absl::Status status;
    RequestStats stats;
  };
  void Run();
  void Iterate();
  // Moves the inbox into seqs_, finishes sequences past their deadline, then the cancelled ones;
  // returns the cancellations taken.
  std::vector<int64_t> TakeArrivalsAndCancels(absl::Time now);
  // Runs the policy, applies preemptions and admissions, allocates blocks, forms the batch.
  StepPlan ScheduleStep(absl::Time now, StepReport* report);
  // The forward step (failed: every scheduled sequence finishes with its error), then sampling.
  void RunStep(const StepPlan& plan, absl::Time t_sched, StepReport* report);
  // Samples, applies stops, detokenizes the step in one call and emits the token events.
  void SampleAndEmit(const StepPlan& plan, const StepOutput& out);
  // Publishes Stats() and calls on_step_.
  void PublishReport(StepReport& report, bool cancelled);
  // Frees the sequence's blocks and queues its sink's OnFinish for DeliverFinishes().
  void Finish(Sequence& s, FinishReason reason, const absl::Status& status);
  // Tells the sinks of the requests that finished since the last call.
  void DeliverFinishes();
  // Counts `r` into (+1) or out of (-1) the waiting requests: their number, their prompt tokens
  // and its owner's share.
  void CountWaiting(const Request& r, int delta) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  std::unique_ptr<Engine> engine_;
  const ModelInfo model_;
  const EngineLoopOptions options_;
  std::function<void(const StepReport&)> on_step_;

  // Annotated for Clang's thread-safety analysis, and seen by ThreadSanitizer
  // (engine/common/mutex.h).
  mutable Mutex mu_;
  std::condition_variable_any cv_;  // signalled on arrivals, cancellations and shutdown
  std::vector<std::unique_ptr<Sequence>> inbox_ ABSL_GUARDED_BY(mu_);
  std::vector<int64_t> cancels_ ABSL_GUARDED_BY(mu_);
  // Unfinished requests with ids.
  // request_id → (sequence id, owner)
  std::unordered_multimap<std::string, std::pair<int64_t, std::string>> by_request_id_
      ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool accepting_ ABSL_GUARDED_BY(mu_) = true;
  int64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  int queued_ ABSL_GUARDED_BY(mu_) = 0;  // in inbox_ or waiting
  int64_t queued_tokens_ ABSL_GUARDED_BY(mu_) = 0;
  std::unordered_map<std::string, int> queued_by_owner_ ABSL_GUARDED_BY(mu_);  // owners with > 0
  Snapshot snapshot_ ABSL_GUARDED_BY(mu_);

  // Loop-thread state.
  BlockManager blocks_;
  std::map<int64_t, std::unique_ptr<Sequence>> seqs_;  // waiting and running, by id
  int64_t admit_counter_ = 0;
  int64_t preemptions_ = 0;
  int last_reported_blocks_ = -1;
  int consecutive_failed_steps_ = 0;
  std::vector<PendingFinish> pending_finishes_;
  std::atomic<int> unfinished_{0};

  std::thread thread_;  // last: starts after everything above is initialised
};

}  // namespace sparsed
