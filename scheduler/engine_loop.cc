#include "scheduler/engine_loop.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "scheduler/detokenizer.h"

namespace sparsed {
namespace {

// A broken invariant of the scheduler is a bug, never a runtime condition to serve through: say
// which one on stderr and abort (a core dump beats outputs computed on a corrupt KV cache).
[[noreturn]] void InvariantBroken(const std::string& what) {
  std::fprintf(stderr, "sparsed: scheduler invariant broken: %s\n", what.c_str());
  std::abort();
}

}  // namespace

struct EngineLoop::Sequence {
  int64_t id = 0;
  Request req;
  std::vector<int32_t> tokens;  // prompt + generated
  std::vector<int32_t> generated;
  int64_t computed = 0;
  std::vector<int32_t> blocks;
  PrefixCursor cursor;
  int64_t cached_prompt_tokens = -1;  // at the first admission; -1 until then
  bool running = false;
  int64_t arrival = 0;
  int64_t admitted = 0;
  std::unique_ptr<Sampler> sampler;
  std::unique_ptr<IncrementalDetokenizer> detok;
  absl::Time submitted, first_scheduled = absl::InfinitePast(), first_token = absl::InfinitePast();
  int64_t preemptions = 0;
  double active_sum = 0, union_sum = 0;
  int64_t stat_steps = 0;
  bool done = false;
  std::string matched_stop_string;  // what ended it with kStop (RequestStats)
  int32_t matched_stop_token = -1;
};

EngineLoop::EngineLoop(std::unique_ptr<Engine> engine, const EngineLoopOptions& options,
                       std::function<void(const StepReport&)> on_step)
    : engine_(std::move(engine)),
      model_(engine_->Info()),
      options_(options),
      on_step_(std::move(on_step)),
      blocks_(engine_->kv_blocks(), engine_->kv_block_size(), options.prefix_cache),
      thread_([this] { Run(); }) {
  // The capacity is known before the first step's report.
  MutexLock l(mu_);
  snapshot_.kv_blocks_total = static_cast<int>(model_.kv_cache_tokens / model_.kv_block_tokens);
}

EngineLoop::~EngineLoop() {
  Shutdown();
  thread_.join();
}

void EngineLoop::StopAccepting() {
  MutexLock l(mu_);
  accepting_ = false;
}

void EngineLoop::Shutdown() {
  {
    MutexLock l(mu_);
    accepting_ = false;
    stopping_ = true;
  }
  cv_.notify_all();
}

absl::StatusOr<int64_t> EngineLoop::Submit(Request r) {
  const ModelConfig& c = engine_->config();
  if (r.prompt.empty()) return absl::InvalidArgumentError("prompt is empty");
  for (size_t i = 0; i < r.prompt.size(); ++i) {
    if (r.prompt[i] < 0 || r.prompt[i] >= c.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("prompt_token_ids[", i, "] = ", r.prompt[i],
                                                     " is outside the vocabulary [0, ",
                                                     c.vocab_size, ")"));
    }
  }
  if (auto s = ValidateSamplingParams(r.sampling); !s.ok()) return s;
  if (auto s = ValidateStoppingParams(r.stopping); !s.ok()) return s;
  if (!r.sink) return absl::InvalidArgumentError("request has no sink");
  const int64_t total = static_cast<int64_t>(r.prompt.size()) + r.stopping.max_new_tokens;
  const int64_t capacity = engine_->context_tokens();
  if (static_cast<int64_t>(r.prompt.size()) >= capacity) {
    return absl::InvalidArgumentError(absl::StrCat("prompt has ", r.prompt.size(),
                                                   " tokens; the context holds at most ",
                                                   capacity - 1, " prompt tokens"));
  }
  if (total > capacity) {
    return absl::InvalidArgumentError(absl::StrCat(
        "prompt (", r.prompt.size(), " tokens) + stopping.max_new_tokens (",
        r.stopping.max_new_tokens, ") = ", total, " exceeds the context of ", capacity, " tokens"));
  }
  auto s = std::make_unique<Sequence>();
  s->tokens = r.prompt;
  s->submitted = absl::Now();
  MutexLock l(mu_);
  if (!accepting_)
    return absl::UnavailableError("the server is shutting down; retry on another replica");
  if (queued_ >= options_.max_waiting_requests ||
      queued_tokens_ + static_cast<int64_t>(r.prompt.size()) > options_.max_waiting_prompt_tokens) {
    return absl::ResourceExhaustedError(absl::StrCat("the queue is full (", queued_, " requests, ",
                                                     queued_tokens_,
                                                     " prompt tokens waiting); retry later"));
  }
  if (options_.max_waiting_per_owner > 0 && !r.owner.empty()) {
    const auto it = queued_by_owner_.find(r.owner);
    if (it != queued_by_owner_.end() && it->second >= options_.max_waiting_per_owner) {
      return absl::ResourceExhaustedError(
          absl::StrCat("key '", r.owner, "' already has ", it->second,
                       " requests waiting, its share of the queue; retry later"));
    }
  }
  s->id = next_id_++;
  s->arrival = s->id;
  s->sampler =
      std::make_unique<Sampler>(r.sampling, static_cast<uint64_t>(s->id) * 0x9e3779b97f4a7c15ull);
  if (engine_->tokenizer()) {
    std::vector<int32_t> context;
    if (!s->tokens.empty()) context.push_back(s->tokens.back());
    s->detok =
        std::make_unique<IncrementalDetokenizer>(engine_->tokenizer(), r.stopping.stop, context);
  }
  s->req = std::move(r);
  CountWaiting(s->req, +1);
  unfinished_.fetch_add(1);
  if (!s->req.request_id.empty())
    by_request_id_.emplace(s->req.request_id, std::make_pair(s->id, s->req.owner));
  const int64_t id = s->id;
  inbox_.push_back(std::move(s));
  cv_.notify_all();
  return id;
}

