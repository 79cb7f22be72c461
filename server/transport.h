// The daemon's transport: TLS (optionally mutual) from PEM files that are re-read while it serves,
// and the gRPC limits on what one connection may ask of it.
#pragma once

#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace sparsed::server {

struct TransportOptions {
  std::string tls_cert;                // PEM certificate chain; empty = plaintext
  std::string tls_key;                 // PEM private key of tls_cert
  std::string tls_client_ca;           // PEM CA bundle: client certificates required and verified
  int tls_reload_interval_s = 60;      // how often the files are checked for a rotation
  int max_concurrent_streams = 256;    // per connection (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS)
  int max_metadata_bytes = 16 * 1024;  // request headers per call
};

// Credentials for `o`: plaintext without tls_cert; otherwise TLS whose certificate, key and
// client CA are re-read every tls_reload_interval_s (a rotated file takes effect for new
// connections without a restart). INVALID_ARGUMENT naming the flag when a file is unreadable or
// holds no PEM block, or the flags are combined incompletely.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const TransportOptions& o);

// Sets the limits on `builder`: compressed requests refused (gzip and deflate disabled, so no
// message is inflated: Debian's gRPC bounds no decompressed size), the streams one connection
// may open at once, and the request metadata size.
void ApplyTransportLimits(const TransportOptions& o, grpc::ServerBuilder* builder);

}  // namespace sparsed::server
