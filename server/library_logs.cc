#include "server/library_logs.h"

#include <google/protobuf/stubs/logging.h>
#include <grpc/support/log.h>

#include <string>

#include "absl/strings/str_cat.h"

namespace sparsed::server {
namespace {

void Write(LogLevel min, LogLevel level, const char* library, const char* file, int line,
           absl::string_view message) {
  Logger(min).Log(level, library,
                  absl::StrCat("source=", Quote(absl::StrCat(file ? file : "?", ":", line)),
                               " detail=", Quote(message)));
}

// One instantiation per --log_level: the libraries take plain function pointers without user
// data, and the level is a template argument rather than a global.
template <LogLevel kMin>
void GrpcLog(gpr_log_func_args* a) {
  // gRPC's info lines describe its own set-up (pollers, epoll): debug for the daemon.
  const LogLevel level = a->severity == GPR_LOG_SEVERITY_ERROR ? LogLevel::kWarn : LogLevel::kDebug;
  Write(kMin, level, "grpc", a->file, a->line, a->message ? a->message : "");
}

template <LogLevel kMin>
void ProtobufLog(google::protobuf::LogLevel severity, const char* file, int line,
                 const std::string& message) {
  const LogLevel level =
      severity == google::protobuf::LOGLEVEL_FATAL ? LogLevel::kError : LogLevel::kDebug;
  Write(kMin, level, "protobuf", file, line, message);
}

template <LogLevel kMin>
void Install() {
  gpr_set_log_function(&GrpcLog<kMin>);
  google::protobuf::SetLogHandler(&ProtobufLog<kMin>);
}

}  // namespace

void RouteLibraryLogs(LogLevel min) {
  // gRPC filters before calling the function: let through what --log_level shows.
  gpr_set_log_verbosity(min == LogLevel::kDebug ? GPR_LOG_SEVERITY_DEBUG : GPR_LOG_SEVERITY_ERROR);
  switch (min) {
    case LogLevel::kDebug:
      return Install<LogLevel::kDebug>();
    case LogLevel::kInfo:
      return Install<LogLevel::kInfo>();
    case LogLevel::kWarn:
      return Install<LogLevel::kWarn>();
    case LogLevel::kError:
      return Install<LogLevel::kError>();
  }
}

}  // namespace sparsed::server