int EngineLoop::CancelByRequestId(const std::string& request_id, const std::string* owner) {
  if (request_id.empty()) return 0;
  int n = 0;
  {
    MutexLock l(mu_);
    auto [b, e] = by_request_id_.equal_range(request_id);
    for (auto it = b; it != e; ++it) {
      if (owner != nullptr && it->second.second != *owner) continue;
      cancels_.push_back(it->second.first);
      ++n;
    }
  }
  if (n > 0) cv_.notify_all();
  return n;
}

void EngineLoop::Cancel(int64_t id) {
  {
    MutexLock l(mu_);
    cancels_.push_back(id);
  }
  cv_.notify_all();
}

void EngineLoop::CountWaiting(const Request& r, int delta) {
  queued_ += delta;
  queued_tokens_ += delta * static_cast<int64_t>(r.prompt.size());
  if (r.owner.empty()) return;
  auto it = queued_by_owner_.try_emplace(r.owner, 0).first;
  it->second += delta;
  if (it->second <= 0) queued_by_owner_.erase(it);
}

EngineLoop::Snapshot EngineLoop::Stats() const {
  MutexLock l(mu_);
  return snapshot_;
}

EngineLoop::Snapshot EngineLoop::Current() const {
  MutexLock l(mu_);
  Snapshot s = snapshot_;
  s.waiting = queued_;
  s.running = std::max(0, unfinished_.load() - queued_);
  return s;
}

