// SentencePiece tokenizer, reached through the isolated plugin (see spm_plugin_api.h).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace sparsed {

class SpmPlugin;

// Thread-safety: Encode/Decode are const and safe to call concurrently (SentencePiece's
// processor is immutable after load).
class Tokenizer {
 public:
  // Loads `model_path` (tokenizer.model). Errors name the file.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> Load(const std::string& model_path);
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
  int vocab_size() const;
  int bos_id() const;
  int eos_id() const;

 private:
  Tokenizer() = default;
  std::shared_ptr<SpmPlugin> plugin_;
  void* handle_ = nullptr;
};

// Trains a SentencePiece model with the given trainer flags (used by tools and tests).
absl::Status TrainSentencePiece(const std::string& flags);

}  // namespace sparsed
