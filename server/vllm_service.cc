#include "server/vllm_service.h"

#include <algorithm>
#include <filesystem>
#include <utility>
#include <vector>

#include "absl/time/clock.h"
#include "engine/common/dtype.h"
#include "server/call_state.h"
#include "server/convert.h"
#include "server/stream_pump.h"
#include "server/tsan_handoff.h"
#include "server/vllm_convert.h"
#include "server/wire.h"

namespace sparsed::server {
namespace {

namespace common_pb = ::smg::grpc::common;

constexpr size_t kTokenizerChunkBytes = 64 << 10;

// Streaming: a chunk per write with the tokens since the last one; at the end the last chunk and a
// `complete` that repeats its tokens (vLLM's own server does the same: the gateway accumulates
// the chunks). Not streaming: one `complete` with every token. A request that ends in an error
// gets no `complete`, only the call's status.
class VllmCodec {
 public:
  explicit VllmCodec(VllmReplyShape shape) : shape_(shape) {}

  void Encode(const v1::GenerateRequest& req, const std::vector<TokenEvent>& events,
              const StreamEnd* end, std::vector<grpc::ByteBuffer>* out) {
    const uint32_t prompt = static_cast<uint32_t>(req.prompt_token_ids().ids_size());
    if (shape_.stream) {
      ids_.Clear();
      lp_.Clear();
    }
    AppendTokens(events, shape_, &ids_, &lp_);
    if (shape_.stream && !ids_.empty()) {
      vllm_pb::GenerateResponse r;
      vllm_pb::GenerateStreamChunk* c = r.mutable_chunk();
      *c->mutable_token_ids() = ids_;
      c->set_prompt_tokens(prompt);
      c->set_completion_tokens(static_cast<uint32_t>(ids_.size()));
      if (shape_.logprobs >= 0) *c->mutable_output_logprobs() = lp_;
      SerializeResponse(r, &out->emplace_back());
    }
    if (end == nullptr || end->reason == FinishReason::kError) return;
    vllm_pb::GenerateResponse r;
    *r.mutable_complete() =
        MakeComplete(end->reason, end->stats, std::vector<uint32_t>(ids_.begin(), ids_.end()), lp_,
                     shape_.logprobs >= 0);
    SerializeResponse(r, &out->emplace_back());
  }

 private:
  const VllmReplyShape shape_;
  // Streaming: this Encode's tokens; otherwise all of them.
  google::protobuf::RepeatedField<uint32_t> ids_;
  vllm_pb::OutputLogProbs lp_;
};

// GetTokenizer: the bundle's bytes in chunks, one write at a time.
class TokenizerStream final : public grpc::ServerWriteReactor<common_pb::GetTokenizerChunk> {
 public:
  explicit TokenizerStream(const TokenizerBundle& b) : b_(b) { Next(); }
  void OnWriteDone(bool ok) override {
    TakeOver(this);
    if (!ok) {
      HandOff(this);
      return Finish(grpc::Status(grpc::StatusCode::CANCELLED, "the client went away"));
    }
    Next();
  }
  void OnDone() override {
    TakeOver(this);
    delete this;
  }

 private:
  void Next() {
    const size_t n = std::min(kTokenizerChunkBytes, b_.zip.size() - sent_);
    chunk_.set_data(b_.zip.substr(sent_, n));
    sent_ += n;
    HandOff(this);
    if (sent_ == b_.zip.size()) {
      chunk_.set_sha256(b_.sha256);
      return StartWriteAndFinish(&chunk_, grpc::WriteOptions(), grpc::Status::OK);
    }
    StartWrite(&chunk_);
  }