void EngineLoop::Run() {
  for (;;) {
    bool stop = false;
    {
      MutexLock l(mu_);
      // Idle: sleep until something arrives. Busy: only check in, never wait. (The wait releases
      // and retakes mu_, which MutexLock holds again whenever it returns.)
      const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(50);
      while (seqs_.empty() && !stopping_ && inbox_.empty() && cancels_.empty()) {
        if (cv_.wait_until(mu_, until) == std::cv_status::timeout) break;
      }
      stop = stopping_ && inbox_.empty() && cancels_.empty();
    }
    if (stop) {  // cancel whatever is left
      for (auto& [id, s] : seqs_)
        Finish(*s, FinishReason::kShutdown, absl::UnavailableError("server shut down"));
      seqs_.clear();
      {
        MutexLock l(mu_);
        snapshot_ = Snapshot{
            0, 0, blocks_.num_used(), blocks_.num_blocks(), preemptions_, blocks_.num_cached()};
      }
      DeliverFinishes();
      return;
    }
    Iterate();
  }
}

void EngineLoop::Finish(Sequence& s, FinishReason reason, const absl::Status& status) {
  if (s.done) return;
  s.done = true;
  if (!s.blocks.empty()) blocks_.Free(s.blocks);
  s.blocks.clear();
  const absl::Time now = absl::Now();
  RequestStats st;
  st.queue_time = s.first_scheduled == absl::InfinitePast() ? now - s.submitted
                                                            : s.first_scheduled - s.submitted;
  st.time_to_first_token =
      s.first_token == absl::InfinitePast() ? absl::ZeroDuration() : s.first_token - s.submitted;
  st.total_time = now - s.submitted;
  st.prompt_tokens = static_cast<int64_t>(s.req.prompt.size());
  st.cached_prompt_tokens = std::max<int64_t>(s.cached_prompt_tokens, 0);
  st.generated_tokens = static_cast<int64_t>(s.generated.size());
  st.preemptions = s.preemptions;
  st.first_scheduled = s.first_scheduled;
  st.matched_stop_string = s.matched_stop_string;
  st.matched_stop_token = s.matched_stop_token;
  if (s.stat_steps) {
    st.mean_active_ratio = s.active_sum / s.stat_steps;
    st.mean_union_ratio = s.union_sum / s.stat_steps;
  }
  {
    MutexLock l(mu_);
    if (!s.running) CountWaiting(s.req, -1);
    if (!s.req.request_id.empty()) {
      auto [b, e] = by_request_id_.equal_range(s.req.request_id);
      for (auto it = b; it != e; ++it) {
        if (it->second.first == s.id) {
          by_request_id_.erase(it);
          break;
        }
      }
    }
  }
  // Told after this iteration's snapshot and report (DeliverFinishes).
  pending_finishes_.push_back({s.req.sink, reason, status, st});
}

// One iteration: arrivals, deadlines and cancellations; schedule and form the batch; the
// forward step; sampling, stops and detokenization; then the stats snapshot and the step report,
// and only then the sinks of requests that finished (so whoever hears of a finish finds it
// counted in Stats()).
void EngineLoop::Iterate() {
  const absl::Time t_start = absl::Now();
  std::vector<int64_t> cancels = TakeArrivalsAndCancels(t_start);
  StepReport report;
  StepPlan plan = ScheduleStep(t_start, &report);
  const absl::Time t_sched = absl::Now();
  report.schedule_time = t_sched - t_start;
  if (!plan.order.empty()) RunStep(plan, t_sched, &report);
  PublishReport(report, !cancels.empty());
  DeliverFinishes();
}

std::vector<int64_t> EngineLoop::TakeArrivalsAndCancels(absl::Time now) {
  std::vector<std::unique_ptr<Sequence>> arrivals;
  std::vector<int64_t> cancels;
  {
    MutexLock l(mu_);
    arrivals.swap(inbox_);
    cancels.swap(cancels_);
  }
  for (auto& s : arrivals) seqs_[s->id] = std::move(s);
  // Deadlines before cancellations: gRPC cancels a call whose deadline has passed, and that is
  // the deadline, not the client.
  for (auto it = seqs_.begin(); it != seqs_.end();) {
    if (it->second->req.deadline <= now) {
      Finish(*it->second, FinishReason::kDeadline,
             absl::DeadlineExceededError("deadline exceeded"));
      it = seqs_.erase(it);
    } else {
      ++it;
    }
  }
  for (int64_t id : cancels) {
    auto it = seqs_.find(id);
    if (it == seqs_.end()) continue;
    Finish(*it->second, FinishReason::kCancelled, absl::CancelledError("request cancelled"));
    seqs_.erase(it);
  }
  return cancels;
}

