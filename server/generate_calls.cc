#include "server/generate_calls.h"

#include <grpcpp/server_context.h>

#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "absl/time/clock.h"
#include "server/call_state.h"
#include "server/convert.h"
#include "server/tsan_handoff.h"
#include "server/wire.h"
#include "sparsed/v1/sparsed.pb.h"

namespace sparsed::server {
namespace {

void AppendEvent(const TokenEvent& e, const v1::GenerateRequest& req, v1::GenerateResponse* r) {
  r->mutable_text()->append(e.text);
  if (req.options().include_token_ids()) {
    for (int32_t id : e.token_ids) r->add_token_ids(id);
  }
  if (req.options().logprobs() > 0) {
    for (size_t i = 0; i < e.token_ids.size(); ++i) {
      v1::TokenLogprob* lp = r->add_logprobs();
      lp->set_token_id(e.token_ids[i]);
      if (i < e.logprobs.size()) lp->set_logprob(e.logprobs[i]);
      if (i < e.top_logprobs.size()) {
        for (const auto& [id, logprob] : e.top_logprobs[i]) {
          v1::TopLogprob* t = lp->add_top();
          t->set_token_id(id);
          t->set_logprob(logprob);
        }
      }
    }
  }
}

absl::StatusOr<v1::GenerateRequest> ParseGenerateRequest(const grpc::ByteBuffer* raw) {
  v1::GenerateRequest req;
  if (absl::Status st = ParseRequest(raw, &req); !st.ok()) return st;
  return req;
}

void FillFinal(FinishReason reason, const RequestStats& st, const v1::GenerateRequest& req,
               v1::GenerateResponse* r) {
  r->set_finish_reason(ToProto(reason));
  r->mutable_usage()->set_prompt_tokens(static_cast<uint32_t>(st.prompt_tokens));
  r->mutable_usage()->set_generated_tokens(static_cast<uint32_t>(st.generated_tokens));
  r->mutable_usage()->set_cached_prompt_tokens(static_cast<uint32_t>(st.cached_prompt_tokens));
  r->mutable_timings()->set_queue_seconds(absl::ToDoubleSeconds(st.queue_time));
  r->mutable_timings()->set_first_token_seconds(absl::ToDoubleSeconds(st.time_to_first_token));
  r->mutable_timings()->set_total_seconds(absl::ToDoubleSeconds(st.total_time));
  if (req.options().sparsity_stats()) {
    r->mutable_sparsity()->set_mean_active_ratio(st.mean_active_ratio);
    r->mutable_sparsity()->set_mean_union_ratio(st.mean_union_ratio);
  }
  r->set_request_id(req.request_id());
}

class UnaryGenerate final : public GeneratingReactor<grpc::ServerUnaryReactor> {
 public:
  UnaryGenerate(const CallEnv& env, grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* raw,
                grpc::ByteBuffer* response)
      : GeneratingReactor(env, ctx), response_(response) {
    Admit(this, ParseGenerateRequest(raw));
  }

  // Engine-loop thread.
  void Tokens(const TokenEvent& e) { AppendEvent(e, call_.request(), &resp_); }
  void Finished(FinishReason reason, const absl::Status& status, const RequestStats& st) {
    const grpc::Status result = FinalStatus(reason, status);
    if (result.ok()) {
      FillFinal(reason, st, call_.request(), &resp_);
      SerializeResponse(resp_, response_);
    }
    HandOff(this);
    Finish(result);  // last: gRPC may delete this reactor from here on
  }

