// sparsed: serves a sparse-FFN LLM over gRPC (sparsed.v1), with health, reflection and metrics.
#include <grpc/grpc.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <prometheus/exposer.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "cli/engine_flags.h"
#include "cli/flag_checks.h"
#include "cli/help_flags.h"
#include "engine/backend/ffn_types.h"
#include "engine/engine.h"
#include "scheduler/engine_loop.h"
#include "server/bind_check.h"
#include "server/library_logs.h"
#include "server/log.h"
#include "server/metrics.h"
#include "server/oip_service.h"
#include "server/reflection_v1.h"
#include "server/service.h"
#include "server/transport.h"
#include "server/vllm_service.h"

ABSL_FLAG(std::string, model_name, "",
          "The served model's name: the model_name label of every metric (default: the --model "
          "directory's name).");
ABSL_FLAG(std::string, listen, "127.0.0.1:50051", "gRPC listen address.");
ABSL_FLAG(std::string, metrics_listen, "127.0.0.1:9464",
          "Prometheus /metrics listen address (empty: off).");
ABSL_FLAG(std::string, sparsity_file, "",
          "Threshold mode's calibration (sparsed-calibrate); default MODEL/sparsity.json.");
ABSL_FLAG(int64_t, kv_cache_mb, 512, "KV cache size in MiB [1, 1048576].");
ABSL_FLAG(double, kv_cache_fraction, 0,
          "GPU: KV cache size as this fraction of the device memory free after the weights are "
          "loaded (0 = use --kv_cache_mb) [0, 0.99].");
ABSL_FLAG(int, cuda_cublas_min_tokens, 0,
          "GPU: FFN calls of at least this many tokens run dense cuBLAS GEMMs (faster for large "
          "batches; a sequence's output then depends on its batch size). 0 = never "
          "[0, 1048576].");
ABSL_FLAG(std::string, kv_cache_dtype, "fp32",
          "fp32 | bf16: element type of the cached K and V. bf16 holds twice the tokens in the "
          "same memory; logits move by about bf16's rounding.");
ABSL_FLAG(bool, cuda_graphs, false,
          "GPU: replay repeated step shapes (decode at a steady batch size) as CUDA graphs; the "
          "same results, fewer launches. Off by default until measured on the deployment's GPU.");
ABSL_FLAG(int, kv_block_size, 16, "Tokens per KV cache block [1, 1024].");
ABSL_FLAG(int, max_num_seqs, 64, "Sequences per engine step [1, 4096].");
ABSL_FLAG(int, max_waiting_per_key, 0,
          "With --api_keys_file: requests one key may have waiting (its share of "
          "--max_waiting_requests; beyond it that key gets RESOURCE_EXHAUSTED while others are "
          "still queued). 0: no per-key bound [0, 1048576].");
ABSL_FLAG(bool, priority_preemption, true,
          "A waiting request that finds no room preempts running requests of lower priority (they "
          "resume later with the same output). false: priority only orders the waiting queue.");
ABSL_FLAG(int, max_priority_preemptions, 4,
          "A request preempted this many times is not preempted for priority again, so low "
          "priority still finishes [0, 1000].");
ABSL_FLAG(int, max_num_batched_tokens, 512, "Tokens per engine step [1, 1048576].");
ABSL_FLAG(int, max_prefill_chunk, 256, "Tokens one prompt may prefill per step [1, 1048576].");
ABSL_FLAG(bool, prefix_cache, true,
          "Reuse the KV cache of full blocks of earlier requests' tokens for a new prompt that "
          "starts with the same tokens (system prompts, conversation turns): less prefill, the "
          "same bits as recomputation.");
ABSL_FLAG(double, prefix_cache_max_fraction, 1.0,
          "Share of the KV blocks the prefix cache may hold [0, 1]; unreferenced cached blocks are "
          "reclaimed before any request is preempted.");
ABSL_FLAG(int, max_waiting_requests, 256,
          "Queued requests beyond which new ones get RESOURCE_EXHAUSTED [1, 1048576].");
ABSL_FLAG(
    double, max_connection_age_s, 300,
    "Clients' connections are closed (GOAWAY) after about this long, so that they spread over "
    "replicas added since (0 = never) [0, 86400].");
