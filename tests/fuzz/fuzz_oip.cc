// libFuzzer target: an Open Inference Protocol request from arbitrary bytes, as the daemon gets
// it from a client: the protobuf parse, then the conversion of its tensors and parameters
// (server/oip_convert.h), which reads raw tensor contents itself. A request that converts must
// carry a prompt and sane stopping bounds; nothing may crash.
#include <google/protobuf/stubs/logging.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "server/oip_convert.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Invalid UTF-8 in a string field is a parse failure, which libprotobuf also logs: not here.
  static const bool quiet = (google::protobuf::SetLogHandler(nullptr), true);
  (void)quiet;
  inference::ModelInferRequest req;
  if (!req.ParseFromArray(data, static_cast<int>(size))) return 0;
  auto out = sparsed::server::FromInferRequest(req);
  if (out.ok()) {
    if (out->input_case() != sparsed::v1::GenerateRequest::kPrompt) std::abort();
    if (out->stopping().max_new_tokens() > 1000000000u) std::abort();
  }
  (void)sparsed::server::TextResponse("m", req.id(), req.id(), true);
  return 0;
}