  const TokenizerBundle& b_;  // the service's, which outlives its calls
  size_t sent_ = 0;
  common_pb::GetTokenizerChunk chunk_;
};

}  // namespace

VllmService::VllmService(VllmServiceEnv env) : env_(std::move(env)), started_(absl::Now()) {}

grpc::ServerWriteReactor<grpc::ByteBuffer>* VllmService::Generate(grpc::CallbackServerContext* ctx,
                                                                  const grpc::ByteBuffer* request) {
  const CallEnv env = env_.env();
  vllm_pb::GenerateRequest in;
  absl::StatusOr<v1::GenerateRequest> req = absl::UnknownError("not converted");
  if (absl::Status st = ParseRequest(request, &in, "proto/smg/vllm_engine.proto"); !st.ok()) {
    req = st;
  } else if (env.loop != nullptr) {  // otherwise the call answers "loading" (CallState::Submit)
    req = FromVllm(in, env.loop->model());
  }
  return new StreamingGenerate<VllmCodec>(env, ctx, std::move(req), VllmCodec(ReplyShape(in)));
}

grpc::ServerUnaryReactor* VllmService::HealthCheck(grpc::CallbackServerContext* ctx,
                                                   const vllm_pb::HealthCheckRequest*,
                                                   vllm_pb::HealthCheckResponse* resp) {
  const CallEnv env = env_.env();
  const bool ready = env_.ready();
  resp->set_healthy(env.loop != nullptr && ready);
  if (env.loop == nullptr) {
    resp->set_message("the model is loading");
  } else if (env_.draining()) {
    resp->set_message("draining: finishing the requests in flight, taking no new ones");
  } else if (!ready) {
    resp->set_message("the engine is unhealthy (its steps fail)");
  } else {
    resp->set_message("serving");
  }
  return Answer(ctx, grpc::Status::OK);
}

grpc::ServerUnaryReactor* VllmService::Abort(grpc::CallbackServerContext* ctx,
                                             const vllm_pb::AbortRequest* req,
                                             vllm_pb::AbortResponse*) {
  const CallEnv env = env_.env();
  const absl::StatusOr<Caller> caller = Authorize(env, *ctx, Role::kGenerate, "Abort");
  if (!caller.ok()) return Answer(ctx, ToGrpc(caller.status()));
  if (req->request_ids_size() > 1024) {
    return Answer(ctx, grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                    "request_ids: at most 1024 ids per Abort"));
  }
  // A generate-role key cancels only its own requests; an admin key (or no keys) any. Unknown or
  // finished ids are not an error: the gateway aborts requests that may have just ended.
  if (env.loop != nullptr) {
    for (const std::string& id : req->request_ids()) {
      env.loop->CancelByRequestId(id, AbortScope(*caller));
    }
  }
  return Answer(ctx, grpc::Status::OK);
}

grpc::ServerUnaryReactor* VllmService::GetModelInfo(grpc::CallbackServerContext* ctx,
                                                    const vllm_pb::GetModelInfoRequest*,
                                                    vllm_pb::GetModelInfoResponse* r) {
  const CallEnv env = env_.env();
  if (auto c = Authorize(env, *ctx, Role::kGenerate, "GetModelInfo"); !c.ok())
    return Answer(ctx, ToGrpc(c.status()));
  if (env.loop == nullptr) return Answer(ctx, LoadingStatus());
  const ModelInfo& m = env.loop->model();
  const ModelConfig& c = m.config;
  r->set_model_path(env_.model_path);
  r->set_is_generation(true);
  r->set_max_context_length(static_cast<uint32_t>(m.context_tokens));
  r->set_vocab_size(static_cast<uint32_t>(c.vocab_size));
  r->set_supports_vision(false);
  r->set_served_model_name(env_.model_name);
  r->set_tokenizer_path(m.dir);
  r->set_model_type(c.model_type);
  if (!c.architecture.empty()) r->add_architectures(c.architecture);
  for (int32_t id : c.eos_token_ids) r->add_eos_token_ids(id);
  r->set_pad_token_id(0);
  r->set_bos_token_id(c.bos_token_id);
  r->set_max_req_input_len(static_cast<int32_t>(m.context_tokens - 1));
  return Answer(ctx, grpc::Status::OK);
}

