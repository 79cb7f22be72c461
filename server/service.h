// The sparsed.v1.Sparsed gRPC service over the engine loop.
#pragma once

#include <atomic>
#include <mutex>
#include <string>

#include "absl/time/time.h"
#include "scheduler/engine_loop.h"
#include "server/log.h"
#include "server/metrics.h"
#include "sparsed/v1/sparsed.grpc.pb.h"

namespace sparsed::server {

// Thread-safety: gRPC calls the handlers from its thread pool; each handler blocks its thread
// while its request runs, polling for client cancellation.
class SparsedService final : public v1::Sparsed::Service {
 public:
  // The service answers UNAVAILABLE ("model is loading") until Attach(). Refused requests are
  // logged (warn) at most once a second, with the number of others refused since.
  SparsedService(std::string model_dir, std::string device, LogLevel log_level = LogLevel::kInfo);
  // `loop` and `metrics` must outlive the service. Called once, after the model has loaded.
  void Attach(EngineLoop* loop, Metrics* metrics);
  // Generate and GenerateStream calls whose handlers have not returned yet.
  int running() const { return running_.load(); }

  grpc::Status Generate(grpc::ServerContext* ctx, const v1::GenerateRequest* req,
                        v1::GenerateResponse* resp) override;
  grpc::Status GenerateStream(grpc::ServerContext* ctx, const v1::GenerateRequest* req,
                              grpc::ServerWriter<v1::GenerateResponse>* writer) override;
  grpc::Status GetModelInfo(grpc::ServerContext* ctx, const v1::GetModelInfoRequest* req,
                            v1::ModelInfo* resp) override;
  grpc::Status Tokenize(grpc::ServerContext* ctx, const v1::TokenizeRequest* req,
                        v1::TokenizeResponse* resp) override;

 private:
  grpc::Status Run(grpc::ServerContext* ctx, const v1::GenerateRequest& req,
                   grpc::ServerWriter<v1::GenerateResponse>* writer, v1::GenerateResponse* unary);

  // One log line per second at most for refused requests; a client cannot fill the log.
  void LogRefused(const grpc::ServerContext& ctx, const absl::Status& why);

  // Set once by Attach(); read by handler threads.
  std::atomic<EngineLoop*> loop_{nullptr};
  std::atomic<Metrics*> metrics_{nullptr};
  std::atomic<int> running_{0};
  std::string model_dir_;
  std::string device_;
  const Logger log_;
  std::mutex refused_mu_;
  absl::Time refused_logged_ = absl::InfinitePast();  // guarded by refused_mu_
  int64_t refused_unlogged_ = 0;                      // guarded by refused_mu_
};

}  // namespace sparsed::server
