// Structured logs (logfmt) on stderr: one line per event, quiet by default (info and above).
#pragma once

#include <cstdio>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace sparsed::server {

// A logfmt value in double quotes, with backslashes, quotes and control characters escaped, so
// that text from a client or a library can never break a line or forge a field.
inline std::string Quote(absl::string_view v) {
  std::string out = "\"";
  for (const char c : v) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += ' ';
    } else {
      out += c;
    }
  }
  out += '"';
  return out;
}

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
