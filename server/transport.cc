#include "server/transport.h"

#include <grpc/compression.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_credentials_options.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "engine/model/mapped_file.h"

namespace sparsed::server {
namespace {

// OK when the file is readable and holds a PEM block of `kind` ("CERTIFICATE", or "PRIVATE KEY"
// for any "-----BEGIN ... PRIVATE KEY-----").
absl::Status CheckPem(const std::string& flag, const std::string& path, const std::string& kind) {
  const absl::StatusOr<std::string> text = ReadFileToString(path);
  if (!text.ok())
    return absl::InvalidArgumentError(absl::StrCat("--", flag, "=", path, ": cannot read"));
  if (!absl::StrContains(*text, "-----BEGIN") || !absl::StrContains(*text, kind + "-----")) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, "=", path, ": holds no PEM ", kind, " block"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const TransportOptions& o) {
  if (o.tls_cert.empty() && o.tls_key.empty()) {
    if (!o.tls_client_ca.empty())
      return absl::InvalidArgumentError("--tls_client_ca needs --tls_cert and --tls_key");
    return grpc::InsecureServerCredentials();
  }
  if (o.tls_cert.empty() || o.tls_key.empty())
    return absl::InvalidArgumentError("--tls_cert and --tls_key go together");
  if (o.tls_reload_interval_s < 1)
    return absl::InvalidArgumentError("--tls_reload_interval_s must be at least 1");
  if (auto s = CheckPem("tls_cert", o.tls_cert, "CERTIFICATE"); !s.ok()) return s;
  if (auto s = CheckPem("tls_key", o.tls_key, "PRIVATE KEY"); !s.ok()) return s;
  const bool mutual = !o.tls_client_ca.empty();
  if (mutual) {
    if (auto s = CheckPem("tls_client_ca", o.tls_client_ca, "CERTIFICATE"); !s.ok()) return s;
  }
  auto provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
      o.tls_key, o.tls_cert, o.tls_client_ca, static_cast<unsigned>(o.tls_reload_interval_s));
  grpc::experimental::TlsServerCredentialsOptions opts(provider);
  opts.watch_identity_key_cert_pairs();
  if (mutual) {
    opts.watch_root_certs();
    opts.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  } else {
    opts.set_cert_request_type(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  }
  return grpc::experimental::TlsServerCredentials(opts);
}

void ApplyTransportLimits(const TransportOptions& o, grpc::ServerBuilder* builder) {
  builder->SetCompressionAlgorithmSupportStatus(GRPC_COMPRESS_GZIP, false);
  builder->SetCompressionAlgorithmSupportStatus(GRPC_COMPRESS_DEFLATE, false);
  builder->AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, o.max_concurrent_streams);
  builder->AddChannelArgument(GRPC_ARG_MAX_METADATA_SIZE, o.max_metadata_bytes);
  // Gateways and load balancers keep idle connections open with HTTP/2 pings (the smg gateway:
  // every 30 s, with or without calls). gRPC's server default counts pings closer than 5 minutes
  // without data as abuse and closes the connection (GOAWAY too_many_pings) after two: accept
  // them down to every 10 s.
  builder->AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder->AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10000);
}

}  // namespace sparsed::server