ABSL_FLAG(double, max_connection_age_grace_s, 600,
          "How long calls in flight on a connection closed for its age may still run [0, 86400].");
ABSL_FLAG(double, stream_write_timeout_s, 60,
          "A streaming client that takes no message for this long while tokens wait for it has its "
          "request cancelled and its KV cache freed [0.1, 86400].");
ABSL_FLAG(int, stream_max_pending_tokens, 4096,
          "A streaming client that leaves more tokens than this unsent has its request cancelled "
          "[1, 1073741824].");
ABSL_FLAG(int, unhealthy_after_failed_steps, 3,
          "After this many engine steps fail in a row, health says NOT_SERVING (so an orchestrator "
          "restarts the daemon) until a step succeeds again [1, 1000000].");
ABSL_FLAG(double, shutdown_timeout_s, 30,
          "On SIGTERM/SIGINT, how long in-flight requests may finish [0, 86400].");
ABSL_FLAG(std::string, log_level, "info", "debug | info | warn | error.");
ABSL_FLAG(std::string, tls_cert, "",
          "PEM certificate chain: serve gRPC over TLS (with --tls_key). Re-read every "
          "--tls_reload_interval_s, so a rotated certificate needs no restart. Empty: plaintext, "
          "for trusted networks only.");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls_cert.");
ABSL_FLAG(std::string, tls_client_ca, "",
          "PEM CA bundle: mutual TLS — every client must present a certificate it signed.");
ABSL_FLAG(int, tls_reload_interval_s, 60,
          "How often the TLS files are checked for a rotation, in seconds [1, 86400].");
ABSL_FLAG(std::string, api_keys_file, "",
          "API keys: one `KEY ROLE [NAME]` per line (role generate or admin); clients send "
          "`authorization: Bearer KEY`. Re-read on SIGHUP. Health stays open; grpc.reflection.v1 "
          "is off while keys are on. Empty: every call allowed (trusted networks only).");
ABSL_FLAG(std::string, health_listen, "",
          "Also serve grpc.health.v1 (and nothing else of ours) in plaintext on this address, for "
          "probes that cannot present a client certificate or API key. Empty: none.");
ABSL_FLAG(std::string, gateway_listen, "",
          "Also serve vLLM's engine protocol (vllm.grpc.engine.VllmEngine, for the smg gateway) "
          "and grpc.health.v1 in plaintext without API keys on this address: the smg gateway "
          "sends gRPC workers neither TLS nor a key, so with --api_keys_file or --tls_cert the "
          "gateway connects here, on an address only it can reach (a private interface, a "
          "NetworkPolicy). Empty: the gateway uses --listen.");
ABSL_FLAG(int, max_concurrent_streams, 256,
          "Calls one client connection may have open at once (HTTP/2) [1, 1048576]. Requests "
          "are refused when compressed (gzip/deflate are off) and when their metadata passes "
          "16 KiB.");

// Exit status: 0 after a drain; 1 for a usage error (a flag out of its range above, an unknown
// flag, an unparsable value), an address that cannot be bound, or a model that cannot load (the
// error line says which).