EngineLoop::StepPlan EngineLoop::ScheduleStep(absl::Time now, StepReport* report) {
  // A waiting sequence may start after its longest cached prefix of whole blocks, short of its
  // last token (whose logits are needed).
  const int bsize = blocks_.block_size();
  std::vector<SeqView> running, waiting;
  for (auto& [id, s] : seqs_) {
    SeqView v{id,
              s->req.priority,
              s->arrival,
              s->admitted,
              static_cast<int64_t>(s->tokens.size()),
              s->computed,
              static_cast<int>(s->blocks.size())};
    if (s->running) v.blocks_shared = blocks_.SharedBlocks(s->blocks);
    v.preemptions = s->preemptions;
    (s->running ? running : waiting).push_back(v);
  }
  // Only the first max_num_seqs waiting sequences can be admitted: look up just those.
  std::stable_sort(waiting.begin(), waiting.end(), AdmitsBefore);
  for (size_t i = 0; i < waiting.size() && i < static_cast<size_t>(options_.limits.max_num_seqs);
       ++i) {
    const Sequence& w = *seqs_[waiting[i].id];
    const std::vector<int32_t>& tokens = w.tokens;
    const PrefixHit hit =
        blocks_.Peek(tokens, static_cast<int>((tokens.size() - 1) / bsize), PrefixSalt(w.req));
    waiting[i].cached_tokens = static_cast<int64_t>(hit.blocks) * bsize;
    waiting[i].cached_evictable = hit.evictable;
  }
  const ScheduleDecision d =
      Schedule(running, waiting, blocks_.num_free(), blocks_.block_size(), options_.limits);
  for (int64_t id : d.preempted) {
    Sequence& s = *seqs_[id];
    blocks_.Free(s.blocks);
    s.blocks.clear();
    s.computed = 0;
    s.cursor = PrefixCursor{};
    s.running = false;
    ++s.preemptions;
    ++preemptions_;
    ++report->preempted;
    MutexLock l(mu_);
    CountWaiting(s.req, +1);
  }
  // Admitted sequences take their cached blocks before anything is allocated: an allocation may
  // evict unreferenced cached blocks, and the policy counted these as taken.
  for (const ScheduledChunk& c : d.scheduled) {
    if (!c.from_waiting) continue;
    Sequence& s = *seqs_[c.id];
    s.blocks = blocks_.Acquire(s.tokens, static_cast<int>(c.cached_tokens / bsize), &s.cursor,
                               PrefixSalt(s.req));
    s.computed = static_cast<int64_t>(s.blocks.size()) * bsize;
    if (s.computed != c.cached_tokens) {  // nothing changed since the policy's Peek
      InvariantBroken(absl::StrCat("request ", c.id, ": the prefix cache gave ", s.computed,
                                   " tokens where the policy counted ", c.cached_tokens));
    }
    if (s.cached_prompt_tokens < 0) s.cached_prompt_tokens = s.computed;
    report->prefix_query_tokens += static_cast<int64_t>(s.tokens.size());
    report->prefix_hit_tokens += s.computed;
  }
  StepPlan plan;
  for (const ScheduledChunk& c : d.scheduled) {
    Sequence& s = *seqs_[c.id];
    auto nb = blocks_.Allocate(c.new_blocks);
    if (!nb.ok()) {  // the policy counted the free blocks
      InvariantBroken(
          absl::StrCat("request ", c.id, ": ", c.new_blocks,
                       " KV blocks the policy counted as free: ", nb.status().message()));
    }
    s.blocks.insert(s.blocks.end(), nb->begin(), nb->end());
    if (c.from_waiting) {
      s.running = true;
      s.admitted = admit_counter_++;
      if (s.first_scheduled == absl::InfinitePast()) s.first_scheduled = now;
      MutexLock l(mu_);
      CountWaiting(s.req, -1);
    }
    const bool is_decode = c.tokens == 1 && !s.generated.empty() &&
                           s.computed + 1 == static_cast<int64_t>(s.tokens.size());
    BatchSequence bs;
    bs.block_table = s.blocks;
    bs.start_position = static_cast<int32_t>(s.computed);
    bs.num_tokens = c.tokens;
    bs.need_logits = s.computed + c.tokens == static_cast<int64_t>(s.tokens.size());
    plan.batch.token_ids.insert(plan.batch.token_ids.end(), s.tokens.begin() + s.computed,
                                s.tokens.begin() + s.computed + c.tokens);
    plan.batch.sequences.push_back(std::move(bs));
    plan.order.push_back(&s);
    report->tokens += c.tokens;
    (is_decode ? report->decode_tokens : report->prefill_tokens) += c.tokens;
  }
  report->sequences = static_cast<int>(plan.order.size());
  return plan;
}

