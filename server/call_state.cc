#include "server/call_state.h"

#include <utility>

#include "absl/time/clock.h"
#include "server/convert.h"

namespace sparsed::server {

grpc::Status FinalStatus(FinishReason reason, const absl::Status& status) {
  switch (reason) {
    case FinishReason::kLength:
    case FinishReason::kStop:
      return grpc::Status::OK;
    case FinishReason::kCancelled:
      return grpc::Status(grpc::StatusCode::CANCELLED, "request cancelled");
    case FinishReason::kDeadline:
      return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                          "deadline exceeded before generation finished");
    case FinishReason::kShutdown:
      return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                          "the server shut down; retry on another replica");
    case FinishReason::kError:
      break;
  }
  return ToGrpc(status.ok() ? absl::InternalError("generation failed") : status);
}

grpc::Status LoadingStatus() {
  return grpc::Status(grpc::StatusCode::UNAVAILABLE, "the model is loading; retry shortly");
}

absl::StatusOr<Caller> Authorize(const CallEnv& env, const grpc::CallbackServerContext& ctx,
                                 Role needed, absl::string_view what) {
  if (env.keys == nullptr) return Caller{};
  absl::StatusOr<Caller> c = env.keys->Authorize(ctx, needed, what);
  if (!c.ok() && env.log_refused) env.log_refused(ctx, c.status());
  return c;
}

grpc::ServerUnaryReactor* Answer(grpc::CallbackServerContext* ctx, const grpc::Status& st) {
  grpc::ServerUnaryReactor* r = ctx->DefaultReactor();
  r->Finish(st);
  return r;
}

CallState::CallState(const CallEnv& env, grpc::CallbackServerContext* ctx) : env_(env), ctx_(ctx) {
  env_.running->fetch_add(1);
}

CallState::~CallState() { env_.running->fetch_sub(1); }

grpc::Status CallState::Submit(absl::StatusOr<v1::GenerateRequest> req,
                               std::shared_ptr<TokenSink> sink) {
  if (env_.loop == nullptr) return LoadingStatus();
  absl::StatusOr<int64_t> id = absl::InternalError("not submitted");
  absl::StatusOr<Caller> caller = env_.keys != nullptr
                                      ? env_.keys->Authorize(*ctx_, Role::kGenerate, "generating")
                                      : absl::StatusOr<Caller>(Caller{});
  if (!caller.ok()) {
    id = caller.status();
  } else if (!req.ok()) {
    id = req.status();
  } else {
    req_ = *std::move(req);
    absl::StatusOr<Request> request = ToRequest(req_, env_.loop->model());
    if (!request.ok()) {
      id = request.status();
    } else {
      request->sink = std::move(sink);
      request->owner = caller->name;
      const auto deadline = ctx_->deadline();
      if (deadline != std::chrono::system_clock::time_point::max())
        request->deadline = absl::FromChrono(deadline);
      id = env_.loop->Submit(*std::move(request));
    }
  }
  if (!id.ok()) {
    env_.metrics->OnRejected();
    env_.log_refused(*ctx_, id.status());
    return ToGrpc(id.status());
  }
  int64_t cancel = 0;
  {
    MutexLock l(mu_);
    id_ = *id;
    if (cancel_wanted_) cancel = id_;
  }
  if (cancel != 0) env_.loop->Cancel(cancel);
  return grpc::Status::OK;
}

void CallState::Cancel() {
  int64_t id = 0;
  {
    MutexLock l(mu_);
    if (cancel_wanted_) return;
    cancel_wanted_ = true;
    id = id_;
  }
  if (id != 0) env_.loop->Cancel(id);
}

}  // namespace sparsed::server