namespace sparsed::server {
namespace {

constexpr char kServiceName[] = "sparsed.v1.Sparsed";
constexpr char kLivenessName[] = "liveness";             // health name of the liveness check
constexpr char kDefaultModel[] = "models/sparsed-tiny";  // served when --model is not given

LogLevel ParseLevel(const std::string& s) {
  if (s == "debug") return LogLevel::kDebug;
  if (s == "warn") return LogLevel::kWarn;
  if (s == "error") return LogLevel::kError;
  return LogLevel::kInfo;
}

// A usage error as one logfmt line, at the level --log_level asks for.
void LogUsageError(const absl::Status& s) {
  Logger(ParseLevel(absl::GetFlag(FLAGS_log_level)))
      .Log(LogLevel::kError, "invalid command line", absl::StrCat("error=", Quote(s.message())));
}

int Main(int argc, char** argv) {
  sparsed::ParseFlags(
      argc, argv, "main.cc",
      "Serves a Hugging Face LLaMA-family model over gRPC (sparsed.v1.Sparsed), skipping inactive "
      "FFN neurons.\n"
      "Example: sparsed --model models/sparsed-tiny --listen 0.0.0.0:50051 --metrics_listen "
      "0.0.0.0:9464",
      // A flag outside its stated range: the same logfmt line as every other usage error below.
      [](const absl::Status& s) { LogUsageError(s); });
  const LogLevel log_level = ParseLevel(absl::GetFlag(FLAGS_log_level));
  const Logger log(log_level);
  EngineOptions eo;
  absl::Status usage = FlagChecks()
                           .OneOf(FLAGS_log_level, {"debug", "info", "warn", "error"})
                           .OneOf(FLAGS_kv_cache_dtype, {"fp32", "bf16"})
                           .status();
  if (usage.ok()) usage = ApplySparsityFlag(eo);
  RouteLibraryLogs(log_level);
  if (!usage.ok()) {
    LogUsageError(usage);
    return kUsageExit;
  }

  // Signals are taken by a dedicated sigwait below: block them in every thread first.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGHUP);  // re-reads --api_keys_file
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

  auto device = ApplyEngineFlags(eo, kDefaultModel);
  if (!device.ok()) {
    log.Log(LogLevel::kError,
            device.status().code() == absl::StatusCode::kFailedPrecondition
                ? "cannot use the requested device"
                : "invalid command line",
            absl::StrCat("error=", Quote(device.status().message())));
    return kUsageExit;
  }
  // Health first, so probes see NOT_SERVING while the model loads.
  grpc::EnableDefaultHealthCheckService(true);
  auto keys = KeyStore::Open(absl::GetFlag(FLAGS_api_keys_file));
  if (!keys.ok()) {
    log.Log(LogLevel::kError, "invalid command line",
            absl::StrCat("error=", Quote(keys.status().message())));
    return kUsageExit;
  }
  if ((*keys)->enabled()) {
    log.Log(LogLevel::kInfo, "API keys on",
            absl::StrCat("file=", absl::GetFlag(FLAGS_api_keys_file)));
  }
  // Reflection describes every method to anyone: grpc.reflection.v1 (ours) is off while API keys
  // are on. v1alpha is Debian's plugin, which registers itself when linked and stays (it
  // describes the public proto only).
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();

  eo.sparsity_file = absl::GetFlag(FLAGS_sparsity_file);
  eo.kv_block_size = absl::GetFlag(FLAGS_kv_block_size);
  eo.kv_cache_bytes = absl::GetFlag(FLAGS_kv_cache_mb) << 20;
  eo.backend.cublas_min_tokens = absl::GetFlag(FLAGS_cuda_cublas_min_tokens);
  eo.backend.cuda_graphs = absl::GetFlag(FLAGS_cuda_graphs);
  eo.kv_cache_fraction = absl::GetFlag(FLAGS_kv_cache_fraction);
  eo.kv_cache_dtype = absl::GetFlag(FLAGS_kv_cache_dtype);
  eo.progress = [&log](int done, int total, const std::string& what) {
    if (done == total || done % 8 == 0) {
      log.Log(LogLevel::kInfo, "loading model",
              absl::StrCat("layers=", done, "/", total, " stage=\"", what, "\""));
    }
  };

  // The server listens first: while the model loads, health says NOT_SERVING and calls get
  // UNAVAILABLE, so orchestrators can tell "starting" from "dead".
  std::string model_name = absl::GetFlag(FLAGS_model_name);
  if (model_name.empty()) {
    std::filesystem::path dir = std::filesystem::path(eo.model_dir).lexically_normal();
    if (!dir.has_filename()) dir = dir.parent_path();  // "--model dir/"
    model_name = dir.filename().string();
  }
  SparsedService service(eo.model_dir, device->device, log_level,
                         StreamLimits{absl::Seconds(absl::GetFlag(FLAGS_stream_write_timeout_s)),
                                      absl::GetFlag(FLAGS_stream_max_pending_tokens)},
                         model_name, keys->get());
  TransportOptions transport;
  transport.tls_cert = absl::GetFlag(FLAGS_tls_cert);
  transport.tls_key = absl::GetFlag(FLAGS_tls_key);
  transport.tls_client_ca = absl::GetFlag(FLAGS_tls_client_ca);
  transport.tls_reload_interval_s = absl::GetFlag(FLAGS_tls_reload_interval_s);
  transport.max_concurrent_streams = absl::GetFlag(FLAGS_max_concurrent_streams);
  auto credentials = MakeServerCredentials(transport);
  // The numeric flags' ranges are checked with every flag's at parse time (cli/flag_checks.h).
  if (!credentials.ok()) {
    log.Log(LogLevel::kError, "invalid command line",
            absl::StrCat("error=", Quote(credentials.status().message())));
    return kUsageExit;
  }
  const std::string listen_addr = absl::GetFlag(FLAGS_listen);
  const bool loopback = absl::StartsWith(listen_addr, "127.") ||
                        absl::StartsWith(listen_addr, "localhost:") ||
                        absl::StartsWith(listen_addr, "[::1]:");
  if (transport.tls_cert.empty() && !loopback) {
    log.Log(LogLevel::kWarn, "plaintext gRPC",
            "note=\"no --tls_cert: anyone who reaches the port can call; for trusted networks "
            "only\"");
  }
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(absl::GetFlag(FLAGS_listen), *credentials, &port);
  ApplyTransportLimits(transport, &builder);
  // gRPC sets SO_REUSEPORT by default, which lets a second daemon (or any process of the same
  // user) bind the same address and take part of the traffic. One address, one daemon.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  if (absl::GetFlag(FLAGS_max_connection_age_s) > 0) {
    // gRPC adds ±10% jitter, so connections of one start do not all close at once.
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_MS,
                               static_cast<int>(1000 * absl::GetFlag(FLAGS_max_connection_age_s)));
    builder.AddChannelArgument(
        GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS,
        static_cast<int>(1000 * absl::GetFlag(FLAGS_max_connection_age_grace_s)));
  }
  builder.RegisterService(&service);
  // The Open Inference Protocol (KServe v2) beside sparsed.v1: same engine loop, limits, metrics.
  OipService oip(
      model_name, [&service] { return service.Env(); }, [&service] { return service.ready(); });
  builder.RegisterService(&oip);
  // vLLM's engine protocol, so that the daemon can be a worker behind the smg gateway (also on
  // --gateway_listen, below).
  VllmServiceEnv vllm_env;
  vllm_env.model_path = eo.model_dir;
  vllm_env.model_name = model_name;
  vllm_env.env = [&service] { return service.Env(); };
  vllm_env.ready = [&service] { return service.ready(); };
  vllm_env.draining = [&service] { return service.draining(); };
  vllm_env.max_num_seqs = absl::GetFlag(FLAGS_max_num_seqs);
  vllm_env.kv_cache_dtype = absl::GetFlag(FLAGS_kv_cache_dtype);
  VllmService vllm(vllm_env);
  builder.RegisterService(&vllm);
  ReflectionV1 reflection_v1({kServiceName, "inference.GRPCInferenceService",
                              "vllm.grpc.engine.VllmEngine", "grpc.health.v1.Health",
                              "grpc.reflection.v1.ServerReflection",
                              "grpc.reflection.v1alpha.ServerReflection"});
  if (!(*keys)->enabled()) builder.RegisterService(&reflection_v1);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || port == 0) {
    const std::string why = WhyCannotBind(absl::GetFlag(FLAGS_listen));
    log.Log(LogLevel::kError, "cannot listen",
            absl::StrCat("listen=", absl::GetFlag(FLAGS_listen), " error=",
                         Quote(why.empty() ? "gRPC could not listen on this address" : why)));
    return 1;
  }
  // Every listener's health service says the same: the main one's, and --health_listen's.
  struct HealthSet {
    std::vector<grpc::HealthCheckServiceInterface*> all;
    void SetServingStatus(const std::string& name, bool on) {
      for (auto* h : all) h->SetServingStatus(name, on);
    }
  } health_set{{server->GetHealthCheckService()}};
  auto* health = &health_set;
  // A second, plaintext listener on `addr` (flag `flag`) serving health and `extra` (if any);
  // null when it cannot listen (logged). Its health says what every listener's says.
  auto start_plaintext = [&](const char* flag, const std::string& addr,
                             grpc::Service* extra) -> std::unique_ptr<grpc::Server> {
    grpc::ServerBuilder b;
    int bound = 0;
    b.AddListeningPort(addr, grpc::InsecureServerCredentials(), &bound);
    b.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
    ApplyTransportLimits(transport, &b);
    if (extra != nullptr) b.RegisterService(extra);
    std::unique_ptr<grpc::Server> s = b.BuildAndStart();
    if (!s || bound == 0) {
      const std::string why = WhyCannotBind(addr);
      log.Log(LogLevel::kError, "cannot listen",
              absl::StrCat(flag, "=", addr, " error=",
                           Quote(why.empty() ? "gRPC could not listen on this address" : why)));
      return nullptr;
    }
    health_set.all.push_back(s->GetHealthCheckService());
    return s;
  };
  std::unique_ptr<grpc::Server> health_server;
  if (const std::string hl = absl::GetFlag(FLAGS_health_listen); !hl.empty()) {
    health_server = start_plaintext("health_listen", hl, nullptr);
    if (!health_server) {
      server->Shutdown();
      return 1;
    }
  }
  // The gateway's listener: the worker protocol without keys (see --gateway_listen's help).
  VllmServiceEnv gateway_env = vllm_env;
  gateway_env.env = [&service] {
    CallEnv e = service.Env();
    e.keys = nullptr;
    return e;
  };
  VllmService gateway_vllm(std::move(gateway_env));
  std::unique_ptr<grpc::Server> gateway_server;
  if (const std::string gl = absl::GetFlag(FLAGS_gateway_listen); !gl.empty()) {
    gateway_server = start_plaintext("gateway_listen", gl, &gateway_vllm);
    if (!gateway_server) {
      server->Shutdown();
      if (health_server) health_server->Shutdown();
      return 1;
    }
  }
  health->SetServingStatus(kServiceName, false);
  health->SetServingStatus("", false);
  // Liveness apart from readiness: "liveness" is SERVING while the process can serve at all —
  // loading and draining included — and NOT_SERVING only when the engine is dead, so a liveness
  // probe restarts a broken daemon and never a slow-loading or draining one.
  health->SetServingStatus(kLivenessName, true);
  log.Log(
      LogLevel::kInfo, "listening",
      absl::StrCat("grpc=", absl::GetFlag(FLAGS_listen), " port=", port, " status=NOT_SERVING"));

  auto registry = std::make_shared<prometheus::Registry>();
  const prometheus::Labels model_label = {{"model_name", model_name}};
  // Metrics are served from the start, so a scrape during a long model load sees the process up
  // and loading (sparsed_model_loading 1) rather than down.
  std::unique_ptr<prometheus::Exposer> exposer;
  if (!absl::GetFlag(FLAGS_metrics_listen).empty()) {
    try {
      exposer = std::make_unique<prometheus::Exposer>(absl::GetFlag(FLAGS_metrics_listen));
    } catch (const std::exception& e) {
      // The metrics server's own message does not say why; ask the kernel.
      const std::string why = WhyCannotBind(absl::GetFlag(FLAGS_metrics_listen));
      log.Log(LogLevel::kError, "cannot serve metrics",
              absl::StrCat("listen=", absl::GetFlag(FLAGS_metrics_listen),
                           " error=", Quote(why.empty() ? e.what() : why)));
      server->Shutdown();
      return 1;
    }
    exposer->RegisterCollectable(registry);
  }
  prometheus::Gauge& loading = prometheus::BuildGauge()
                                   .Name("sparsed_model_loading")
                                   .Help("1 while the model loads, then 0")
                                   .Labels(model_label)
                                   .Register(*registry)
                                   .Add({});
  loading.Set(1);

  log.Log(LogLevel::kInfo, "loading model", absl::StrCat("dir=", eo.model_dir));
  const absl::Time t0 = absl::Now();
  auto engine = Engine::Load(eo);
  if (!engine.ok()) {
    log.Log(LogLevel::kError, "cannot load model",
            absl::StrCat("error=", Quote(engine.status().message())));
    server->Shutdown();
    return 1;
  }
  loading.Set(0);
  const ModelConfig& c = (*engine)->config();
  log.Log(LogLevel::kInfo, "model loaded",
          absl::StrCat("type=", c.model_type, " layers=", c.num_layers, " hidden=", c.hidden_size,
                       " ffn=", c.intermediate_size, " activation=", ActivationName(c.activation),
                       " weights=", DTypeName((*engine)->Info().weight_dtype), " linear_weight_mb=",
                       static_cast<int64_t>((*engine)->WeightBytesPerStep(1.0) / 1e6),
                       " seconds=", absl::ToDoubleSeconds(absl::Now() - t0)));
  log.Log(LogLevel::kInfo, "device",
          absl::StrCat("device=", device->device, " backend=\"", (*engine)->backend().Describe(),
                       "\" reason=\"", device->reason, "\""));
  const auto& profile = (*engine)->sparsity_profile();
  log.Log(LogLevel::kInfo, "sparsity",
          absl::StrCat("mode=", SparsityModeName((*engine)->sparsity_mode()),
                       profile ? absl::StrCat(" cett=", profile->cett) : ""));
  log.Log(
      LogLevel::kInfo, "kv cache",
      absl::StrCat("blocks=", (*engine)->kv_blocks(), " block_size=", (*engine)->kv_block_size(),
                   " tokens=", (*engine)->kv_blocks() * (*engine)->kv_block_size(),
                   " dtype=", absl::GetFlag(FLAGS_kv_cache_dtype),
                   " prefix_cache=", absl::GetFlag(FLAGS_prefix_cache) ? "on" : "off",
                   " prefix_cache_max_fraction=", absl::GetFlag(FLAGS_prefix_cache_max_fraction)));
  const std::string mode(SparsityModeName((*engine)->sparsity_mode()));
  const int layers = static_cast<int>(c.num_layers);

  Metrics metrics(*registry, layers, mode, model_label);
  prometheus::BuildGauge()
      .Name("sparsed_build_info")
      .Help("Build information (value 1)")
      .Labels(model_label)
      .Register(*registry)
      .Add({{"version", SPARSED_VERSION}})
      .Set(1);
  prometheus::BuildGauge()
      .Name("sparsed_model_info")
      .Help("The served model (value 1)")
      .Labels(model_label)
      .Register(*registry)
      .Add({{"model_type", c.model_type},
            {"activation", std::string(ActivationName(c.activation))},
            {"dtype", std::string(DTypeName((*engine)->weights().embed.dtype))},
            {"layers", std::to_string(layers)},
            {"device", device->device}})
      .Set(1);
  if (profile) {
    prometheus::BuildGauge()
        .Name("sparsed_cett_target")
        .Help("The CETT target of threshold mode's calibration (sparsity.json)")
        .Labels(model_label)
        .Register(*registry)
        .Add({})
        .Set(profile->cett);
  }

  EngineLoopOptions lo;
  lo.limits.max_num_seqs = absl::GetFlag(FLAGS_max_num_seqs);
  lo.limits.priority_preemption = absl::GetFlag(FLAGS_priority_preemption);
  lo.limits.max_priority_preemptions = absl::GetFlag(FLAGS_max_priority_preemptions);
  lo.limits.max_num_batched_tokens = absl::GetFlag(FLAGS_max_num_batched_tokens);
  lo.limits.max_prefill_chunk = absl::GetFlag(FLAGS_max_prefill_chunk);
  lo.max_waiting_requests = absl::GetFlag(FLAGS_max_waiting_requests);
  lo.max_waiting_per_owner = absl::GetFlag(FLAGS_max_waiting_per_key);
  lo.prefix_cache.enabled = absl::GetFlag(FLAGS_prefix_cache);
  lo.prefix_cache.max_fraction = absl::GetFlag(FLAGS_prefix_cache_max_fraction);
  lo.unhealthy_after_failed_steps = absl::GetFlag(FLAGS_unhealthy_after_failed_steps);
  // Health follows the engine: NOT_SERVING after repeated failed steps (a dead device), SERVING
  // again after a step succeeds, NOT_SERVING for good once draining. health_mu orders the engine
  // loop's changes against the drain's.
  std::mutex health_mu;
  bool engine_healthy = true;  // engine-loop thread only
  auto set_health = [&](bool on) {
    health->SetServingStatus(kServiceName, on);
    health->SetServingStatus("", on);
    service.SetReady(on);
  };
  EngineLoop loop(*std::move(engine), lo, [&](const StepReport& r) {
    metrics.OnStep(r);
    if (r.engine_healthy == engine_healthy) return;
    engine_healthy = r.engine_healthy;
    log.Log(engine_healthy ? LogLevel::kInfo : LogLevel::kError,
            engine_healthy ? "engine healthy again" : "engine unhealthy",
            absl::StrCat("failed_steps_in_a_row=", r.consecutive_failed_steps,
                         " status=", engine_healthy ? "SERVING" : "NOT_SERVING"));
    std::lock_guard<std::mutex> l(health_mu);
    health->SetServingStatus(kLivenessName, engine_healthy);
    if (!service.draining()) set_health(engine_healthy);
  });
  service.Attach(&loop, &metrics);
  {
    std::lock_guard<std::mutex> l(health_mu);
    set_health(true);
  }
  log.Log(LogLevel::kInfo, "serving",
          absl::StrCat("grpc=", absl::GetFlag(FLAGS_listen),
                       " metrics=", absl::GetFlag(FLAGS_metrics_listen), " status=SERVING"));

  int sig = 0;
  while (sigwait(&sigs, &sig) == 0 && sig == SIGHUP) {
    if (!(*keys)->enabled()) continue;
    const absl::Status st = (*keys)->Reload();
    if (st.ok()) {
      log.Log(LogLevel::kInfo, "API keys reloaded", "");
    } else {
      log.Log(LogLevel::kError, "API keys not reloaded; the previous keys stay",
              absl::StrCat("error=", Quote(st.message())));
    }
  }
  log.Log(LogLevel::kInfo, "draining",
          absl::StrCat("signal=", sig, " timeout_s=", absl::GetFlag(FLAGS_shutdown_timeout_s)));
  {
    std::lock_guard<std::mutex> l(health_mu);
    service.SetDraining(true);
    set_health(false);
  }
  loop.StopAccepting();
  // GOAWAY at once: clients send new calls to other replicas from now on, while the calls in
  // flight run on. Server::Shutdown blocks until every call has ended, so it runs beside the
  // drain below, which ends the calls still running at the timeout.
  const absl::Time until = absl::Now() + absl::Seconds(absl::GetFlag(FLAGS_shutdown_timeout_s));
  std::thread goaway([&server] { server->Shutdown(); });
  std::thread gateway_goaway([&gateway_server] {
    if (gateway_server) gateway_server->Shutdown();
  });
  while (absl::Now() < until && loop.Unfinished() > 0) absl::SleepFor(absl::Milliseconds(20));
  const int left = loop.Unfinished();
  loop.Shutdown();  // cancels whatever is left; their handlers then return at once
  // Let the handlers send their final status (up to 2 s), then end what no request of ours holds
  // (open health watches, reflection streams) instead of waiting for their clients.
  const absl::Time stop_from = absl::Now();
  for (int i = 0; i < 400 && service.running() > 0; ++i) absl::SleepFor(absl::Milliseconds(5));
  grpc_server_cancel_all_calls(server->c_server());
  if (gateway_server) grpc_server_cancel_all_calls(gateway_server->c_server());
  goaway.join();
  gateway_goaway.join();
  if (health_server) health_server->Shutdown(std::chrono::system_clock::now());
  log.Log(LogLevel::kInfo, "stopped",
          absl::StrCat("cancelled=", left,
                       " shutdown_s=", absl::ToDoubleSeconds(absl::Now() - stop_from)));
  return 0;
}

}  // namespace
}  // namespace sparsed::server

int main(int argc, char** argv) { return sparsed::server::Main(argc, argv); }
