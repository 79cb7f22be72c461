#include "scheduler/request.h"

#include "absl/strings/str_cat.h"

namespace sparsed {

absl::Status ValidateStoppingParams(const StoppingParams& p) {
  if (p.max_new_tokens < 1 || p.max_new_tokens > 1 << 20) {
    return absl::InvalidArgumentError(
        absl::StrCat("stopping.max_new_tokens is ", p.max_new_tokens, "; allowed: [1, 1048576]"));
  }
  if (p.stop_token_ids.size() > kMaxStopTokenIds) {
    return absl::InvalidArgumentError(absl::StrCat("stopping.stop_token_ids has ",
                                                   p.stop_token_ids.size(),
                                                   " ids; allowed: at most ", kMaxStopTokenIds));
  }
  if (p.stop.size() > 16) {
    return absl::InvalidArgumentError(
        absl::StrCat("stopping.stop has ", p.stop.size(), " strings; allowed: at most 16"));
  }
  for (const std::string& s : p.stop) {
    if (s.empty() || s.size() > 256) {
      return absl::InvalidArgumentError("stopping.stop strings must be 1 to 256 bytes long");
    }
  }
  return absl::OkStatus();
}

const char* FinishReasonName(FinishReason r) {
  switch (r) {
    case FinishReason::kLength:
      return "length";
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kCancelled:
      return "cancelled";
    case FinishReason::kDeadline:
      return "deadline";
    case FinishReason::kError:
      return "error";
    case FinishReason::kShutdown:
      return "shutdown";
  }
  return "?";
}

std::string PrefixSalt(const Request& r) {
  if (r.owner.empty() && r.cache_salt.empty()) return "";
  return absl::StrCat(r.owner, "\x1f", r.cache_salt);
}

}  // namespace sparsed
