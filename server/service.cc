#include "server/service.h"

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/call_state.h"
#include "server/convert.h"
#include "server/wire.h"

namespace sparsed::server {

SparsedService::SparsedService(std::string model_dir, std::string device, LogLevel log_level,
                               StreamLimits limits, std::string model_name, const KeyStore* keys)
    : model_dir_(std::move(model_dir)),
      model_name_(std::move(model_name)),
      device_(std::move(device)),
      log_(log_level),
      limits_(limits),
      keys_(keys) {}

absl::StatusOr<Caller> SparsedService::Authorize(const grpc::CallbackServerContext& ctx,
                                                 Role needed, absl::string_view what) {
  return server::Authorize(Env(), ctx, needed, what);
}

int64_t SparsedService::RateLimitedLog::Take() {
  MutexLock l(mu_);
  const absl::Time now = absl::Now();
  if (now - last_ < absl::Seconds(1)) {
    ++suppressed_;
    return -1;
  }
  last_ = now;
  const int64_t n = suppressed_;
  suppressed_ = 0;
  return n;
}

void SparsedService::LogRefused(const grpc::CallbackServerContext& ctx, const absl::Status& why) {
  const int64_t also = refused_log_.Take();
  if (also < 0) return;
  log_.Log(LogLevel::kWarn, "request refused",
           absl::StrCat("code=", absl::StatusCodeToString(why.code()), " peer=", Quote(ctx.peer()),
                        " error=", Quote(why.message().substr(0, 300)),
                        " refused_since_last_line=", also));
}

void SparsedService::LogStalled(const grpc::CallbackServerContext& ctx, int64_t pending_tokens) {
  const int64_t also = stalled_log_.Take();
  if (also < 0) return;
  log_.Log(LogLevel::kWarn, "stream cancelled: the client stopped reading",
           absl::StrCat("peer=", Quote(ctx.peer()), " pending_tokens=", pending_tokens,
                        " write_timeout_s=", absl::ToDoubleSeconds(limits_.write_timeout),
                        " max_pending_tokens=", limits_.max_pending_tokens,
                        " stalled_since_last_line=", also));
}

void SparsedService::Attach(EngineLoop* loop, Metrics* metrics) {
  metrics_.store(metrics);
  loop_.store(loop);
}

CallEnv SparsedService::Env() {
  CallEnv env;
  env.loop = loop_.load();
  env.metrics = metrics_.load();
  env.running = &running_;
  env.log_refused = [this](const grpc::CallbackServerContext& ctx, const absl::Status& why) {
    LogRefused(ctx, why);
  };
  env.log_stalled = [this](const grpc::CallbackServerContext& ctx, int64_t pending) {
    LogStalled(ctx, pending);
  };
  env.stream_write_timeout = limits_.write_timeout;
  env.stream_max_pending_tokens = limits_.max_pending_tokens;
  env.keys = keys_;
  return env;
}

grpc::ServerUnaryReactor* SparsedService::Generate(grpc::CallbackServerContext* ctx,
                                                   const grpc::ByteBuffer* request,
                                                   grpc::ByteBuffer* response) {
  return StartUnaryGenerate(Env(), ctx, request, response);
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* SparsedService::GenerateStream(
    grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* request) {
  return StartStreamGenerate(Env(), ctx, request);
}

grpc::ServerUnaryReactor* SparsedService::GetModelInfo(grpc::CallbackServerContext* ctx,
                                                       const grpc::ByteBuffer* request,
                                                       grpc::ByteBuffer* response) {
  if (auto c = Authorize(*ctx, Role::kGenerate, "GetModelInfo"); !c.ok())
    return Answer(ctx, ToGrpc(c.status()));
  v1::GetModelInfoRequest req;
  if (absl::Status st = ParseRequest(request, &req); !st.ok()) return Answer(ctx, ToGrpc(st));
  if (loop_.load() == nullptr) return Answer(ctx, LoadingStatus());
  const ModelInfo& e = loop_.load()->model();
  v1::ModelInfo info;
  v1::ModelInfo* r = &info;
  const ModelConfig& c = e.config;
  r->set_model_dir(model_dir_);
  r->set_architecture(c.architecture);
  r->set_model_type(c.model_type);
  r->set_activation(std::string(ActivationName(c.activation)));
  r->set_sparsity_mode(std::string(SparsityModeName(e.sparsity_mode)));
  r->set_num_layers(static_cast<uint32_t>(c.num_layers));
  r->set_hidden_size(static_cast<uint32_t>(c.hidden_size));
  r->set_intermediate_size(static_cast<uint32_t>(c.intermediate_size));
  r->set_num_attention_heads(static_cast<uint32_t>(c.num_heads));
  r->set_num_key_value_heads(static_cast<uint32_t>(c.num_kv_heads));
  r->set_vocab_size(static_cast<uint32_t>(c.vocab_size));
  r->set_context_length(static_cast<uint32_t>(c.max_position_embeddings));
  r->set_dtype(std::string(DTypeName(e.weight_dtype)));
  r->set_device(device_);
  r->set_kv_cache_tokens(static_cast<uint32_t>(e.kv_cache_tokens));
  SerializeResponse(info, response);
  return Answer(ctx, grpc::Status::OK);
}

grpc::ServerUnaryReactor* SparsedService::Tokenize(grpc::CallbackServerContext* ctx,
                                                   const grpc::ByteBuffer* request,
                                                   grpc::ByteBuffer* response) {
  if (auto c = Authorize(*ctx, Role::kGenerate, "Tokenize"); !c.ok())
    return Answer(ctx, ToGrpc(c.status()));
  v1::TokenizeRequest req;
  if (absl::Status st = ParseRequest(request, &req); !st.ok()) return Answer(ctx, ToGrpc(st));
  if (loop_.load() == nullptr) return Answer(ctx, LoadingStatus());
  const ModelInfo& e = loop_.load()->model();
  if (e.tokenizer == nullptr) {
    return Answer(
        ctx, grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "the model has no tokenizer"));
  }
  if (absl::Status st = CheckTextBytes("text", req.text().size(), e); !st.ok()) {
    return Answer(ctx, ToGrpc(st));
  }
  auto ids = e.tokenizer->Encode(req.text());
  if (!ids.ok()) return Answer(ctx, ToGrpc(ids.status()));
  v1::TokenizeResponse r;
  if (req.add_bos()) r.add_token_ids(e.config.bos_token_id);
  for (int32_t id : *ids) r.add_token_ids(id);
  SerializeResponse(r, response);
  return Answer(ctx, grpc::Status::OK);
}

grpc::ServerUnaryReactor* SparsedService::Abort(grpc::CallbackServerContext* ctx,
                                                const grpc::ByteBuffer* request,
                                                grpc::ByteBuffer* response) {
  const absl::StatusOr<Caller> caller = Authorize(*ctx, Role::kGenerate, "Abort");
  if (!caller.ok()) return Answer(ctx, ToGrpc(caller.status()));
  v1::AbortRequest req;
  if (absl::Status st = ParseRequest(request, &req); !st.ok()) return Answer(ctx, ToGrpc(st));
  if (req.request_id().empty()) {
    return Answer(ctx, grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                    "request_id is empty: give the id the request was sent with"));
  }
  EngineLoop* loop = loop_.load();
  // A generate-role key cancels only its own requests; an admin key (or no keys) any.
  const int n =
      loop == nullptr ? 0 : loop->CancelByRequestId(req.request_id(), AbortScope(*caller));
  if (n == 0) {
    return Answer(ctx, grpc::Status(grpc::StatusCode::NOT_FOUND,
                                    "no queued or running request has request_id '" +
                                        req.request_id().substr(0, 200) + "'"));
  }
  v1::AbortResponse r;
  r.set_aborted(static_cast<uint32_t>(n));
  SerializeResponse(r, response);
  return Answer(ctx, grpc::Status::OK);
}

