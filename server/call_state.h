// What every generating call shares, whatever protocol it speaks (sparsed.v1, the Open Inference
// Protocol): admission of a GenerateRequest into the engine loop, a cancellation that may arrive
// before the request has its id, the token timings on the way from the engine loop to the
// reactor, and the call's final status.
#pragma once

#include <grpcpp/server_context.h>
#include <grpcpp/support/status.h>

#include <memory>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "engine/common/mutex.h"
#include "scheduler/request.h"
#include "server/generate_calls.h"
#include "server/tsan_handoff.h"
#include "sparsed/v1/sparsed.pb.h"

namespace sparsed::server {

// The call's status for how its request ended.
grpc::Status FinalStatus(FinishReason reason, const absl::Status& status);

// UNAVAILABLE: the model is still loading (every service's answer until the engine is attached).
grpc::Status LoadingStatus();

// The caller of `ctx` when its API key has `needed` (no keys in `env`: an anonymous admin); a
// refusal (UNAUTHENTICATED, PERMISSION_DENIED) is logged through env.log_refused.
absl::StatusOr<Caller> Authorize(const CallEnv& env, const grpc::CallbackServerContext& ctx,
                                 Role needed, absl::string_view what);

// A unary call answered at once, with `st`, by gRPC's default reactor.
grpc::ServerUnaryReactor* Answer(grpc::CallbackServerContext* ctx, const grpc::Status& st);

// Hands the engine loop's events to a reactor (Target: Tokens(e), Finished(reason, status, st)),
// observing the token timings on the way. Held by the engine loop until OnFinish; the reactor
// outlives it because a reactor ends its call only from Finished, as its last action, or before
// the request was admitted.
template <class Target>
class ForwardingSink final : public TokenSink {
 public:
  ForwardingSink(Target* target, Metrics* metrics, absl::Time submitted)
      : target_(target), metrics_(metrics), submitted_(submitted) {}
  void OnTokens(const TokenEvent& e) override {
    if (!e.token_ids.empty()) {
      const absl::Time now = absl::Now();
      if (last_token_ != absl::InfinitePast()) {
        metrics_->OnInterToken(absl::ToDoubleSeconds(now - last_token_));
      } else {
        metrics_->OnFirstToken(absl::ToDoubleSeconds(now - submitted_));
      }
      last_token_ = now;
    }
    target_->Tokens(e);
  }
  void OnFinish(FinishReason reason, const absl::Status& status, const RequestStats& st) override {
    metrics_->OnFinished(reason, st);
    target_->Finished(reason, status, st);
  }

 private:
  Target* const target_;
  Metrics* const metrics_;
  const absl::Time submitted_;
  absl::Time last_token_ = absl::InfinitePast();  // engine-loop thread only
};

// One request's admission and cancellation. Counts itself in env.running while it lives.
class CallState {
 public:
  CallState(const CallEnv& env, grpc::CallbackServerContext* ctx);
  ~CallState();
  CallState(const CallState&) = delete;
  CallState& operator=(const CallState&) = delete;

  // Validates `req` (or takes its error), converts and submits it with `sink`; a non-OK status
  // (counted and logged as a refusal) ends the call at once.
  grpc::Status Submit(absl::StatusOr<v1::GenerateRequest> req, std::shared_ptr<TokenSink> sink);
  // Cancels the request, now or as soon as it has its id. Idempotent.
  void Cancel();

  const v1::GenerateRequest& request() const { return req_; }
  const CallEnv& env() const { return env_; }
  grpc::CallbackServerContext* ctx() const { return ctx_; }

 private:
  const CallEnv env_;
  grpc::CallbackServerContext* const ctx_;
  v1::GenerateRequest req_;  // set by Submit before the request is handed over; read-only after
  Mutex mu_;
  int64_t id_ ABSL_GUARDED_BY(mu_) = 0;
  bool cancel_wanted_ ABSL_GUARDED_BY(mu_) = false;
};

// The part every generating reactor shares (GrpcReactor: grpc::ServerUnaryReactor or
// grpc::ServerWriteReactor<...>): its request's CallState, cancellation, and deleting itself when
// gRPC is done with it.
template <class GrpcReactor>
class GeneratingReactor : public GrpcReactor {
 public:
  GeneratingReactor(const CallEnv& env, grpc::CallbackServerContext* ctx) : call_(env, ctx) {}
  void OnCancel() override {
    TakeOver(this);
    call_.Cancel();
  }
  void OnDone() override {
    TakeOver(this);
    delete this;
  }

 protected:
  // Submits `req` with a sink that forwards the engine loop's events to `self` (the derived
  // reactor: Tokens, Finished); finishes the call at once when the request is refused.
  template <class Self>
  void Admit(Self* self, absl::StatusOr<v1::GenerateRequest> req) {
    const grpc::Status st = call_.Submit(
        std::move(req),
        std::make_shared<ForwardingSink<Self>>(self, call_.env().metrics, absl::Now()));
    HandOff(this);
    if (!st.ok()) this->Finish(st);
  }

  CallState call_;
};

}  // namespace sparsed::server
