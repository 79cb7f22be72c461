// The Open Inference Protocol (KServe v2) gRPC service, inference.GRPCInferenceService, on the
// same port, scheduler, limits and metrics as sparsed.v1: liveness, readiness, metadata,
// ModelInfer (one response with the whole text), ModelStreamInfer (Triton's decoupled
// streaming: any number of requests on one stream, a response per batch of new tokens, the last
// one marked triton_final_response), and Triton's ModelConfig and ModelStatistics. Tensor
// conventions: server/oip_convert.h.
#pragma once

#include <atomic>
#include <functional>
#include <string>

#include "absl/time/time.h"
#include "engine/common/mutex.h"
#include "inference/inference.grpc.pb.h"
#include "scheduler/request.h"
#include "server/generate_calls.h"

namespace sparsed::server {

// ModelStatistics' counters, as Triton keeps them per model, for the inference requests made
// through the Open Inference Protocol that name the served model (ModelInfer, each request of a
// ModelStreamInfer). Thread-safe.
//   success  requests that ended well, and their durations from arrival to the response's being
//            ready; queue, compute_input, compute_infer and compute_output count the same
//            requests (Triton counts them for successes only): queue the engine loop's wait
//            before first scheduling it, compute_input parsing, validation and tokenizing (arrival
//            to submission), compute_infer generation (first scheduled to last token),
//            compute_output the making of the response after the engine's last event (a
//            unary call's response; next to nothing on a stream, whose responses are made as
//            their text comes);
//   fail     requests refused (INVALID_ARGUMENT, RESOURCE_EXHAUSTED, ...) or ended otherwise
//            (cancelled, deadline, shutdown), arrival to end;
//   inference_count, execution_count  both count successes (one sequence each: no batch
//            dimension, and each request is its own execution as Triton counts them without a
//            dynamic batcher); last_inference the last success's end, in ms since the epoch.
// A request is counted before its last response is written: a client holding that response
// finds it counted.
class OipStats {
 public:
  // One successful request: its arrival, the engine's finish event and stats; its response is
  // made by now.
  void Succeeded(absl::Time arrived, absl::Time finished, const RequestStats& st);
  void Failed(absl::Time arrived);
  void Fill(const std::string& model, inference::ModelStatistics* out) const;

 private:
  mutable Mutex mu_;
  uint64_t success_ ABSL_GUARDED_BY(mu_) = 0, fail_ ABSL_GUARDED_BY(mu_) = 0;
  // Cumulative nanoseconds.
  uint64_t success_ns_ ABSL_GUARDED_BY(mu_) = 0, fail_ns_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t queue_ns_ ABSL_GUARDED_BY(mu_) = 0, input_ns_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t infer_ns_ ABSL_GUARDED_BY(mu_) = 0, output_ns_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t last_inference_ms_ ABSL_GUARDED_BY(mu_) = 0;
};

class OipService final : public inference::GRPCInferenceService::CallbackService {
 public:
  // `env` supplies the engine loop and metrics once the model has loaded (loop null until then:
  // not ready, inference UNAVAILABLE); `ready` says whether the daemon serves (not loading, not
  // draining, engine healthy).
  OipService(std::string model_name, std::function<CallEnv()> env, std::function<bool()> ready);

  grpc::ServerUnaryReactor* ServerLive(grpc::CallbackServerContext* ctx,
                                       const inference::ServerLiveRequest* req,
                                       inference::ServerLiveResponse* resp) override;
  grpc::ServerUnaryReactor* ServerReady(grpc::CallbackServerContext* ctx,
                                        const inference::ServerReadyRequest* req,
                                        inference::ServerReadyResponse* resp) override;
  grpc::ServerUnaryReactor* ModelReady(grpc::CallbackServerContext* ctx,
                                       const inference::ModelReadyRequest* req,
                                       inference::ModelReadyResponse* resp) override;
  grpc::ServerUnaryReactor* ServerMetadata(grpc::CallbackServerContext* ctx,
                                           const inference::ServerMetadataRequest* req,
                                           inference::ServerMetadataResponse* resp) override;
  grpc::ServerUnaryReactor* ModelMetadata(grpc::CallbackServerContext* ctx,
                                          const inference::ModelMetadataRequest* req,
                                          inference::ModelMetadataResponse* resp) override;
  grpc::ServerUnaryReactor* ModelInfer(grpc::CallbackServerContext* ctx,
                                       const inference::ModelInferRequest* req,
                                       inference::ModelInferResponse* resp) override;
  grpc::ServerBidiReactor<inference::ModelInferRequest, inference::ModelStreamInferResponse>*
  ModelStreamInfer(grpc::CallbackServerContext* ctx) override;
  // The model's configuration (DescribeModelConfig); open like the metadata calls.
  grpc::ServerUnaryReactor* ModelConfig(grpc::CallbackServerContext* ctx,
                                        const inference::ModelConfigRequest* req,
                                        inference::ModelConfigResponse* resp) override;
  // OipStats for the model (an empty name: every model, here the one); with API keys on, the
  // caller's key needs the generate role.
  grpc::ServerUnaryReactor* ModelStatistics(grpc::CallbackServerContext* ctx,
                                            const inference::ModelStatisticsRequest* req,
                                            inference::ModelStatisticsResponse* resp) override;

 private:
  const std::string model_;
  const std::function<CallEnv()> env_;
  const std::function<bool()> ready_;
  OipStats stats_;
};

}  // namespace sparsed::server
