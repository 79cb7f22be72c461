// A generation request as the scheduler receives it, and the sink that receives its output.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "engine/sampling/sampler.h"

namespace sparsed {

struct StoppingParams {
  int32_t max_new_tokens = 16;
  std::vector<std::string> stop;        // stop strings; the text stops before them (not emitted)
  std::vector<int32_t> stop_token_ids;  // generation stops after emitting one of these
  bool ignore_eos = false;
};

// Bounds on what one request may carry: stop token ids (scanned for every generated token) and
// the client's request id (kept for logs and Abort).
inline constexpr size_t kMaxStopTokenIds = 128;
inline constexpr size_t kMaxRequestIdBytes = 256;

// INVALID_ARGUMENT naming the field and the allowed range.
absl::Status ValidateStoppingParams(const StoppingParams& p);

struct Request;
// The prefix cache's partition for `r` (PrefixIndex::Root): "" — the common pool — when it has
// neither an owner (API key) nor a cache_salt; otherwise both, so that with API keys on every
// key has its own pool, split further by its salts.
std::string PrefixSalt(const Request& r);

enum class FinishReason { kLength, kStop, kCancelled, kDeadline, kError, kShutdown };
const char* FinishReasonName(FinishReason r);

struct TokenEvent {
  std::string text;  // UTF-8-complete text delta (may be empty while bytes are pending)
  std::vector<int32_t> token_ids;  // tokens generated since the previous event
  std::vector<float> logprobs;     // one per token
  // When the request asked for top_logprobs: per token, the best (token, logprob) pairs.
  std::vector<std::vector<std::pair<int32_t, float>>> top_logprobs;
};

struct RequestStats {
  absl::Duration queue_time;                          // submission → first scheduled
  absl::Time first_scheduled = absl::InfinitePast();  // when the loop first admitted it
  absl::Duration time_to_first_token;
  absl::Duration total_time;
  int64_t prompt_tokens = 0;
  int64_t cached_prompt_tokens = 0;  // of prompt_tokens, found in the prefix cache at admission
  int64_t generated_tokens = 0;
  int64_t preemptions = 0;
  double mean_active_ratio =
      0;                        // FFN neurons active per token, over the request's steps and layers
  double mean_union_ratio = 0;  // union ratio of the batches it was in
  // What ended a FinishReason::kStop: the stop string (one of StoppingParams::stop), or else the
  // token (EOS or one of StoppingParams::stop_token_ids; -1 for other reasons).
  std::string matched_stop_string;
  int32_t matched_stop_token = -1;
};

// Receives a request's output. Called on the engine-loop thread: implementations must return
// quickly and never block (queue the event for a writer thread instead). OnFinish is called
// exactly once and is the last call.
class TokenSink {
 public:
  virtual ~TokenSink() = default;
  virtual void OnTokens(const TokenEvent& event) = 0;
  virtual void OnFinish(FinishReason reason, const absl::Status& status,
                        const RequestStats& stats) = 0;
};

struct Request {
  std::string request_id;  // the client's id, for logs
  std::string owner;       // the API key's name that sent it (server/auth.h); "" = none
  // Prefix-cache partition (at most kMaxRequestIdBytes): shares cached blocks only with requests
  // of the same salt and owner (PrefixSalt).
  std::string cache_salt;
  std::vector<int32_t> prompt;
  SamplingParams sampling;
  StoppingParams stopping;
  absl::Time deadline = absl::InfiniteFuture();
  int priority = 0;
  std::shared_ptr<TokenSink> sink;
};

}  // namespace sparsed
