#include "server/reflection_v1.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/descriptor.pb.h>

#include <set>

namespace sparsed::server {
namespace {

namespace pb = google::protobuf;
using grpc::reflection::v1::ServerReflectionRequest;
using grpc::reflection::v1::ServerReflectionResponse;

void NotFound(const std::string& what, ServerReflectionResponse* r) {
  r->mutable_error_response()->set_error_code(static_cast<int>(grpc::StatusCode::NOT_FOUND));
  r->mutable_error_response()->set_error_message(what + " not found");
}

// `file` and the dependencies not yet sent on this stream, dependencies first.
void AddFile(const pb::FileDescriptor* file, std::set<std::string>* sent,
             ServerReflectionResponse* r) {
  if (!sent->insert(file->name()).second) return;
  for (int i = 0; i < file->dependency_count(); ++i) AddFile(file->dependency(i), sent, r);
  pb::FileDescriptorProto proto;
  file->CopyTo(&proto);
  proto.SerializeToString(r->mutable_file_descriptor_response()->add_file_descriptor_proto());
}

// The file a request asked for (again, if it was sent before) and its dependencies not yet sent.
void SendFile(const pb::FileDescriptor* file, std::set<std::string>* sent,
              ServerReflectionResponse* r) {
  sent->erase(file->name());
  AddFile(file, sent, r);
}

}  // namespace

grpc::Status ReflectionV1::ServerReflectionInfo(
    grpc::ServerContext* ctx,
    grpc::ServerReaderWriter<ServerReflectionResponse, ServerReflectionRequest>* stream) {
  const pb::DescriptorPool* pool = pb::DescriptorPool::generated_pool();
  std::set<std::string> sent;  // files already sent on this stream
  ServerReflectionRequest req;
  while (stream->Read(&req)) {
    ServerReflectionResponse r;
    r.set_valid_host(req.host());
    *r.mutable_original_request() = req;
    switch (req.message_request_case()) {
      case ServerReflectionRequest::kListServices:
        for (const std::string& s : services_)
          r.mutable_list_services_response()->add_service()->set_name(s);
        break;
      case ServerReflectionRequest::kFileByFilename:
        if (const pb::FileDescriptor* f = pool->FindFileByName(req.file_by_filename())) {
          SendFile(f, &sent, &r);
        } else {
          NotFound("file " + req.file_by_filename(), &r);
        }
        break;
      case ServerReflectionRequest::kFileContainingSymbol:
        if (const pb::FileDescriptor* f =
                pool->FindFileContainingSymbol(req.file_containing_symbol())) {
          SendFile(f, &sent, &r);
        } else {
          NotFound("symbol " + req.file_containing_symbol(), &r);
        }
        break;
      case ServerReflectionRequest::kFileContainingExtension: {
        const auto& e = req.file_containing_extension();
        const pb::Descriptor* type = pool->FindMessageTypeByName(e.containing_type());
        const pb::FieldDescriptor* ext =
            type ? pool->FindExtensionByNumber(type, e.extension_number()) : nullptr;
        if (ext != nullptr) {
          SendFile(ext->file(), &sent, &r);
        } else {
          NotFound(
              "extension " + std::to_string(e.extension_number()) + " of " + e.containing_type(),
              &r);
        }
        break;
      }
      case ServerReflectionRequest::kAllExtensionNumbersOfType: {
        const pb::Descriptor* type =
            pool->FindMessageTypeByName(req.all_extension_numbers_of_type());
        if (type == nullptr) {
          NotFound("type " + req.all_extension_numbers_of_type(), &r);
          break;
        }
        std::vector<const pb::FieldDescriptor*> exts;
        pool->FindAllExtensions(type, &exts);
        auto* out = r.mutable_all_extension_numbers_response();
        out->set_base_type_name(type->full_name());
        for (const pb::FieldDescriptor* x : exts) out->add_extension_number(x->number());
        break;
      }
      default:
        r.mutable_error_response()->set_error_code(
            static_cast<int>(grpc::StatusCode::INVALID_ARGUMENT));
        r.mutable_error_response()->set_error_message("empty or unknown reflection request");
    }
    if (!stream->Write(r)) break;
    if (ctx->IsCancelled()) break;
  }
  return grpc::Status::OK;
}

}  // namespace sparsed::server
