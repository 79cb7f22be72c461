// Server reflection, version v1 (grpc.reflection.v1.ServerReflection), beside the v1alpha service
// gRPC's plugin provides: current grpcurl and other tools ask v1 first. Answers from the protobuf
// descriptors compiled into the daemon.
#pragma once

#include <string>
#include <vector>

#include "grpc/reflection/v1/reflection.grpc.pb.h"

namespace sparsed::server {

// Thread-safety: stateless across calls; each stream is handled on its own gRPC thread.
class ReflectionV1 final : public grpc::reflection::v1::ServerReflection::Service {
 public:
  // `services`: the full names list_services reports.
  explicit ReflectionV1(std::vector<std::string> services) : services_(std::move(services)) {}

  grpc::Status ServerReflectionInfo(
      grpc::ServerContext* ctx,
      grpc::ServerReaderWriter<grpc::reflection::v1::ServerReflectionResponse,
                               grpc::reflection::v1::ServerReflectionRequest>* stream) override;

 private:
  std::vector<std::string> services_;
};

}  // namespace sparsed::server
