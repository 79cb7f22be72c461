// Structured logs (logfmt) on stderr: one line per event, quiet by default (info and above).
#pragma once

#include <cstdio>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace sparsed::server {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

// Thread-safety: Log() may be called from any thread (one fprintf per line).
class Logger {
 public:
  explicit Logger(LogLevel min) : min_(min) {}
  bool enabled(LogLevel l) const { return l >= min_; }
  // `fields` is already logfmt ("key=value key2=value2").
  void Log(LogLevel l, const std::string& msg, const std::string& fields = "") const {
    if (!enabled(l)) return;
    static constexpr const char* kNames[] = {"debug", "info", "warn", "error"};
    const std::string line = absl::StrCat(
        "ts=", absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone()),
        " level=", kNames[static_cast<int>(l)], " msg=\"", msg, "\"", fields.empty() ? "" : " ",
        fields, "\n");
    std::fputs(line.c_str(), stderr);
  }

 private:
  LogLevel min_;
};

}  // namespace sparsed::server
