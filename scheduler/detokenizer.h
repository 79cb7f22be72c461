// Incremental detokenization: turns a growing list of generated ids into UTF-8-safe text deltas
// and applies stop strings.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/tokenizer/tokenizer.h"

namespace sparsed {

// Thread-safety: none; one per sequence.
class IncrementalDetokenizer {
 public:
  // `tokenizer` must outlive this object. `context`: ids just before the generated ones (the
  // prompt's last token); the generated ids are decoded after it, so a first piece that starts
  // a word keeps its leading space (SentencePiece drops it at the start of a text).
  IncrementalDetokenizer(const Tokenizer* tokenizer, std::vector<std::string> stop_strings,
                         std::vector<int32_t> context = {});

  struct Delta {
    std::string text;      // newly safe text
    bool stopped = false;  // a stop string was found; `text` ends just before it
    int stop_index = -1;   // when stopped: which of the stop strings (the earliest in the text)
  };
  // Adds generated ids; returns the text that is now final. Text is held back while it ends in
  // an incomplete UTF-8 character (or a replacement character from a partial byte sequence) or
  // could still be the start of a stop string.
  absl::StatusOr<Delta> Push(const std::vector<int32_t>& ids);
  // At the end of generation: everything not yet emitted (still cut at a stop string).
  absl::StatusOr<std::string> Flush();

  // Push and Flush in two halves, so a caller can decode many sequences in one tokenizer call
  // (Tokenizer::DecodeAfterEach over context() and ids()): Append the new ids, decode, then
  // Apply the decoded text (and FlushWith the same text at the end of generation).
  void Append(const std::vector<int32_t>& ids) { ids_.insert(ids_.end(), ids.begin(), ids.end()); }
  const std::vector<int32_t>& context() const { return context_; }
  const std::vector<int32_t>& ids() const { return ids_; }
  // `text`: Tokenizer::DecodeAfter(context(), ids()) (or its error).
  absl::StatusOr<Delta> Apply(const absl::StatusOr<std::string>& text);
  absl::StatusOr<std::string> FlushWith(const absl::StatusOr<std::string>& text);
  const std::string& emitted() const { return emitted_; }

 private:
  const Tokenizer* tokenizer_;
  std::vector<std::string> stops_;
  std::vector<int32_t> context_;
  std::vector<int32_t> ids_;
  std::string emitted_;
};

// Length of the longest prefix of `s` that ends on a complete UTF-8 character.
size_t Utf8CompletePrefix(const std::string& s);

}  // namespace sparsed
