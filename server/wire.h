// Messages to and from the raw bytes of a call. The service takes its requests as bytes so that a
// request that does not parse is answered INVALID_ARGUMENT with a message (gRPC's own parsing
// would answer INTERNAL with none).
#pragma once

#include <grpcpp/impl/codegen/proto_utils.h>
#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/proto_buffer_reader.h>
#include <grpcpp/support/proto_buffer_writer.h>

#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace sparsed::server {

// INVALID_ARGUMENT naming the message type when `raw` is not a valid serialization of `Message`
// (truncated or random bytes, invalid UTF-8 in a string field, ...).
// `proto_file` names the .proto the client's should match.
template <class Message>
absl::Status ParseRequest(const grpc::ByteBuffer* raw, Message* out,
                          absl::string_view proto_file = "proto/sparsed/v1/sparsed.proto") {
  bool parsed = false;
  if (raw != nullptr) {
    grpc::ByteBuffer copy(*raw);  // the reader consumes its buffer; the copy shares the slices
    grpc::ProtoBufferReader reader(&copy);
    parsed = out->ParseFromZeroCopyStream(&reader);
  }
  if (!parsed) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the request is not a valid ", out->GetTypeName(), " (", raw == nullptr ? 0 : raw->Length(),
        " bytes): check that the client's .proto is ", proto_file));
  }
  return absl::OkStatus();
}

// Serializes `msg` into `out` (replacing its contents).
template <class Message>
void SerializeResponse(const Message& msg, grpc::ByteBuffer* out) {
  bool own = false;
  out->Clear();  // the writer wants an empty buffer
  (void)grpc::SerializationTraits<Message>::Serialize(msg, out, &own);
}

}  // namespace sparsed::server
