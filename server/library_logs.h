// The log lines of gRPC and libprotobuf, routed into the daemon's logfmt stream on stderr and
// filtered by --log_level, instead of their own formats.
#pragma once

#include "server/log.h"

namespace sparsed::server {

// Call once at start-up, before the server is built. gRPC's errors become `warn` lines
// (`msg="grpc"`, with the source file and line); its info and debug lines are `debug` lines.
// libprotobuf's messages are about a client's malformed request, so they are `debug` lines: a
// client must not be able to fill the log. Fatal ones are `error` lines.
void RouteLibraryLogs(LogLevel min);

}  // namespace sparsed::server
