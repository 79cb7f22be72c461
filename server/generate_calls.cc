#include "server/generate_calls.h"

#include <grpcpp/server_context.h>

#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "absl/time/clock.h"
#include "server/call_state.h"
#include "server/convert.h"
#include "server/stream_pump.h"
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

// sparsed.v1's stream: a message per write with the text (and ids, logprobs) that arrived since
// the last one; the last message also carries finish_reason, usage and timings.
class V1Codec {
 public:
  void Encode(const v1::GenerateRequest& req, const std::vector<TokenEvent>& events,
              const StreamEnd* end, std::vector<grpc::ByteBuffer>* out) {
    if (events.empty() && end == nullptr) return;
    v1::GenerateResponse msg;
    for (const TokenEvent& e : events) AppendEvent(e, req, &msg);
    if (end != nullptr) FillFinal(end->reason, end->stats, req, &msg);
    SerializeResponse(msg, &out->emplace_back());
  }
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
  return new StreamingGenerate<V1Codec>(env, ctx, ParseGenerateRequest(raw), V1Codec());
}

}  // namespace sparsed::server
