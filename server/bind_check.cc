#include "server/bind_check.h"

#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"

namespace sparsed::server {
namespace {

// Splits "host:port" / "[v6]:port"; false when there is no port.
bool SplitHostPort(absl::string_view a, std::string* host, std::string* port) {
  for (absl::string_view scheme : {"ipv4:", "ipv6:", "dns:"}) {
    if (absl::ConsumePrefix(&a, scheme)) break;
  }
  if (absl::StartsWith(a, "[")) {
    const size_t close = a.find(']');
    if (close == absl::string_view::npos || close + 1 >= a.size() || a[close + 1] != ':')
      return false;
    *host = std::string(a.substr(1, close - 1));
    *port = std::string(a.substr(close + 2));
    return true;
  }
  const size_t colon = a.rfind(':');
  if (colon == absl::string_view::npos) return false;
  *host = std::string(a.substr(0, colon));
  *port = std::string(a.substr(colon + 1));
  return true;
}

}  // namespace

std::string WhyCannotBind(const std::string& address) {
  std::string host, port;
  if (!SplitHostPort(address, &host, &port)) return "";
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* res = nullptr;
  const int gai = getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints, &res);
  if (gai != 0) return absl::StrCat("cannot resolve host \"", host, "\": ", gai_strerror(gai));
  std::string why;
  for (addrinfo* ai = res; ai != nullptr && why.empty(); ai = ai->ai_next) {
    const int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) continue;
    const int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0) why = absl::AsciiStrToLower(strerror(errno));
    close(fd);
  }
  freeaddrinfo(res);
  return why;
}

}  // namespace sparsed::server
