// The Open Inference Protocol (KServe v2) gRPC service, inference.GRPCInferenceService, on the
// same port, scheduler, limits and metrics as sparsed.v1: liveness, readiness, metadata,
// ModelInfer (one response with the whole text) and ModelStreamInfer (Triton's decoupled
// streaming: any number of requests on one stream, a response per batch of new tokens, the last
// one marked triton_final_response). Tensor conventions: server/oip_convert.h.
#pragma once

#include <atomic>
#include <functional>
#include <string>

#include "inference/inference.grpc.pb.h"
#include "server/generate_calls.h"

namespace sparsed::server {

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

 private:
  const std::string model_;
  const std::function<CallEnv()> env_;
  const std::function<bool()> ready_;
};

}  // namespace sparsed::server
