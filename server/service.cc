#include "server/service.h"

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/convert.h"

namespace sparsed::server {
namespace {

// Collects a request's events from the engine thread for its gRPC handler thread.
class QueueSink : public TokenSink {
 public:
  QueueSink(Metrics* metrics, absl::Time submitted) : metrics_(metrics), submitted_(submitted) {}

  void OnTokens(const TokenEvent& e) override {
    const absl::Time now = absl::Now();
    std::lock_guard<std::mutex> l(mu_);
    if (!e.token_ids.empty()) {
      if (last_token_ != absl::InfinitePast()) {
        metrics_->OnInterToken(absl::ToDoubleSeconds(now - last_token_));
      } else {
        metrics_->OnFirstToken(absl::ToDoubleSeconds(now - submitted_));
      }
      last_token_ = now;
    }
    events_.push_back(e);
    cv_.notify_all();
  }
  void OnFinish(FinishReason reason, const absl::Status& status, const RequestStats& st) override {
    metrics_->OnFinished(reason, st);
    std::lock_guard<std::mutex> l(mu_);
    finished_ = true;
    reason_ = reason;
    status_ = status;
    stats_ = st;
    cv_.notify_all();
  }
  // Waits up to `timeout` for events or the finish; moves pending events into `out`.
  // Returns true once finished and drained.
  bool Wait(absl::Duration timeout, std::vector<TokenEvent>* out) {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait_for(l, absl::ToChronoMilliseconds(timeout),
                 [this] { return finished_ || !events_.empty(); });
    out->insert(out->end(), events_.begin(), events_.end());
    events_.clear();
    return finished_;
  }
  FinishReason reason() const {
    std::lock_guard<std::mutex> l(mu_);
    return reason_;
  }
  absl::Status status() const {
    std::lock_guard<std::mutex> l(mu_);
    return status_;
  }
  RequestStats stats() const {
    std::lock_guard<std::mutex> l(mu_);
    return stats_;
  }

