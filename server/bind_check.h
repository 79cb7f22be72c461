// Why a listening address cannot be bound: gRPC and the metrics server report a failed bind
// without the reason, so the daemon asks the kernel itself after such a failure.
#pragma once

#include <string>

namespace sparsed::server {

// Tries to bind a TCP socket to `address` ("host:port", "[v6]:port", optionally prefixed with
// "ipv4:", "ipv6:" or "dns:") the way a server would (SO_REUSEADDR, no SO_REUSEPORT) and releases
// it at once. Returns the kernel's reason in lower case ("address already in use", "permission
// denied", "cannot assign requested address"), "cannot resolve host ..." for an unknown host, or ""
// when the address can be bound now (the failure had another cause).
std::string WhyCannotBind(const std::string& address);

}  // namespace sparsed::server
