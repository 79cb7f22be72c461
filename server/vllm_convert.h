// vLLM's engine protocol (proto/smg/vllm_engine.proto) to and from the daemon's own types: what
// the gateway worker (server/vllm_service.h) accepts, what it refuses, and the messages it sends.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model_info.h"
#include "scheduler/request.h"
#include "sparsed/v1/sparsed.pb.h"
#include "vllm_engine.pb.h"

namespace sparsed::server {

namespace vllm_pb = ::vllm::grpc::engine;

// The daemon's request for a vLLM GenerateRequest, with every field mapped exactly as vLLM reads
// it (an unset top_p or repetition_penalty of 0 means 1, top_k 0 means off, an unset max_tokens
// means up to the end of the context, a text prompt is tokenized with BOS). Every field the daemon
// cannot honour — n > 1, min_tokens, prompt_logprobs, logprobs of -1 or above 20, logit_bias, a
// structured-output constraint, multimodal inputs, disaggregated-prefill parameters, a data
// parallel rank other than 0, and any field this protocol version does not define — is an
// INVALID_ARGUMENT naming it, never silently ignored. The text prompt is tokenized here, so the
// result always carries prompt_token_ids.
absl::StatusOr<v1::GenerateRequest> FromVllm(const vllm_pb::GenerateRequest& in,
                                             const ModelInfo& model);

// What the response messages need to know of the request.
struct VllmReplyShape {
  bool stream = false;
  int32_t logprobs = -1;  // -1: none; 0: the chosen token's; k: and the top k alternatives
};
VllmReplyShape ReplyShape(const vllm_pb::GenerateRequest& in);

// finish_reason as vLLM names it: "stop", "length", "abort" (cancelled, deadline, shut down) or
// "error".
const char* VllmFinishReason(FinishReason r);

// Appends the events' tokens (and their logprobs, as `shape` asks) to `ids` and `lp`.
void AppendTokens(const std::vector<TokenEvent>& events, const VllmReplyShape& shape,
                  google::protobuf::RepeatedField<uint32_t>* ids, vllm_pb::OutputLogProbs* lp);

// The last message: finish reason, counts and matched stop from `st`, with `ids` and `lp` as the
// output (the whole output for a non-streaming request; the last delta for a streaming one).
vllm_pb::GenerateComplete MakeComplete(FinishReason reason, const RequestStats& st,
                                       std::vector<uint32_t> ids, vllm_pb::OutputLogProbs lp,
                                       bool with_logprobs);

}  // namespace sparsed::server
