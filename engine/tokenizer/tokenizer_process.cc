#include "engine/tokenizer/tokenizer_process.h"

#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/common/plugin_path.h"
#include "engine/tokenizer/tokenizer_wire.h"

extern char** environ;

namespace sparsed {
namespace {

namespace wire = tokenizer_wire;

// The fd number the child finds its end of the socket at.
constexpr int kChildFd = 3;

absl::StatusOr<std::string> FindProgram() {
  std::string tried;
  for (const std::string& path : PluginCandidates("sparsed-tokenizer")) {
    if (access(path.c_str(), X_OK) == 0) return path;
    absl::StrAppend(&tried, " ", path);
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "tokenizer program sparsed-tokenizer not found (set SPARSED_PLUGIN_DIR); tried:", tried));
}

// Spawns `sparsed-tokenizer MODE 3 ARG` with one end of a new socket pair as its fd 3.
absl::Status Spawn(const std::string& mode, const std::string& arg, pid_t* pid, int* fd) {
  auto program = FindProgram();
  if (!program.ok()) return program.status();
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
    return absl::InternalError(absl::StrCat("socketpair: ", strerror(errno)));
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, sv[1], kChildFd);  // dup2 clears CLOEXEC
  const std::string fd_arg = std::to_string(kChildFd);
  std::vector<char*> argv = {program->data(), const_cast<char*>(mode.c_str()),
                             const_cast<char*>(fd_arg.c_str()), const_cast<char*>(arg.c_str()),
                             nullptr};
  const int rc = posix_spawn(pid, program->c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(sv[1]);
  if (rc != 0) {
    close(sv[0]);
    return absl::FailedPreconditionError(
        absl::StrCat("cannot start ", *program, ": ", strerror(rc)));
  }
  *fd = sv[0];
  return absl::OkStatus();
}

std::string Describe(int status) {
  if (WIFEXITED(status)) return absl::StrCat("exit ", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return absl::StrCat("signal ", WTERMSIG(status));
  return "unknown end";
}

}  // namespace

absl::StatusOr<std::unique_ptr<TokenizerProcess>> TokenizerProcess::Start(
    const std::string& model_path) {
  pid_t pid = -1;
  int fd = -1;
  if (absl::Status s = Spawn("serve", model_path, &pid, &fd); !s.ok()) return s;
  std::unique_ptr<TokenizerProcess> p(new TokenizerProcess(pid, fd));
  uint8_t status = 0;
  std::string payload;
  if (!wire::ReadFrame(fd, &status, &payload)) {
    const std::string how = p->Stop();
    return absl::InternalError(
        absl::StrCat(model_path, ": the tokenizer process ended while loading it (", how, ")"));
  }
  if (status != wire::kOk || payload.size() != 16) {
    return absl::InvalidArgumentError(
        absl::StrCat(model_path, ": cannot load SentencePiece model: ", payload));
  }
  std::memcpy(&p->info_.vocab_size, payload.data(), 4);
  std::memcpy(&p->info_.bos_id, payload.data() + 4, 4);
  std::memcpy(&p->info_.eos_id, payload.data() + 8, 4);
  std::memcpy(&p->info_.max_piece_bytes, payload.data() + 12, 4);
  return p;
}

absl::Status TokenizerProcess::Train(const std::string& flags) {
  pid_t pid = -1;
  int fd = -1;
  if (absl::Status s = Spawn("train", flags, &pid, &fd); !s.ok()) return s;
  TokenizerProcess p(pid, fd);
  uint8_t status = 0;
  std::string payload;
  const bool answered = wire::ReadFrame(fd, &status, &payload);
  const std::string how = p.Stop();
  if (!answered) {
    return absl::InternalError(
        absl::StrCat("SentencePiece training failed: the tokenizer process ended (", how, ")"));
  }
  if (status != wire::kOk)
    return absl::InternalError(absl::StrCat("SentencePiece training failed: ", payload));
  return absl::OkStatus();
}

TokenizerProcess::~TokenizerProcess() { Stop(); }

std::string TokenizerProcess::Stop() {
  if (fd_ >= 0) {
    close(fd_);
    fd_ = -1;
  }
  if (pid_ <= 0) return "stopped";
  // The process exits on end of stream; a process stuck in a request is killed after a grace.
  int status = 0;
  for (int i = 0; i < 200; ++i) {
    const pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r < 0 && errno == EINTR) continue;
    if (r != 0) {  // reaped, or not our child any more
      pid_ = -1;
      return r > 0 ? Describe(status) : "ended";
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(i < 20 ? 1 : 10));
  }
  kill(pid_, SIGKILL);
  while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  pid_ = -1;
  return Describe(status);
}

absl::StatusOr<std::string> TokenizerProcess::Call(uint8_t op, const std::string& payload) {
  if (fd_ < 0) return absl::InternalError("the tokenizer process is gone");
  uint8_t status = 0;
  std::string out;
  if (!wire::WriteFrame(fd_, op, payload) || !wire::ReadFrame(fd_, &status, &out)) {
    const std::string how = Stop();
    return absl::InternalError(
        absl::StrCat("the tokenizer process ended (", how, "); the next request starts a new one"));
  }
  if (status != wire::kOk) return absl::InvalidArgumentError(out);
  return out;
}

}  // namespace sparsed
