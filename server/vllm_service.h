// The gateway worker: vLLM's engine gRPC protocol, vllm.grpc.engine.VllmEngine
// (proto/smg/vllm_engine.proto), on the daemon's port beside sparsed.v1 and the Open Inference
// Protocol, over the same engine loop, limits, metrics, keys and drain. It lets the daemon serve
// behind the smg gateway, which speaks the OpenAI API to clients, tokenizes, applies chat
// templates and routes among many daemons (docs/GATEWAY.md).
//
//   Generate      token ids (or text) in; streamed chunks of new token ids and one `complete`
//                 (finish reason, counts, matched stop), or only the `complete` when not
//                 streaming. Every unsupported field is refused by name (server/vllm_convert.h).
//   Abort         cancels the requests with those ids (any connection; with API keys, a generate
//                 key only its own): KV blocks are freed at the next iteration.
//   HealthCheck   healthy while serving; false while loading, draining or with a dead engine.
//   GetModelInfo, GetServerInfo
//   GetLoads      running/waiting/total requests and KV use, as the engine loop has them now.
//   GetTokenizer  the model directory's Hugging Face tokenizer files as a zip, in 64 KiB chunks,
//                 the last with the archive's SHA-256 (server/tokenizer_bundle.h).
// Embed, FlushCache, profiling and KV events are not served (UNIMPLEMENTED).
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/generate_calls.h"
#include "server/tokenizer_bundle.h"
#include "vllm_engine.grpc.pb.h"

namespace sparsed::server {

// Generate takes its request as bytes, so that one that does not parse is answered
// INVALID_ARGUMENT with a message.
using RawVllmService = ::vllm::grpc::engine::VllmEngine::WithRawCallbackMethod_Generate<
    ::vllm::grpc::engine::VllmEngine::CallbackService>;

// What the service reads of the daemon it belongs to.
struct VllmServiceEnv {
  std::string model_path;          // as given to --model
  std::string model_name;          // the served model name
  std::function<CallEnv()> env;    // the engine loop is null while the model loads
  std::function<bool()> ready;     // serving: loaded, not draining, engine healthy
  std::function<bool()> draining;  // SIGTERM received
  int max_num_seqs = 0;            // the running window
  std::string kv_cache_dtype;      // as --kv_cache_dtype gives it
};

// Thread-safety: gRPC calls the methods from its threads.
class VllmService final : public RawVllmService {
 public:
  explicit VllmService(VllmServiceEnv env);

  grpc::ServerWriteReactor<grpc::ByteBuffer>* Generate(grpc::CallbackServerContext* ctx,
                                                       const grpc::ByteBuffer* request) override;
  grpc::ServerUnaryReactor* HealthCheck(grpc::CallbackServerContext* ctx,
                                        const ::vllm::grpc::engine::HealthCheckRequest* req,
                                        ::vllm::grpc::engine::HealthCheckResponse* resp) override;
  grpc::ServerUnaryReactor* Abort(grpc::CallbackServerContext* ctx,
                                  const ::vllm::grpc::engine::AbortRequest* req,
                                  ::vllm::grpc::engine::AbortResponse* resp) override;
  grpc::ServerUnaryReactor* GetModelInfo(grpc::CallbackServerContext* ctx,
                                         const ::vllm::grpc::engine::GetModelInfoRequest* req,
                                         ::vllm::grpc::engine::GetModelInfoResponse* resp) override;
  grpc::ServerUnaryReactor* GetServerInfo(
      grpc::CallbackServerContext* ctx, const ::vllm::grpc::engine::GetServerInfoRequest* req,
      ::vllm::grpc::engine::GetServerInfoResponse* resp) override;
  grpc::ServerUnaryReactor* GetLoads(grpc::CallbackServerContext* ctx,
                                     const ::vllm::grpc::engine::GetLoadsRequest* req,
                                     ::vllm::grpc::engine::GetLoadsResponse* resp) override;
  grpc::ServerWriteReactor<::smg::grpc::common::GetTokenizerChunk>* GetTokenizer(
      grpc::CallbackServerContext* ctx,
      const ::smg::grpc::common::GetTokenizerRequest* req) override;

 private:
  // The zip of `dir`'s tokenizer files (ModelInfo::dir), made on first use and kept (or the
  // error that making it gave).
  const absl::StatusOr<TokenizerBundle>& Bundle(const std::string& dir);

  const VllmServiceEnv env_;
  const absl::Time started_;
  std::once_flag bundle_once_;
  absl::StatusOr<TokenizerBundle> bundle_ = absl::UnknownError("not made");
};

}  // namespace sparsed::server
