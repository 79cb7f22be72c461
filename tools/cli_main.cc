// sparsed-cli: a command-line gRPC client of sparsed. Text goes to stdout, errors to stderr with a
// non-zero exit.
//   sparsed-cli [--server HOST:PORT] health [--service NAME]   exit 0 when SERVING (probes)
//   sparsed-cli info                                          model information
//   sparsed-cli generate|stream [--max_new_tokens N] [--temperature T] [--seed S] PROMPT
//   sparsed-cli tokenize PROMPT
#include <grpcpp/grpcpp.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "absl/flags/flag.h"
#include "cli/cli_status.h"
#include "cli/help_flags.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "sparsed/v1/sparsed.grpc.pb.h"

ABSL_FLAG(std::string, server, "127.0.0.1:50051", "Server address.");
ABSL_FLAG(std::string, service, "", "health: service name to check (\"\" = whole server).");
ABSL_FLAG(std::string, prompt, "",
          "generate/stream/tokenize: prompt text (or give it as the last arguments).");
ABSL_FLAG(int64_t, seed, -1,
          "generate/stream: sampling seed (-1: none) [-1, 9223372036854775807].");
ABSL_FLAG(int, max_new_tokens, 32, "generate: tokens to generate [1, 1048576].");
ABSL_FLAG(double, temperature, 0.0, "generate: sampling temperature (0 = greedy) [0, 100].");
ABSL_FLAG(bool, add_bos, true, "generate/tokenize: prepend the model's BOS token.");
ABSL_FLAG(double, timeout_s, 60, "Call deadline in seconds [0.001, 86400].");
ABSL_FLAG(std::string, tls_ca, "",
          "PEM CA bundle that signed the server's certificate: connect over TLS (a daemon run "
          "with --tls_cert). Empty: plaintext.");
ABSL_FLAG(
    std::string, tls_cert, "",
    "PEM client certificate for a daemon that requires one (--tls_client_ca), with --tls_key.");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls_cert.");
ABSL_FLAG(std::string, api_key, "",
          "API key for a daemon run with --api_keys_file (sent as `authorization: Bearer KEY`).");

