// Generate and GenerateStream as gRPC callback reactors: no thread waits on a request. The engine
// loop's thread hands each request's tokens to its reactor (TokenSink), the reactor writes them
// when the previous write has completed, and gRPC reports cancellation through OnCancel.
#pragma once

#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/server_callback.h>

#include <atomic>
#include <cstdint>
#include <functional>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "scheduler/engine_loop.h"
#include "server/auth.h"
#include "server/metrics.h"

namespace grpc {
class CallbackServerContext;
}

namespace sparsed::server {

// What a call needs of the service. Everything outlives the calls (the daemon ends the engine
// loop, which finishes every request, before the service goes).
struct CallEnv {
  EngineLoop* loop = nullptr;
  Metrics* metrics = nullptr;
  std::atomic<int>* running = nullptr;  // calls whose reactors are not done yet
  // Logs a refused request (rate-limited by the service).
  std::function<void(const grpc::CallbackServerContext&, const absl::Status&)> log_refused;
  // Logs a stream cancelled because its client stopped reading (rate-limited by the service).
  std::function<void(const grpc::CallbackServerContext&, int64_t pending_tokens)> log_stalled;
  // A streaming client that has not taken a write for this long, while more tokens wait, or that
  // leaves more than this many tokens unsent, has its request cancelled (its KV blocks freed).
  absl::Duration stream_write_timeout = absl::Seconds(60);
  int64_t stream_max_pending_tokens = 4096;
  // API keys (auth.h); null or disabled = every call allowed. A request is submitted only for a
  // caller whose key has the generate role, and carries the key's name as its owner.
  const KeyStore* keys = nullptr;
};

// Each returns a reactor that deletes itself when gRPC is done with it. `raw` is the request's
// bytes; a request that does not parse or validate is finished at once with INVALID_ARGUMENT.
grpc::ServerUnaryReactor* StartUnaryGenerate(const CallEnv& env, grpc::CallbackServerContext* ctx,
                                             const grpc::ByteBuffer* raw,
                                             grpc::ByteBuffer* response);
grpc::ServerWriteReactor<grpc::ByteBuffer>* StartStreamGenerate(const CallEnv& env,
                                                                grpc::CallbackServerContext* ctx,
                                                                const grpc::ByteBuffer* raw);

}  // namespace sparsed::server
