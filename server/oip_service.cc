#include "server/oip_service.h"

#include <algorithm>
#include <deque>
#include <list>
#include <memory>
#include <mutex>
#include <utility>

#include "absl/time/clock.h"
#include "server/auth.h"
#include "server/call_state.h"
#include "server/convert.h"
#include "server/oip_convert.h"
#include "server/tsan_handoff.h"

namespace sparsed::server {
namespace {

// A request's GenerateRequest, or why it has none.
absl::StatusOr<v1::GenerateRequest> Generate(absl::StatusOr<OipRequest>& r) {
  if (!r.ok()) return r.status();
  return std::move(r->generate);
}

// ModelInfer: the whole text in one response (after the prompt, when the request asks for it).
class OipInfer final : public GeneratingReactor<grpc::ServerUnaryReactor> {
 public:
  OipInfer(const CallEnv& env, grpc::CallbackServerContext* ctx, std::string model,
           const inference::ModelInferRequest* req, inference::ModelInferResponse* resp,
           OipStats* stats)
      : GeneratingReactor(env, ctx),
        model_(std::move(model)),
        id_(req->id()),
        resp_(resp),
        stats_(stats),
        arrived_(absl::Now()) {
    if (absl::Status name = CheckModelName(req->model_name(), model_); !name.ok()) {
      HandOff(this);
      Finish(ToGrpc(name));
      return;
    }
    absl::StatusOr<OipRequest> parsed = ParseInferRequest(*req);
    if (parsed.ok() && parsed->echo_prompt) text_ = parsed->generate.prompt();
    // As Admit, counting a refusal.
    const grpc::Status st = call_.Submit(
        Generate(parsed),
        std::make_shared<ForwardingSink<OipInfer>>(this, call_.env().metrics, absl::Now()));
    HandOff(this);
    if (!st.ok()) {
      stats_->Failed(arrived_);
      Finish(st);
    }
  }

  // Engine-loop thread.
  void Tokens(const TokenEvent& e) { text_ += e.text; }
  void Finished(FinishReason reason, const absl::Status& status, const RequestStats& st) {
    const absl::Time finished = absl::Now();
    const grpc::Status result = FinalStatus(reason, status);
    if (result.ok()) {
      *resp_ = TextResponse(model_, id_, text_, true);
      stats_->Succeeded(arrived_, finished, st);
    } else {
      stats_->Failed(arrived_);
    }
    HandOff(this);
    Finish(result);  // last: gRPC may delete this reactor from here on
  }

