// One sparsed-tokenizer process (see tokenizer_helper_main.cc) and the socket to it.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace sparsed {

// Thread-safety: none; one caller at a time (Tokenizer keeps a pool of them).
class TokenizerProcess {
 public:
  struct Info {
    int32_t vocab_size = 0, bos_id = 0, eos_id = 0;
    int32_t max_piece_bytes = 1;  // the longest piece, in UTF-8 bytes
  };

  // Starts `sparsed-tokenizer serve` on `model_path` and waits until it has loaded the model.
  // FAILED_PRECONDITION when the program cannot be found or started; INVALID_ARGUMENT naming the
  // file when the model cannot be loaded.
  static absl::StatusOr<std::unique_ptr<TokenizerProcess>> Start(const std::string& model_path);
  // Runs `sparsed-tokenizer train` with SentencePieceTrainer flags and waits for it to finish.
  static absl::Status Train(const std::string& flags);

  // Closes the socket (the process then exits) and reaps the process.
  ~TokenizerProcess();
  TokenizerProcess(const TokenizerProcess&) = delete;
  TokenizerProcess& operator=(const TokenizerProcess&) = delete;

  const Info& info() const { return info_; }
  // One request (an op of tokenizer_wire.h) and its result payload. The op's own failure is
  // INVALID_ARGUMENT with the process's message; a lost process (it died, or the socket broke) is
  // INTERNAL, and broken() is true from then on.
  absl::StatusOr<std::string> Call(uint8_t op, const std::string& payload);
  bool broken() const { return fd_ < 0; }

 private:
  TokenizerProcess(pid_t pid, int fd) : pid_(pid), fd_(fd) {}
  // Closes the socket and reaps the process; describes how it ended ("exit 1", "signal 11").
  std::string Stop();

  pid_t pid_ = -1;
  int fd_ = -1;
  Info info_;
};

}  // namespace sparsed
