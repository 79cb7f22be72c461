#include "scheduler/detokenizer.h"

#include <algorithm>

namespace sparsed {

size_t Utf8CompletePrefix(const std::string& s) {
  // Walk back over at most 3 continuation bytes to the last lead byte.
  size_t i = s.size();
  int back = 0;
  while (i > 0 && back < 4 && (static_cast<unsigned char>(s[i - 1]) & 0xC0) == 0x80) {
    --i;
    ++back;
  }
  if (i == 0) return back == 0 ? 0 : s.size();  // all continuation bytes: malformed, pass through
  const unsigned char lead = static_cast<unsigned char>(s[i - 1]);
  int need = 0;
  if (lead >= 0xF0)
    need = 3;
  else if (lead >= 0xE0)
    need = 2;
  else if (lead >= 0xC0)
    need = 1;
  return back >= need ? s.size() : i - 1;
}

IncrementalDetokenizer::IncrementalDetokenizer(const Tokenizer* tokenizer,
                                               std::vector<std::string> stop_strings,
                                               std::vector<int32_t> context)
    : tokenizer_(tokenizer), stops_(std::move(stop_strings)), context_(std::move(context)) {}

absl::StatusOr<IncrementalDetokenizer::Delta> IncrementalDetokenizer::Push(
    const std::vector<int32_t>& ids) {
  Append(ids);
  return Apply(tokenizer_->DecodeAfter(context_, ids_));
}

absl::StatusOr<std::string> IncrementalDetokenizer::Flush() {
  return FlushWith(tokenizer_->DecodeAfter(context_, ids_));
}

absl::StatusOr<IncrementalDetokenizer::Delta> IncrementalDetokenizer::Apply(
    const absl::StatusOr<std::string>& full) {
  if (!full.ok()) return full.status();
  const std::string& text = *full;
  Delta d;
  // A stop string anywhere in the text not yet emitted (it may straddle the emitted boundary).
  size_t cut = std::string::npos;
  for (size_t i = 0; i < stops_.size(); ++i) {
    const std::string& s = stops_[i];
    const size_t from = emitted_.size() >= s.size() ? emitted_.size() - s.size() + 1 : 0;
    const size_t at = text.find(s, from);
    if (at != std::string::npos && at < cut) {
      cut = at;
      d.stop_index = static_cast<int>(i);
    }
  }
  if (cut != std::string::npos) {
    d.stopped = true;
    if (cut > emitted_.size() && text.compare(0, emitted_.size(), emitted_) == 0) {
      d.text = text.substr(emitted_.size(), cut - emitted_.size());
      emitted_ += d.text;
    }
    return d;
  }
  // Safe end: complete UTF-8, no trailing replacement character (bytes still arriving), and no
  // suffix that could begin a stop string.
  size_t safe = Utf8CompletePrefix(text);
  static const std::string kReplacement = "\xEF\xBF\xBD";
  while (safe >= kReplacement.size() &&
         text.compare(safe - kReplacement.size(), kReplacement.size(), kReplacement) == 0) {
    safe -= kReplacement.size();
  }
  for (const std::string& s : stops_) {
    for (size_t len = std::min(s.size() - 1, safe); len > 0; --len) {
      if (text.compare(safe - len, len, s, 0, len) == 0) {
        safe -= len;
        break;
      }
    }
  }
  safe = Utf8CompletePrefix(text.substr(0, safe));
  // Emit only when the text so far is stable (decoding more ids never rewrites emitted text).
  if (safe > emitted_.size() && text.compare(0, emitted_.size(), emitted_) == 0) {
    d.text = text.substr(emitted_.size(), safe - emitted_.size());
    emitted_ += d.text;
  }
  return d;
}

absl::StatusOr<std::string> IncrementalDetokenizer::FlushWith(
    const absl::StatusOr<std::string>& full) {
  if (!full.ok()) return full.status();
  const std::string& text = *full;
  size_t end = text.size();
  for (const std::string& s : stops_) end = std::min(end, text.find(s));
  if (end <= emitted_.size() || text.compare(0, emitted_.size(), emitted_) != 0)
    return std::string();
  std::string rest = text.substr(emitted_.size(), end - emitted_.size());
  emitted_ += rest;
  return rest;
}

}  // namespace sparsed
