#include "engine/tokenizer/tokenizer.h"

#include <algorithm>
#include <cstring>
#include <thread>

#include "absl/strings/str_cat.h"
#include "engine/common/cpu_quota.h"
#include "engine/tokenizer/tokenizer_wire.h"

namespace sparsed {

namespace wire = tokenizer_wire;

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::Load(const std::string& model_path,
                                                           int max_processes) {
  if (max_processes <= 0) max_processes = std::clamp(UsableCpus(), 1, 8);
  auto first = TokenizerProcess::Start(model_path);
  if (!first.ok()) return first.status();
  std::unique_ptr<Tokenizer> t(new Tokenizer(model_path, max_processes));
  t->info_ = (*first)->info();
  std::lock_guard<std::mutex> lock(t->mu_);
  t->idle_.push_back(*std::move(first));
  t->live_ = t->started_ = 1;
  return t;
}

Tokenizer::~Tokenizer() = default;

int Tokenizer::processes_started() const {
  std::lock_guard<std::mutex> lock(mu_);
  return started_;
}

absl::StatusOr<std::string> Tokenizer::Call(uint8_t op, const std::string& payload) const {
  std::unique_ptr<TokenizerProcess> p;
  {
    std::unique_lock<std::mutex> lock(mu_);
    freed_.wait(lock, [this] { return !idle_.empty() || live_ < max_processes_; });
    if (!idle_.empty()) {
      p = std::move(idle_.back());
      idle_.pop_back();
    } else {
      ++live_;  // reserved; started below without the lock
      ++started_;
    }
  }
  if (p == nullptr) {
    auto started = TokenizerProcess::Start(model_path_);
    if (!started.ok()) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        --live_;
      }
      freed_.notify_one();
      return started.status();
    }
    p = *std::move(started);
  }
  absl::StatusOr<std::string> out = p->Call(op, payload);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (p->broken()) {
      --live_;  // a lost process is replaced by a later call
    } else {
      idle_.push_back(std::move(p));
    }
  }
  freed_.notify_one();
  return out;
}

absl::StatusOr<std::vector<int32_t>> Tokenizer::Encode(absl::string_view text) const {
  auto out = Call(wire::kEncode, std::string(text));
  if (!out.ok()) return out.status();
  return wire::ToIds(out->data(), out->size());
}

absl::StatusOr<std::string> Tokenizer::Decode(const std::vector<int32_t>& ids) const {
  std::string payload;
  wire::AppendIds(&payload, ids);
  return Call(wire::kDecode, payload);
}

absl::StatusOr<std::string> Tokenizer::DecodeAfter(const std::vector<int32_t>& context,
                                                   const std::vector<int32_t>& ids) const {
  auto texts = DecodeAfterEach({{&context, &ids}});
  if (!texts.ok()) return texts.status();
  return std::move(texts->front());
}

absl::StatusOr<std::vector<absl::StatusOr<std::string>>> Tokenizer::DecodeAfterEach(
    const std::vector<DecodeAfterItem>& items) const {
  std::vector<absl::StatusOr<std::string>> texts;
  if (items.empty()) return texts;
  std::string payload;
  wire::AppendI32(&payload, static_cast<int32_t>(items.size()));
  for (const DecodeAfterItem& it : items) {
    wire::AppendI32(&payload, static_cast<int32_t>(it.context->size()));
    wire::AppendI32(&payload, static_cast<int32_t>(it.ids->size()));
    wire::AppendIds(&payload, *it.context);
    wire::AppendIds(&payload, *it.ids);
  }
  auto out = Call(wire::kDecodeAfterEach, payload);
  if (!out.ok()) return out.status();
  size_t at = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    int32_t len = -1;
    if (out->size() - at >= 5) std::memcpy(&len, out->data() + at + 1, 4);
    if (len < 0 || out->size() - at - 5 < static_cast<size_t>(len))
      return absl::InternalError("the tokenizer process answered a malformed batch");
    std::string text = out->substr(at + 5, static_cast<size_t>(len));
    if ((*out)[at] == static_cast<char>(wire::kOk)) {
      texts.push_back(std::move(text));
    } else {
      texts.push_back(absl::InvalidArgumentError(text));
    }
    at += 5 + static_cast<size_t>(len);
  }
  return texts;
}

absl::Status TrainSentencePiece(const std::string& flags) { return TokenizerProcess::Train(flags); }

}  // namespace sparsed
