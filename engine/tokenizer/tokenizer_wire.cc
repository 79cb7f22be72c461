#include "engine/tokenizer/tokenizer_wire.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

namespace sparsed::tokenizer_wire {

bool WriteAll(int fd, const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

bool ReadAll(int fd, void* data, size_t n) {
  char* p = static_cast<char*>(data);
  while (n > 0) {
    const ssize_t r = read(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

bool WriteFrame(int fd, uint8_t tag, const std::string& payload) {
  if (payload.size() + 1 > kMaxFrame) return false;
  // One buffer, one send: a small request costs one system call.
  std::string frame(5 + payload.size(), '\0');
  const uint32_t len = static_cast<uint32_t>(payload.size() + 1);
  std::memcpy(frame.data(), &len, 4);
  frame[4] = static_cast<char>(tag);
  if (!payload.empty()) std::memcpy(frame.data() + 5, payload.data(), payload.size());
  return WriteAll(fd, frame.data(), frame.size());
}

bool ReadFrame(int fd, uint8_t* tag, std::string* payload) {
  uint32_t len = 0;
  if (!ReadAll(fd, &len, 4) || len == 0 || len > kMaxFrame) return false;
  if (!ReadAll(fd, tag, 1)) return false;
  payload->resize(len - 1);
  return len == 1 || ReadAll(fd, payload->data(), len - 1);
}

}  // namespace sparsed::tokenizer_wire