grpc::ServerUnaryReactor* SparsedService::GetServerLoad(grpc::CallbackServerContext* ctx,
                                                        const grpc::ByteBuffer* request,
                                                        grpc::ByteBuffer* response) {
  if (auto c = Authorize(*ctx, Role::kAdmin, "GetServerLoad"); !c.ok())
    return Answer(ctx, ToGrpc(c.status()));
  v1::GetServerLoadRequest req;
  if (absl::Status st = ParseRequest(request, &req); !st.ok()) return Answer(ctx, ToGrpc(st));
  v1::ServerLoad r;
  r.set_model_name(model_name_);
  r.set_ready(ready_.load());
  r.set_draining(draining_.load());
  if (EngineLoop* loop = loop_.load()) {
    // The queue as it is now, not as the last step left it (EngineLoop::Current).
    const EngineLoop::Snapshot s = loop->Current();
    r.set_running_sequences(static_cast<uint32_t>(s.running));
    r.set_waiting_sequences(static_cast<uint32_t>(s.waiting));
    r.set_max_waiting_requests(static_cast<uint32_t>(loop->max_waiting_requests()));
    r.set_kv_blocks_used(static_cast<uint32_t>(s.kv_blocks_used));
    r.set_kv_blocks_cached(static_cast<uint32_t>(s.kv_blocks_cached));
    r.set_kv_blocks_capacity(static_cast<uint32_t>(s.kv_blocks_total));
    r.set_engine_healthy(s.engine_healthy);
  }
  SerializeResponse(r, response);
  return Answer(ctx, grpc::Status::OK);
}

}  // namespace sparsed::server