void EngineLoop::RunStep(const StepPlan& plan, absl::Time t_sched, StepReport* report) {
  const absl::Status fault =
      options_.inject_step_fault ? options_.inject_step_fault() : absl::OkStatus();
  absl::StatusOr<StepOutput> out =
      fault.ok() ? engine_->Step(plan.batch) : absl::StatusOr<StepOutput>(fault);
  const absl::Time t_fwd = absl::Now();
  report->forward_time = t_fwd - t_sched;
  report->step_failed = !out.ok();
  consecutive_failed_steps_ = out.ok() ? 0 : consecutive_failed_steps_ + 1;
  if (!out.ok()) {
    for (Sequence* s : plan.order) {
      Finish(*s, FinishReason::kError, out.status());
      seqs_.erase(s->id);
    }
    return;
  }
  report->layer_stats = out->layer_stats;
  SampleAndEmit(plan, *out);
  report->sample_time = absl::Now() - t_fwd;
}

void EngineLoop::SampleAndEmit(const StepPlan& plan, const StepOutput& out) {
  double active = 0, uni = 0;
  for (const FfnStats& st : out.layer_stats) {
    active += st.active_ratio() / out.layer_stats.size();
    uni += st.union_ratio() / out.layer_stats.size();
  }
  const int V = static_cast<int>(engine_->config().vocab_size);
  size_t logit_row = 0;
  // Sample every sequence first, then detokenize the whole step in one tokenizer call, then emit
  // the events in batch order.
  struct Sampled {
    Sequence* s;
    SampledToken tok;
    bool stopped, length;
  };
  std::vector<Sampled> sampled;
  std::vector<Tokenizer::DecodeAfterItem> to_decode;
  for (size_t i = 0; i < plan.order.size(); ++i) {
    Sequence& s = *plan.order[i];
    s.computed += plan.batch.sequences[i].num_tokens;
    blocks_.Publish(s.tokens, s.blocks, s.computed, &s.cursor);
    s.active_sum += active;
    s.union_sum += uni;
    ++s.stat_steps;
    if (!plan.batch.sequences[i].need_logits) continue;
    const float* logits = out.logits.data() + logit_row++ * V;
    const SampledToken tok = s.sampler->Sample(logits, V, s.req.prompt, s.generated);
    s.generated.push_back(tok.token);
    s.tokens.push_back(tok.token);
    if (s.first_token == absl::InfinitePast()) s.first_token = absl::Now();
    const StoppingParams& stop = s.req.stopping;
    const auto& eos = engine_->config().eos_token_ids;
    const bool stopped =
        (!stop.ignore_eos && std::find(eos.begin(), eos.end(), tok.token) != eos.end()) ||
        std::find(stop.stop_token_ids.begin(), stop.stop_token_ids.end(), tok.token) !=
            stop.stop_token_ids.end();
    const bool length = static_cast<int>(s.generated.size()) >= stop.max_new_tokens;
    if (s.detok) {
      s.detok->Append({tok.token});
      to_decode.push_back({&s.detok->context(), &s.detok->ids()});
    }
    sampled.push_back({&s, tok, stopped, length});
  }
  absl::StatusOr<std::vector<absl::StatusOr<std::string>>> texts =
      std::vector<absl::StatusOr<std::string>>{};
  if (!to_decode.empty()) texts = engine_->tokenizer()->DecodeAfterEach(to_decode);
  size_t next_text = 0;
  std::vector<int64_t> finished;
  for (const Sampled& x : sampled) {
    Sequence& s = *x.s;
    // Stop strings are found by the detokenizer: its text then ends before the string.
    TokenEvent ev;
    ev.token_ids = {x.tok.token};
    ev.logprobs = {x.tok.logprob};
    if (s.req.sampling.top_logprobs > 0) ev.top_logprobs = {x.tok.top};
    bool stop_string = false;
    if (s.detok) {
      const absl::StatusOr<std::string> text =
          texts.ok() ? (*texts)[next_text++] : absl::StatusOr<std::string>(texts.status());
      auto dl = s.detok->Apply(text);
      if (dl.ok()) {
        ev.text = dl->text;
        stop_string = dl->stopped;
        if (stop_string) s.matched_stop_string = s.req.stopping.stop[dl->stop_index];
      }
      if (!stop_string && (x.length || x.stopped)) {
        auto rest = s.detok->FlushWith(text);
        if (rest.ok()) ev.text += *rest;
      }
    }
    s.req.sink->OnTokens(ev);
    if (!stop_string && x.stopped) s.matched_stop_token = x.tok.token;
    if (stop_string || x.stopped || x.length) {
      Finish(s, stop_string || x.stopped ? FinishReason::kStop : FinishReason::kLength,
             absl::OkStatus());
      finished.push_back(s.id);
    }
  }
  for (int64_t id : finished) seqs_.erase(id);
}