namespace {

int Fail(const grpc::Status& s) {
  std::fprintf(stderr, "error: %s (%d): %s\n",
               s.error_code() == grpc::StatusCode::UNAVAILABLE ? "UNAVAILABLE" : "rpc failed",
               static_cast<int>(s.error_code()), s.error_message().c_str());
  return 1;
}

// The call's deadline, and its API key when one is given.
void SetDeadline(grpc::ClientContext* ctx) {
  ctx->set_deadline(
      std::chrono::system_clock::now() +
      std::chrono::milliseconds(static_cast<int64_t>(absl::GetFlag(FLAGS_timeout_s) * 1000)));
  if (!absl::GetFlag(FLAGS_api_key).empty())
    ctx->AddMetadata("authorization", "Bearer " + absl::GetFlag(FLAGS_api_key));
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<char*> args = sparsed::ParseFlags(
      argc, argv, "cli_main.cc",
      "sparsed-cli [--server HOST:PORT] health|info|generate|stream|tokenize [flags] [PROMPT]");
  if (args.size() < 2) {
    std::fprintf(stderr,
                 "usage: sparsed-cli health|info|generate|tokenize [--target host:port] ...\n");
    return sparsed::kUsageExit;
  }
  const std::string cmd = args[1];
  std::string prompt = absl::GetFlag(FLAGS_prompt);
  for (size_t i = 2; i < args.size(); ++i)
    prompt += (prompt.empty() ? "" : " ") + std::string(args[i]);
  std::shared_ptr<grpc::ChannelCredentials> creds = grpc::InsecureChannelCredentials();
  if (!absl::GetFlag(FLAGS_tls_ca).empty() || !absl::GetFlag(FLAGS_tls_cert).empty()) {
    grpc::SslCredentialsOptions ssl;
    auto read = [](const std::string& flag, const std::string& path, std::string* out) {
      std::ifstream in(path);
      if (!in) {
        std::fprintf(stderr, "error: --%s=%s: cannot read\n", flag.c_str(), path.c_str());
        return false;
      }
      std::stringstream ss;
      ss << in.rdbuf();
      *out = ss.str();
      return true;
    };
    if (!absl::GetFlag(FLAGS_tls_ca).empty() &&
        !read("tls_ca", absl::GetFlag(FLAGS_tls_ca), &ssl.pem_root_certs))
      return sparsed::kUsageExit;
    if (absl::GetFlag(FLAGS_tls_cert).empty() != absl::GetFlag(FLAGS_tls_key).empty()) {
      std::fprintf(stderr, "error: --tls_cert and --tls_key go together\n");
      return sparsed::kUsageExit;
    }
    if (!absl::GetFlag(FLAGS_tls_cert).empty() &&
        (!read("tls_cert", absl::GetFlag(FLAGS_tls_cert), &ssl.pem_cert_chain) ||
         !read("tls_key", absl::GetFlag(FLAGS_tls_key), &ssl.pem_private_key)))
      return sparsed::kUsageExit;
    creds = grpc::SslCredentials(ssl);
  }
  auto channel = grpc::CreateChannel(absl::GetFlag(FLAGS_server), creds);
  if (cmd == "health") {
    auto stub = grpc::health::v1::Health::NewStub(channel);
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    grpc::health::v1::HealthCheckRequest req;
    req.set_service(absl::GetFlag(FLAGS_service));
    grpc::health::v1::HealthCheckResponse resp;
    const grpc::Status s = stub->Check(&ctx, req, &resp);
    if (!s.ok()) return Fail(s);
    const bool serving = resp.status() == grpc::health::v1::HealthCheckResponse::SERVING;
    std::printf("%s\n", serving ? "SERVING" : "NOT_SERVING");
    return serving ? 0 : 1;
  }
  auto stub = sparsed::v1::Sparsed::NewStub(channel);
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  if (cmd == "info") {
    sparsed::v1::ModelInfo info;
    const grpc::Status s = stub->GetModelInfo(&ctx, {}, &info);
    if (!s.ok()) return Fail(s);
    std::printf("%s", info.DebugString().c_str());
    return 0;
  }
  if (cmd == "tokenize") {
    sparsed::v1::TokenizeRequest req;
    req.set_text(prompt);
    req.set_add_bos(absl::GetFlag(FLAGS_add_bos));
    sparsed::v1::TokenizeResponse resp;
    const grpc::Status s = stub->Tokenize(&ctx, req, &resp);
    if (!s.ok()) return Fail(s);
    for (int32_t id : resp.token_ids()) std::printf("%d ", id);
    std::printf("\n");
    return 0;
  }
  if (cmd == "generate" || cmd == "stream") {
    if (prompt.empty()) {
      std::fprintf(stderr, "error: give a prompt (sparsed-cli %s \"text\")\n", cmd.c_str());
      return sparsed::kUsageExit;
    }
    sparsed::v1::GenerateRequest req;
    req.set_prompt(prompt);
    if (absl::GetFlag(FLAGS_seed) >= 0)
      req.mutable_sampling()->set_seed(static_cast<uint64_t>(absl::GetFlag(FLAGS_seed)));
    req.set_add_bos(absl::GetFlag(FLAGS_add_bos));
    req.mutable_sampling()->set_temperature(static_cast<float>(absl::GetFlag(FLAGS_temperature)));
    req.mutable_stopping()->set_max_new_tokens(
        static_cast<uint32_t>(absl::GetFlag(FLAGS_max_new_tokens)));
    req.mutable_options()->set_sparsity_stats(true);
    sparsed::v1::GenerateResponse last;
    if (cmd == "stream") {
      auto reader = stub->GenerateStream(&ctx, req);
      sparsed::v1::GenerateResponse msg;
      std::printf("%s", req.prompt().c_str());
      while (reader->Read(&msg)) {
        std::printf("%s", msg.text().c_str());
        std::fflush(stdout);
        last = msg;
      }
      const grpc::Status s = reader->Finish();
      std::printf("\n");
      if (!s.ok()) return Fail(s);
    } else {
      const grpc::Status s = stub->Generate(&ctx, req, &last);
      if (!s.ok()) return Fail(s);
      std::printf("%s%s\n", req.prompt().c_str(), last.text().c_str());
    }
    std::fprintf(stderr,
                 "finish=%s prompt_tokens=%u generated_tokens=%u first_token_s=%.3f total_s=%.3f "
                 "active=%.3f union=%.3f\n",
                 sparsed::v1::FinishReason_Name(last.finish_reason()).c_str(),
                 last.usage().prompt_tokens(), last.usage().generated_tokens(),
                 last.timings().first_token_seconds(), last.timings().total_seconds(),
                 last.sparsity().mean_active_ratio(), last.sparsity().mean_union_ratio());
    return 0;
  }
  std::fprintf(stderr, "unknown command '%s'; use health, info, generate or tokenize\n",
               cmd.c_str());
  return sparsed::kUsageExit;
}
