// Text generation over the Open Inference Protocol (KServe v2), as Triton's LLM backends shape
// it:
//   inputs   text_input  BYTES, one element (shape [1] or [1, 1]): the prompt, BOS prepended;
//            optional one-element inputs max_tokens (INT32/INT64/UINT32/UINT64), temperature,
//            top_p (FP32/FP64), top_k, seed or random_seed (integers), ignore_eos (BOOL);
//   request  parameters of the same names (int64, double, bool) override those inputs, as do
//            priority; the request id is echoed;
//   output   text_output BYTES [1]: the generated text (in a stream, the text since the last
//            response), in raw_output_contents (4-byte little-endian length, then the bytes).
// Every malformed request is INVALID_ARGUMENT naming the tensor or parameter and what it must be.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "inference/inference.pb.h"
#include "sparsed/v1/sparsed.pb.h"

namespace sparsed::server {

inline constexpr char kTextInput[] = "text_input";
inline constexpr char kTextOutput[] = "text_output";

// NOT_FOUND unless `name` is the served model's (an empty name means it too).
absl::Status CheckModelName(const std::string& name, const std::string& served);

absl::StatusOr<v1::GenerateRequest> FromInferRequest(const inference::ModelInferRequest& in);

// A response carrying `text` as text_output. `final` (streams) sets the triton_final_response
// parameter Triton's clients read to know a decoupled request is complete.
inference::ModelInferResponse TextResponse(const std::string& model, const std::string& id,
                                           const std::string& text, bool final);

// The model's tensors, for ModelMetadata.
void DescribeModel(const std::string& model, inference::ModelMetadataResponse* out);

}  // namespace sparsed::server