 private:
  grpc::ByteBuffer* const response_;
  v1::GenerateResponse resp_;  // engine-loop thread only
};

// Writes one message per completed write: whatever tokens arrived meanwhile are merged, so a slow
// reader gets fewer, larger messages. A reader that takes no write for stream_write_timeout while
// tokens wait, or lets stream_max_pending_tokens pile up, is cancelled (its KV blocks freed).
class StreamGenerate final : public GeneratingReactor<grpc::ServerWriteReactor<grpc::ByteBuffer>> {
 public:
  StreamGenerate(const CallEnv& env, grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* raw)
      : GeneratingReactor(env, ctx) {
    Admit(this, ParseGenerateRequest(raw));
  }
  void OnWriteDone(bool ok) override {
    TakeOver(this);
    std::unique_lock<std::mutex> l(mu_);
    writing_ = false;
    if (!ok) write_failed_ = true;
    if (!ok && !finished_) {
      l.unlock();
      call_.Cancel();  // the engine then finishes the request, and Finished ends the call
      return;
    }
    Pump(l);
  }

  // Engine-loop thread.
  void Tokens(const TokenEvent& e) {
    std::unique_lock<std::mutex> l(mu_);
    pending_.push_back(e);
    pending_tokens_ += static_cast<int64_t>(e.token_ids.size());
    if (writing_ && !stalled_ &&
        (pending_tokens_ > call_.env().stream_max_pending_tokens ||
         absl::Now() - write_started_ > call_.env().stream_write_timeout)) {
      stalled_ = true;
      const int64_t pending = pending_tokens_;
      l.unlock();
      call_.env().log_stalled(*call_.ctx(), pending);
      call_.Cancel();
      // Also end the write the client is not taking, so the call can finish.
      call_.ctx()->TryCancel();
      return;
    }
    Pump(l);
  }
  void Finished(FinishReason reason, const absl::Status& status, const RequestStats& st) {
    std::unique_lock<std::mutex> l(mu_);
    finished_ = true;
    reason_ = reason;
    stats_ = st;
    status_ = FinalStatus(reason, status);
    Pump(l);  // last: may end the call
  }

 private:
  // Starts the next write, or ends the call once everything is written; called with `l` held,
  // returns with it released. Ending the call is the last thing it does.
  void Pump(std::unique_lock<std::mutex>& l) {
    if (writing_ || done_) return l.unlock();
    if (write_failed_) {
      if (!finished_) return l.unlock();  // Finished will end it
      done_ = true;
      const grpc::Status st = status_;
      l.unlock();
      HandOff(this);
      return Finish(st);
    }
    if (pending_.empty() && !finished_) return l.unlock();
    v1::GenerateResponse msg;
    for (const TokenEvent& e : pending_) AppendEvent(e, call_.request(), &msg);
    pending_.clear();
    pending_tokens_ = 0;
    if (finished_) FillFinal(reason_, stats_, call_.request(), &msg);
    SerializeResponse(msg, &out_);  // no write is in flight: out_ is free
    if (finished_) {
      done_ = true;
      const grpc::Status st = status_;
      l.unlock();
      HandOff(this);
      return StartWriteAndFinish(&out_, grpc::WriteOptions(), st);
    }
    writing_ = true;
    write_started_ = absl::Now();
    l.unlock();
    HandOff(this);
    StartWrite(&out_);
  }

  std::mutex mu_;  // guards everything below
  std::vector<TokenEvent> pending_;
  int64_t pending_tokens_ = 0;
  bool writing_ = false, write_failed_ = false, stalled_ = false;
  bool finished_ = false, done_ = false;
  absl::Time write_started_ = absl::InfinitePast();
  FinishReason reason_ = FinishReason::kError;
  RequestStats stats_;
  grpc::Status status_;
  grpc::ByteBuffer out_;  // the message in flight
};

}  // namespace

grpc::ServerUnaryReactor* StartUnaryGenerate(const CallEnv& env, grpc::CallbackServerContext* ctx,
                                             const grpc::ByteBuffer* raw,
                                             grpc::ByteBuffer* response) {
  return new UnaryGenerate(env, ctx, raw, response);
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* StartStreamGenerate(const CallEnv& env,
                                                                grpc::CallbackServerContext* ctx,
                                                                const grpc::ByteBuffer* raw) {
  return new StreamGenerate(env, ctx, raw);
}

}  // namespace sparsed::server
