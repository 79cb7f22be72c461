// The one place where proto messages become internal types and statuses become gRPC statuses.
#pragma once

#include <grpcpp/support/status.h>

#include "absl/status/statusor.h"
#include "engine/model_info.h"
#include "scheduler/request.h"
#include "sparsed/v1/sparsed.pb.h"

namespace sparsed::server {

// Validates and converts a GenerateRequest (tokenizing a text prompt). Every bad field is an
// INVALID_ARGUMENT naming the field and its allowed range. The sink and deadline are left unset.
absl::StatusOr<Request> ToRequest(const v1::GenerateRequest& in, const ModelInfo& model);

// Admission before work: INVALID_ARGUMENT (naming `field`) when a text of `bytes` bytes cannot fit
// the context (Engine::context_tokens) whatever it says (Tokenizer::max_bytes_per_token), so no
// time is spent tokenizing it. The engine must have a tokenizer.
absl::Status CheckTextBytes(absl::string_view field, size_t bytes, const ModelInfo& model);

v1::FinishReason ToProto(FinishReason r);

// absl::Status → grpc::Status, same code and message.
grpc::Status ToGrpc(const absl::Status& s);

}  // namespace sparsed::server