 private:
  Metrics* metrics_;
  const absl::Time submitted_;
  mutable std::mutex
      mu_;  // std::mutex: visible to ThreadSanitizer (Debian's Abseil is not instrumented)
  std::condition_variable cv_;
  std::deque<TokenEvent> events_;
  bool finished_ = false;
  FinishReason reason_ = FinishReason::kError;
  absl::Status status_;
  RequestStats stats_;
  absl::Time last_token_ = absl::InfinitePast();
};

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

void FillFinal(const QueueSink& sink, const v1::GenerateRequest& req, v1::GenerateResponse* r) {
  const RequestStats st = sink.stats();
  r->set_finish_reason(ToProto(sink.reason()));
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

}  // namespace

const grpc::Status kLoading(grpc::StatusCode::UNAVAILABLE, "the model is loading; retry shortly");

SparsedService::SparsedService(std::string model_dir, std::string device, LogLevel log_level)
    : model_dir_(std::move(model_dir)), device_(std::move(device)), log_(log_level) {}

void SparsedService::LogRefused(const grpc::ServerContext& ctx, const absl::Status& why) {
  int64_t also = 0;
  {
    std::lock_guard<std::mutex> l(refused_mu_);
    const absl::Time now = absl::Now();
    if (now - refused_logged_ < absl::Seconds(1)) {
      ++refused_unlogged_;
      return;
    }
    refused_logged_ = now;
    also = refused_unlogged_;
    refused_unlogged_ = 0;
  }
  log_.Log(LogLevel::kWarn, "request refused",
           absl::StrCat("code=", absl::StatusCodeToString(why.code()), " peer=", Quote(ctx.peer()),
                        " error=", Quote(why.message().substr(0, 300)),
                        " refused_since_last_line=", also));
}

void SparsedService::Attach(EngineLoop* loop, Metrics* metrics) {
  metrics_.store(metrics);
  loop_.store(loop);
}

grpc::Status SparsedService::Run(grpc::ServerContext* ctx, const v1::GenerateRequest& req,
                                 grpc::ServerWriter<v1::GenerateResponse>* writer,
                                 v1::GenerateResponse* unary) {
  const absl::Time received = absl::Now();
  running_.fetch_add(1);
  struct Done {
    std::atomic<int>* n;
    ~Done() { n->fetch_sub(1); }
  } done{&running_};
  EngineLoop* loop = loop_.load();
  Metrics* metrics = metrics_.load();
  if (loop == nullptr) return kLoading;
  auto request = ToRequest(req, loop->engine());
  if (!request.ok()) {
    metrics->OnRejected();
    LogRefused(*ctx, request.status());
    return ToGrpc(request.status());
  }
  auto sink = std::make_shared<QueueSink>(metrics, received);
  request->sink = sink;
  const auto deadline = ctx->deadline();
  if (deadline != std::chrono::system_clock::time_point::max())
    request->deadline = absl::FromChrono(deadline);
  auto id = loop->Submit(*std::move(request));
  if (!id.ok()) {
    metrics->OnRejected();
    LogRefused(*ctx, id.status());
    return ToGrpc(id.status());
  }
  bool cancel_sent = false, write_failed = false;
  std::vector<TokenEvent> events;
  for (;;) {
    events.clear();
    const bool finished = sink->Wait(absl::Milliseconds(20), &events);
    if (writer != nullptr && !events.empty() && !write_failed) {
      v1::GenerateResponse delta;
      for (const TokenEvent& e : events) AppendEvent(e, req, &delta);
      if (!finished && !writer->Write(delta)) write_failed = true;
      if (finished) {
        FillFinal(*sink, req, &delta);
        if (!writer->Write(delta)) write_failed = true;
      }
    } else if (unary != nullptr) {
      for (const TokenEvent& e : events) AppendEvent(e, req, unary);
    }
    if (finished) {
      if (writer != nullptr && events.empty() && !write_failed) {
        v1::GenerateResponse last;
        FillFinal(*sink, req, &last);
        writer->Write(last);
      }
      break;
    }
    if (!cancel_sent && (ctx->IsCancelled() || write_failed)) {
      loop->Cancel(*id);
      cancel_sent = true;
    }
  }
  switch (sink->reason()) {
    case FinishReason::kLength:
    case FinishReason::kStop:
      if (unary != nullptr) FillFinal(*sink, req, unary);
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
      return ToGrpc(sink->status().ok() ? absl::InternalError("generation failed")
                                        : sink->status());
  }
  return grpc::Status::OK;
}

grpc::Status SparsedService::Generate(grpc::ServerContext* ctx, const v1::GenerateRequest* req,
                                      v1::GenerateResponse* resp) {
  return Run(ctx, *req, nullptr, resp);
}

grpc::Status SparsedService::GenerateStream(grpc::ServerContext* ctx,
                                            const v1::GenerateRequest* req,
                                            grpc::ServerWriter<v1::GenerateResponse>* writer) {
  return Run(ctx, *req, writer, nullptr);
}

grpc::Status SparsedService::GetModelInfo(grpc::ServerContext*, const v1::GetModelInfoRequest*,
                                          v1::ModelInfo* r) {
  if (loop_.load() == nullptr) return kLoading;
  const Engine& e = loop_.load()->engine();
  const ModelConfig& c = e.config();
  r->set_model_dir(model_dir_);
  r->set_architecture(c.architecture);
  r->set_model_type(c.model_type);
  r->set_activation(std::string(ActivationName(c.activation)));
  r->set_sparsity_mode(std::string(SparsityModeName(e.sparsity_mode())));
  r->set_num_layers(static_cast<uint32_t>(c.num_layers));
  r->set_hidden_size(static_cast<uint32_t>(c.hidden_size));
  r->set_intermediate_size(static_cast<uint32_t>(c.intermediate_size));
  r->set_num_attention_heads(static_cast<uint32_t>(c.num_heads));
  r->set_num_key_value_heads(static_cast<uint32_t>(c.num_kv_heads));
  r->set_vocab_size(static_cast<uint32_t>(c.vocab_size));
  r->set_context_length(static_cast<uint32_t>(c.max_position_embeddings));
  r->set_dtype(std::string(DTypeName(e.weights().embed.dtype)));
  r->set_device(device_);
  r->set_kv_cache_tokens(static_cast<uint32_t>(e.kv_blocks() * e.kv_block_size()));
  return grpc::Status::OK;
}

grpc::Status SparsedService::Tokenize(grpc::ServerContext*, const v1::TokenizeRequest* req,
                                      v1::TokenizeResponse* r) {
  if (loop_.load() == nullptr) return kLoading;
  const Engine& e = loop_.load()->engine();
  if (e.tokenizer() == nullptr)
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "the model has no tokenizer");
  if (absl::Status st = CheckTextBytes("text", req->text().size(), e); !st.ok()) {
    return ToGrpc(st);
  }
  auto ids = e.tokenizer()->Encode(req->text());
  if (!ids.ok()) return ToGrpc(ids.status());
  if (req->add_bos()) r->add_token_ids(e.config().bos_token_id);
  for (int32_t id : *ids) r->add_token_ids(id);
  return grpc::Status::OK;
}

}  // namespace sparsed::server