grpc::ServerUnaryReactor* VllmService::GetServerInfo(grpc::CallbackServerContext* ctx,
                                                     const vllm_pb::GetServerInfoRequest*,
                                                     vllm_pb::GetServerInfoResponse* r) {
  const CallEnv env = env_.env();
  if (auto c = Authorize(env, *ctx, Role::kGenerate, "GetServerInfo"); !c.ok())
    return Answer(ctx, ToGrpc(c.status()));
  r->set_active_requests(env.loop != nullptr ? static_cast<uint32_t>(env.loop->Unfinished()) : 0);
  r->set_is_paused(env_.draining());
  r->set_uptime_seconds(absl::ToDoubleSeconds(absl::Now() - started_));
  r->set_server_type("sparsed");
  r->set_data_parallel_size(1);
  r->set_kv_cache_dtype(env_.kv_cache_dtype);
  r->set_max_num_seqs(env_.max_num_seqs);
  if (env.loop != nullptr) {
    r->set_model_dtype(std::string(DTypeName(env.loop->model().weight_dtype)));
    r->set_block_size(static_cast<int32_t>(env.loop->model().kv_block_tokens));
  }
  return Answer(ctx, grpc::Status::OK);
}

grpc::ServerUnaryReactor* VllmService::GetLoads(grpc::CallbackServerContext* ctx,
                                                const vllm_pb::GetLoadsRequest* req,
                                                vllm_pb::GetLoadsResponse* r) {
  const CallEnv env = env_.env();
  if (auto c = Authorize(env, *ctx, Role::kGenerate, "GetLoads"); !c.ok())
    return Answer(ctx, ToGrpc(c.status()));
  if (req->has_dp_rank() && req->dp_rank() != 0) {
    return Answer(ctx, grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                    "dp_rank: this server has one rank, 0"));
  }
  r->set_timestamp(absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", absl::Now(), absl::UTCTimeZone()));
  r->set_version(SPARSED_VERSION);
  r->set_dp_rank_count(1);
  vllm_pb::SchedulerLoad* l = r->add_loads();
  l->set_dp_rank(0);
  l->set_max_running_requests(env_.max_num_seqs);
  if (env.loop != nullptr) {
    const EngineLoop::Snapshot s = env.loop->Current();
    const ModelInfo& m = env.loop->model();
    l->set_num_running_reqs(s.running);
    l->set_num_waiting_reqs(s.waiting);
    l->set_num_total_reqs(s.running + s.waiting);
    l->set_num_used_tokens(static_cast<int32_t>(s.kv_blocks_used * m.kv_block_tokens));
    l->set_max_total_num_tokens(static_cast<int32_t>(m.kv_cache_tokens));
    l->set_token_usage(
        s.kv_blocks_total > 0 ? static_cast<double>(s.kv_blocks_used) / s.kv_blocks_total : 0.0);
    l->set_utilization(env_.max_num_seqs > 0
                           ? std::min(1.0, static_cast<double>(s.running) / env_.max_num_seqs)
                           : 0.0);
  }
  return Answer(ctx, grpc::Status::OK);
}

const absl::StatusOr<TokenizerBundle>& VllmService::Bundle(const std::string& dir) {
  std::call_once(bundle_once_, [&] { bundle_ = MakeTokenizerBundle(dir); });
  return bundle_;
}

grpc::ServerWriteReactor<common_pb::GetTokenizerChunk>* VllmService::GetTokenizer(
    grpc::CallbackServerContext* ctx, const common_pb::GetTokenizerRequest*) {
  const CallEnv env = env_.env();
  grpc::Status st = ToGrpc(Authorize(env, *ctx, Role::kGenerate, "GetTokenizer").status());
  const TokenizerBundle* bundle = nullptr;
  if (st.ok() && env.loop == nullptr) st = LoadingStatus();
  if (st.ok()) {
    const absl::StatusOr<TokenizerBundle>& b = Bundle(env.loop->model().dir);
    if (b.ok()) {
      bundle = &*b;
    } else {
      st = ToGrpc(b.status());
    }
  }
  if (bundle == nullptr) {
    class Refused final : public grpc::ServerWriteReactor<common_pb::GetTokenizerChunk> {
     public:
      explicit Refused(const grpc::Status& s) { Finish(s); }
      void OnDone() override { delete this; }
    };
    return new Refused(st);
  }
  return new TokenizerStream(*bundle);
}

}  // namespace sparsed::server