void EngineLoop::PublishReport(StepReport& report, bool cancelled) {
  int nrun = 0, nwait = 0;
  for (auto& [id, s] : seqs_) (s->running ? nrun : nwait)++;
  report.running = nrun;
  report.waiting = nwait;
  report.kv_blocks_used = blocks_.num_used();
  report.kv_blocks_total = blocks_.num_blocks();
  report.kv_blocks_cached = blocks_.num_cached();
  report.consecutive_failed_steps = consecutive_failed_steps_;
  report.engine_healthy = consecutive_failed_steps_ < options_.unhealthy_after_failed_steps;
  {
    MutexLock l(mu_);
    snapshot_ = Snapshot{nrun,
                         nwait,
                         blocks_.num_used(),
                         blocks_.num_blocks(),
                         preemptions_,
                         blocks_.num_cached(),
                         report.engine_healthy};
  }
  // Report steps that ran, and idle iterations that freed blocks (cancellations, deadlines), so
  // gauges such as KV usage never go stale.
  const bool freed = cancelled || report.kv_blocks_used != last_reported_blocks_;
  if (on_step_ && (report.sequences > 0 || freed)) on_step_(report);
  last_reported_blocks_ = report.kv_blocks_used;
}

void EngineLoop::DeliverFinishes() {
  std::vector<PendingFinish> pending;
  pending.swap(pending_finishes_);
  for (PendingFinish& f : pending) {
    f.sink->OnFinish(f.reason, f.status, f.stats);
    unfinished_.fetch_sub(1);
  }
}

}  // namespace sparsed
