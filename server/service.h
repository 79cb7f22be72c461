// The sparsed.v1.Sparsed gRPC service over the engine loop, on gRPC's callback API: no thread is
// held by a call while its request waits or generates (server/generate_calls.h).
#pragma once

#include <atomic>
#include <string>

#include "absl/time/time.h"
#include "engine/common/mutex.h"
#include "scheduler/engine_loop.h"
#include "server/auth.h"
#include "server/generate_calls.h"
#include "server/log.h"
#include "server/metrics.h"
#include "sparsed/v1/sparsed.grpc.pb.h"

namespace sparsed::server {

// Every method takes its request as bytes, so that one that does not parse is answered
// INVALID_ARGUMENT with a message.
using RawSparsedService =
    v1::Sparsed::WithRawCallbackMethod_Generate<v1::Sparsed::WithRawCallbackMethod_GenerateStream<
        v1::Sparsed::WithRawCallbackMethod_GetModelInfo<
            v1::Sparsed::WithRawCallbackMethod_Tokenize<v1::Sparsed::WithRawCallbackMethod_Abort<
                v1::Sparsed::WithRawCallbackMethod_GetServerLoad<v1::Sparsed::Service>>>>>>;

struct StreamLimits {
  absl::Duration write_timeout = absl::Seconds(60);
  int64_t max_pending_tokens = 4096;
};

// Thread-safety: gRPC calls the methods from its threads; Attach once, before serving.
class SparsedService final : public RawSparsedService {
 public:
  // The service answers UNAVAILABLE ("model is loading") until Attach(). Refused requests and
  // stalled streams are logged (warn) at most once a second each, with the number since.
  SparsedService(std::string model_dir, std::string device, LogLevel log_level = LogLevel::kInfo,
                 StreamLimits limits = {}, std::string model_name = "",
                 const KeyStore* keys = nullptr);
  // The daemon's state as its owner sets it (health SERVING; draining), which GetServerLoad
  // reports and the Open Inference Protocol's readiness answers with.
  void SetReady(bool ready) { ready_.store(ready); }
  void SetDraining(bool draining) { draining_.store(draining); }
  bool ready() const { return ready_.load(); }
  bool draining() const { return draining_.load(); }
  // `loop` and `metrics` must outlive the service's calls. Called once, after the model loads.
  void Attach(EngineLoop* loop, Metrics* metrics);
  // Generating calls not done yet (of this service and of OipService, which shares Env()).
  int running() const { return running_.load(); }
  // What a generating call runs with; loop null while the model loads.
  CallEnv Env();

  grpc::ServerUnaryReactor* Generate(grpc::CallbackServerContext* ctx,
                                     const grpc::ByteBuffer* request,
                                     grpc::ByteBuffer* response) override;
  grpc::ServerWriteReactor<grpc::ByteBuffer>* GenerateStream(
      grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* request) override;
  grpc::ServerUnaryReactor* GetModelInfo(grpc::CallbackServerContext* ctx,
                                         const grpc::ByteBuffer* request,
                                         grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* Tokenize(grpc::CallbackServerContext* ctx,
                                     const grpc::ByteBuffer* request,
                                     grpc::ByteBuffer* response) override;
  // With API keys, a generate-role key aborts only the requests it started (admin: any); a
  // request that is not the caller's is NOT_FOUND, like one that does not exist.
  grpc::ServerUnaryReactor* Abort(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* request,
                                  grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* GetServerLoad(grpc::CallbackServerContext* ctx,
                                          const grpc::ByteBuffer* request,
                                          grpc::ByteBuffer* response) override;

 private:
  // At most one line a second per kind; a client cannot fill the log.
  class RateLimitedLog {
   public:
    // Returns how many were suppressed since the last line, or -1 to suppress this one.
    int64_t Take();

   private:
    Mutex mu_;
    absl::Time last_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
    int64_t suppressed_ ABSL_GUARDED_BY(mu_) = 0;
  };
  void LogRefused(const grpc::CallbackServerContext& ctx, const absl::Status& why);
  // The caller when its API key has `needed` (logged as refused otherwise); no keys: allowed.
  absl::StatusOr<Caller> Authorize(const grpc::CallbackServerContext& ctx, Role needed,
                                   absl::string_view what);
  void LogStalled(const grpc::CallbackServerContext& ctx, int64_t pending_tokens);

  // Set once by Attach(); read by gRPC threads.
  std::atomic<EngineLoop*> loop_{nullptr};
  std::atomic<Metrics*> metrics_{nullptr};
  std::atomic<int> running_{0};
  std::atomic<bool> ready_{false}, draining_{false};
  const std::string model_dir_;
  const std::string model_name_;
  const std::string device_;
  const Logger log_;
  const StreamLimits limits_;
  const KeyStore* const keys_;  // null: every call allowed (auth.h)
  RateLimitedLog refused_log_, stalled_log_;
};

}  // namespace sparsed::server