 private:
  const std::string model_, id_;
  inference::ModelInferResponse* const resp_;
  OipStats* const stats_;
  const absl::Time arrived_;
  std::string text_;  // set before submission, then engine-loop thread only
};

// ModelStreamInfer: reads requests for as long as the client sends them, runs each as its own
// engine request, and writes their responses one at a time in the order they come. Each
// request's latest response is held back until the next one (or its end) so that its last one
// can carry triton_final_response = true; a request that asked for an empty final response
// (triton_enable_empty_final_response) gets one. A request with input stream = false gets its
// whole text in one response; one that asked for the prompt (exclude_input_in_output = false)
// has it at the start of its first response. The call ends when the client has stopped
// sending (or cancelled) and every request has ended and been written.
// Bounds, as for sparsed.v1 streams: at most kMaxStreamRequests requests run at once (reading
// pauses until one ends); finished requests are forgotten; a client that leaves more than
// stream_max_pending_tokens responses unsent, or takes no write for stream_write_timeout while
// responses wait, has the whole stream cancelled (its requests' KV blocks freed).
constexpr int kMaxStreamRequests = 64;

class OipStream;
class OipStream final : public grpc::ServerBidiReactor<inference::ModelInferRequest,
                                                       inference::ModelStreamInferResponse> {
 public:
  OipStream(std::function<CallEnv()> env, grpc::CallbackServerContext* ctx, std::string model,
            OipStats* stats)
      : env_(std::move(env)), ctx_(ctx), model_(std::move(model)), stats_(stats) {
    const CallEnv e = env_();
    max_pending_ = e.stream_max_pending_tokens;
    write_timeout_ = e.stream_write_timeout;
    log_stalled_ = e.log_stalled;
    read_pending_ = true;
    HandOff(this);
    StartRead(&in_);
  }

  void OnReadDone(bool ok) override {
    TakeOver(this);
    {
      std::unique_lock<std::mutex> l(mu_);
      read_pending_ = false;
      if (!ok) {
        reads_done_ = true;
        return MaybeFinish(l);
      }
    }
    Start(in_);
    std::unique_lock<std::mutex> l(mu_);
    if (active_ >= kMaxStreamRequests || cancelled_) {
      read_paused_ = !cancelled_;  // OnRequestFinished resumes reading
      return MaybeFinish(l);
    }
    read_pending_ = true;  // the call cannot end before this read completes
    l.unlock();
    HandOff(this);
    StartRead(&in_);
  }
  void OnWriteDone(bool ok) override {
    TakeOver(this);
    std::unique_lock<std::mutex> l(mu_);
    queue_.pop_front();
    write_started_ = absl::Now();
    if (!ok) {
      write_failed_ = true;
      queue_.clear();
    }
    if (!queue_.empty()) {
      const inference::ModelStreamInferResponse* next = &queue_.front();
      l.unlock();
      HandOff(this);
      return StartWrite(next);
    }
    writing_ = false;
    if (!ok) {
      l.unlock();
      CancelAll();
      l.lock();
    }
    MaybeFinish(l);
  }
  void OnCancel() override {
    TakeOver(this);
    {
      std::lock_guard<std::mutex> l(mu_);
      cancelled_ = true;
    }
    CancelAll();
  }
  void OnDone() override {
    TakeOver(this);
    delete this;
  }

 private:
  // One request of the stream; the engine loop's sink for it forwards here.
  struct Req {
    Req(OipStream* s, const CallEnv& env, std::string id, bool empty_final)
        : stream(s), call(env, s->ctx_), id(std::move(id)), empty_final(empty_final) {}
    void Tokens(const TokenEvent& e) { stream->OnRequestTokens(this, e); }
    void Finished(FinishReason reason, const absl::Status& status, const RequestStats& st) {
      stream->OnRequestFinished(this, FinalStatus(reason, status), &st);
    }
    OipStream* const stream;
    CallState call;
    const std::string id;
    const bool empty_final;
    const absl::Time arrived = absl::Now();
    // Guarded by stream->mu_ (set before submission): whether the request named the served model
    // (counted in OipStats); a response per piece of text (false: one with the whole text); text
    // not sent yet (the prompt to start the first response with, or the whole text so far).
    bool counted = false, per_piece = true;
    std::string unsent;
    std::optional<inference::ModelStreamInferResponse> held;  // guarded by stream->mu_
    // Guarded by stream->mu_: Submit has returned; the request has ended. A request is
    // forgotten once both hold (Submit still uses `call` until it returns).
    bool submitted = false, done = false;
  };

  // Forgets `r` once it has ended and its Submit has returned; `mu_` held.
  void ForgetIfOver(Req* r) {
    if (!r->submitted || !r->done) return;
    reqs_.remove_if([r](const std::unique_ptr<Req>& p) { return p.get() == r; });
  }

  void Start(const inference::ModelInferRequest& in) {
    auto flag = in.parameters().find("triton_enable_empty_final_response");
    const bool empty_final =
        flag != in.parameters().end() &&
        flag->second.parameter_choice_case() == inference::InferParameter::kBoolParam &&
        flag->second.bool_param();
    const CallEnv env = env_();
    Req* r;
    {
      std::lock_guard<std::mutex> l(mu_);
      reqs_.push_back(std::make_unique<Req>(this, env, in.id(), empty_final));
      r = reqs_.back().get();
      ++active_;
    }
    grpc::Status st;
    if (absl::Status name = CheckModelName(in.model_name(), model_); !name.ok()) {
      st = ToGrpc(name);
    } else {
      absl::StatusOr<OipRequest> parsed = ParseInferRequest(in);
      {
        std::lock_guard<std::mutex> l(mu_);
        r->counted = true;
        if (parsed.ok()) {
          r->per_piece = parsed->stream;
          if (parsed->echo_prompt) r->unsent = parsed->generate.prompt();
        }
      }
      st = r->call.Submit(Generate(parsed),
                          std::make_shared<ForwardingSink<Req>>(r, env.metrics, absl::Now()));
    }
    {
      std::lock_guard<std::mutex> l(mu_);
      r->submitted = true;
    }
    if (!st.ok()) return OnRequestFinished(r, st, nullptr);
    std::lock_guard<std::mutex> l(mu_);
    ForgetIfOver(r);  // it may have ended before Submit returned
  }

  void CancelAll() {
    std::lock_guard<std::mutex> l(mu_);
    for (auto& r : reqs_) r->call.Cancel();
  }

  // Engine-loop thread (or Start's, for a refused request).
  void OnRequestTokens(Req* r, const TokenEvent& e) {
    if (e.text.empty()) return;  // bytes of a character still incomplete
    std::unique_lock<std::mutex> l(mu_);
    if (!r->per_piece) {
      r->unsent += e.text;
      return;
    }
    inference::ModelStreamInferResponse resp;
    *resp.mutable_infer_response() =
        TextResponse(model_, r->id, std::exchange(r->unsent, std::string()) + e.text, false);
    if (r->held) Enqueue(*std::exchange(r->held, std::nullopt), l);
    r->held = std::move(resp);
  }
  // `stats`: the engine's, for a request it ran (null for one refused).
  void OnRequestFinished(Req* r, const grpc::Status& st, const RequestStats* stats) {
    const absl::Time finished = absl::Now();
    std::unique_lock<std::mutex> l(mu_);
    // Counted before any response of the request is written: a client that has its final
    // response finds it in ModelStatistics.
    if (r->counted && st.ok() && stats) {
      stats_->Succeeded(r->arrived, finished, *stats);
    } else if (r->counted) {
      stats_->Failed(r->arrived);
    }
    if (st.ok() && (!r->unsent.empty() || !r->per_piece)) {
      // The text not sent yet (a one-response request's whole text, or the prompt of one that
      // generated none) becomes its last response.
      inference::ModelStreamInferResponse resp;
      *resp.mutable_infer_response() =
          TextResponse(model_, r->id, std::exchange(r->unsent, std::string()), false);
      if (r->held) Enqueue(*std::exchange(r->held, std::nullopt), l);
      r->held = std::move(resp);
    }
    if (!st.ok()) {
      if (r->held) Enqueue(*std::exchange(r->held, std::nullopt), l);
      inference::ModelStreamInferResponse err;
      err.set_error_message(st.error_message());
      *err.mutable_infer_response() = TextResponse(model_, r->id, "", true);
      err.mutable_infer_response()->clear_outputs();
      err.mutable_infer_response()->clear_raw_output_contents();
      Enqueue(std::move(err), l);
    } else if (r->held && !r->empty_final) {
      (*r->held->mutable_infer_response()->mutable_parameters())["triton_final_response"]
          .set_bool_param(true);
      Enqueue(*std::exchange(r->held, std::nullopt), l);
    } else {
      if (r->held) Enqueue(*std::exchange(r->held, std::nullopt), l);
      inference::ModelStreamInferResponse last;
      *last.mutable_infer_response() = TextResponse(model_, r->id, "", true);
      if (r->empty_final) {  // Triton's empty final response: no outputs
        last.mutable_infer_response()->clear_outputs();
        last.mutable_infer_response()->clear_raw_output_contents();
      }
      Enqueue(std::move(last), l);
    }
    --active_;
    r->done = true;
    ForgetIfOver(r);
    bool resume = false;
    if (read_paused_ && active_ < kMaxStreamRequests && !cancelled_ && !reads_done_) {
      read_paused_ = false;
      read_pending_ = true;  // the call cannot end before this read completes
      resume = true;
    }
    MaybeFinish(l);  // cannot end the call while a read is pending
    if (resume) {
      HandOff(this);
      StartRead(&in_);
    }
  }

  // Queues a response and starts writing if no write is in flight; `l` held, and held again on
  // return.
  void Enqueue(inference::ModelStreamInferResponse resp, std::unique_lock<std::mutex>& l) {
    if (write_failed_ || stalled_) return;
    queue_.push_back(std::move(resp));  // a deque: the message in flight does not move
    if (writing_) {
      if (static_cast<int64_t>(queue_.size()) > max_pending_ ||
          absl::Now() - write_started_ > write_timeout_) {
        // A client that does not read: end the stream and everything it runs.
        stalled_ = true;
        const int64_t pending = static_cast<int64_t>(queue_.size());
        l.unlock();
        if (log_stalled_) log_stalled_(*ctx_, pending);
        CancelAll();
        ctx_->TryCancel();
        l.lock();
      }
      return;
    }
    writing_ = true;
    write_started_ = absl::Now();
    const inference::ModelStreamInferResponse* next = &queue_.front();
    l.unlock();
    HandOff(this);
    StartWrite(next);
    l.lock();
  }

  // Ends the call once nothing is left to read, run or write; releases `l`. Ending the call is
  // the last thing it does.
  void MaybeFinish(std::unique_lock<std::mutex>& l) {
    if (finished_ || !(reads_done_ || cancelled_) || read_pending_ || active_ > 0 || writing_)
      return l.unlock();
    finished_ = true;
    const bool cancelled = cancelled_;
    l.unlock();
    HandOff(this);
    Finish(cancelled ? grpc::Status(grpc::StatusCode::CANCELLED, "stream cancelled")
                     : grpc::Status::OK);
  }

  const std::function<CallEnv()> env_;
  grpc::CallbackServerContext* const ctx_;
  const std::string model_;
  OipStats* const stats_;
  // The stalled-reader bounds (CallEnv), fixed for the call.
  int64_t max_pending_ = 4096;
  absl::Duration write_timeout_ = absl::Seconds(60);
  std::function<void(const grpc::CallbackServerContext&, int64_t)> log_stalled_;
  inference::ModelInferRequest in_;  // the read in flight
  std::mutex mu_;                    // guards everything below
  std::list<std::unique_ptr<Req>> reqs_;
  int active_ = 0;
  std::deque<inference::ModelStreamInferResponse> queue_;  // front: the write in flight
  bool writing_ = false, write_failed_ = false, reads_done_ = false, cancelled_ = false;
  bool finished_ = false;
  bool read_pending_ = false;  // a StartRead whose OnReadDone has not run
  bool read_paused_ = false;   // kMaxStreamRequests run: reading resumes when one ends
  bool stalled_ = false;       // cancelled for not reading
  absl::Time write_started_ = absl::InfinitePast();  // of the write in flight
};

uint64_t Ns(absl::Duration d) {
  return d <= absl::ZeroDuration() ? 0 : static_cast<uint64_t>(absl::ToInt64Nanoseconds(d));
}

void Add(inference::StatisticDuration* out, uint64_t count, uint64_t ns) {
  out->set_count(count);
  out->set_ns(ns);
}

}  // namespace

void OipStats::Succeeded(absl::Time arrived, absl::Time finished, const RequestStats& st) {
  const absl::Time now = absl::Now();
  // The engine loop's submission: total_time before its finish event.
  const absl::Time submitted = finished - st.total_time;
  MutexLock l(mu_);
  ++success_;
  success_ns_ += Ns(now - arrived);
  queue_ns_ += Ns(st.queue_time);
  input_ns_ += Ns(submitted - arrived);
  infer_ns_ += Ns(st.total_time - st.queue_time);
  output_ns_ += Ns(now - finished);
  last_inference_ms_ = std::max(last_inference_ms_, static_cast<uint64_t>(absl::ToUnixMillis(now)));
}

void OipStats::Failed(absl::Time arrived) {
  const absl::Time now = absl::Now();
  MutexLock l(mu_);
  ++fail_;
  fail_ns_ += Ns(now - arrived);
}

void OipStats::Fill(const std::string& model, inference::ModelStatistics* out) const {
  out->set_name(model);
  out->set_version("1");
  MutexLock l(mu_);
  out->set_last_inference(last_inference_ms_);
  out->set_inference_count(success_);
  out->set_execution_count(success_);
  inference::InferStatistics* s = out->mutable_inference_stats();
  Add(s->mutable_success(), success_, success_ns_);
  Add(s->mutable_fail(), fail_, fail_ns_);
  Add(s->mutable_queue(), success_, queue_ns_);
  Add(s->mutable_compute_input(), success_, input_ns_);
  Add(s->mutable_compute_infer(), success_, infer_ns_);
  Add(s->mutable_compute_output(), success_, output_ns_);
}

OipService::OipService(std::string model_name, std::function<CallEnv()> env,
                       std::function<bool()> ready)
    : model_(std::move(model_name)), env_(std::move(env)), ready_(std::move(ready)) {}

grpc::ServerUnaryReactor* OipService::ServerLive(grpc::CallbackServerContext* ctx,
                                                 const inference::ServerLiveRequest*,
                                                 inference::ServerLiveResponse* resp) {
  resp->set_live(true);
  return Answer(ctx, grpc::Status::OK);
}

grpc::ServerUnaryReactor* OipService::ServerReady(grpc::CallbackServerContext* ctx,
                                                  const inference::ServerReadyRequest*,
                                                  inference::ServerReadyResponse* resp) {
  resp->set_ready(ready_());
  return Answer(ctx, grpc::Status::OK);
}

grpc::ServerUnaryReactor* OipService::ModelReady(grpc::CallbackServerContext* ctx,
                                                 const inference::ModelReadyRequest* req,
                                                 inference::ModelReadyResponse* resp) {
  if (absl::Status st = CheckModelName(req->name(), model_); !st.ok())
    return Answer(ctx, ToGrpc(st));
  resp->set_ready(ready_());
  return Answer(ctx, grpc::Status::OK);
}

grpc::ServerUnaryReactor* OipService::ServerMetadata(grpc::CallbackServerContext* ctx,
                                                     const inference::ServerMetadataRequest*,
                                                     inference::ServerMetadataResponse* resp) {
  resp->set_name("sparsed");
  resp->set_version(SPARSED_VERSION);
  return Answer(ctx, grpc::Status::OK);
}

grpc::ServerUnaryReactor* OipService::ModelMetadata(grpc::CallbackServerContext* ctx,
                                                    const inference::ModelMetadataRequest* req,
                                                    inference::ModelMetadataResponse* resp) {
  if (absl::Status st = CheckModelName(req->name(), model_); !st.ok())
    return Answer(ctx, ToGrpc(st));
  DescribeModel(model_, resp);
  return Answer(ctx, grpc::Status::OK);
}

grpc::ServerUnaryReactor* OipService::ModelInfer(grpc::CallbackServerContext* ctx,
                                                 const inference::ModelInferRequest* req,
                                                 inference::ModelInferResponse* resp) {
  return new OipInfer(env_(), ctx, model_, req, resp, &stats_);
}

grpc::ServerBidiReactor<inference::ModelInferRequest, inference::ModelStreamInferResponse>*
OipService::ModelStreamInfer(grpc::CallbackServerContext* ctx) {
  return new OipStream(env_, ctx, model_, &stats_);
}

grpc::ServerUnaryReactor* OipService::ModelConfig(grpc::CallbackServerContext* ctx,
                                                  const inference::ModelConfigRequest* req,
                                                  inference::ModelConfigResponse* resp) {
  if (absl::Status st = CheckModel(req->name(), req->version(), model_); !st.ok())
    return Answer(ctx, ToGrpc(st));
  DescribeModelConfig(model_, resp->mutable_config());
  return Answer(ctx, grpc::Status::OK);
}

grpc::ServerUnaryReactor* OipService::ModelStatistics(grpc::CallbackServerContext* ctx,
                                                      const inference::ModelStatisticsRequest* req,
                                                      inference::ModelStatisticsResponse* resp) {
  const CallEnv env = env_();
  if (auto c = Authorize(env, *ctx, Role::kGenerate, "ModelStatistics"); !c.ok())
    return Answer(ctx, ToGrpc(c.status()));
  if (absl::Status st = CheckModel(req->name(), req->version(), model_); !st.ok())
    return Answer(ctx, ToGrpc(st));
  stats_.Fill(model_, resp->add_model_stats());
  return Answer(ctx, grpc::Status::OK);
}

}  // namespace sparsed::server
