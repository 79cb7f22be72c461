// SentencePiece tokenizer. SentencePiece itself runs in separate processes (sparsed-tokenizer, see
// tokenizer_process.h): its bundled protobuf cannot share a process with gRPC's, and a process of
// its own keeps the daemon whole if the library fails on some input.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/tokenizer/tokenizer_process.h"

namespace sparsed {

// Thread-safety: every method is const and safe to call concurrently. Calls run on a pool of
// tokenizer processes: one is started at Load, more (up to max_processes) when calls overlap,
// and a call waits for a free one beyond that. A process that dies fails the call it was serving
// (INTERNAL) and is replaced by the next call.
class Tokenizer {
 public:
  // Loads `model_path` (tokenizer.model). Errors name the file. max_processes <= 0: one per core,
  // at most 8.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> Load(const std::string& model_path,
                                                         int max_processes = 0);
  ~Tokenizer();

  absl::StatusOr<std::vector<int32_t>> Encode(absl::string_view text) const;
  // Ids outside the tokenizer's vocabulary decode to nothing.
  absl::StatusOr<std::string> Decode(const std::vector<int32_t>& ids) const;
  // The text of `ids` as it reads after `context` (e.g. a prompt's last token): decoded together,
  // with the context's own text removed, so a first piece that starts a word keeps its leading
  // space (SentencePiece drops it at the start of a text). Plain Decode(ids) when the context is
  // empty or its text merges with the continuation's (byte pieces).
  absl::StatusOr<std::string> DecodeAfter(const std::vector<int32_t>& context,
                                          const std::vector<int32_t>& ids) const;
  // DecodeAfter for many (context, ids) pairs in one call (one round trip to a tokenizer
  // process): the engine loop's whole step. Results in the order of `items`; the outer status
  // fails only when the call itself does.
  struct DecodeAfterItem {
    const std::vector<int32_t>* context;
    const std::vector<int32_t>* ids;
  };
  absl::StatusOr<std::vector<absl::StatusOr<std::string>>> DecodeAfterEach(
      const std::vector<DecodeAfterItem>& items) const;
  int vocab_size() const { return info_.vocab_size; }
  int bos_id() const { return info_.bos_id; }
  int eos_id() const { return info_.eos_id; }
  // The most UTF-8 bytes of text one token stands for, allowing for normalization (compatibility
  // forms such as full-width letters, runs of whitespace) shrinking the input up to 4×: four times
  // the longest piece. A text of more than n × this many bytes cannot encode to n tokens or fewer
  // in practice; the server refuses such prompts before tokenizing them.
  int64_t max_bytes_per_token() const { return 4 * static_cast<int64_t>(info_.max_piece_bytes); }
  // Processes started so far (the first included), for tests and metrics.
  int processes_started() const;

 private:
  Tokenizer(std::string model_path, int max_processes)
      : model_path_(std::move(model_path)), max_processes_(max_processes) {}
  // One request on a pooled process.
  absl::StatusOr<std::string> Call(uint8_t op, const std::string& payload) const;

  const std::string model_path_;
  const int max_processes_;
  TokenizerProcess::Info info_;
  // std::mutex rather than absl::Mutex: ThreadSanitizer sees it (Debian's Abseil is not
  // instrumented).
  mutable std::mutex mu_;
  mutable std::condition_variable freed_;
  mutable std::vector<std::unique_ptr<TokenizerProcess>> idle_;  // guarded by mu_
  mutable int live_ = 0;                                         // idle + in use; guarded by mu_
  mutable int started_ = 0;                                      // guarded by mu_
};

// Trains a SentencePiece model with the given trainer flags (used by tools and tests).
absl::Status TrainSentencePiece(const std::string& flags);

}  // namespace sparsed
