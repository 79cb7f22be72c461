#include "server/convert.h"

#include "absl/strings/str_cat.h"

namespace sparsed::server {

absl::Status CheckTextBytes(absl::string_view field, size_t bytes, const ModelInfo& model) {
  const int64_t limit = model.context_tokens * model.tokenizer->max_bytes_per_token();
  if (static_cast<int64_t>(bytes) <= limit) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      field, " has ", bytes, " bytes; the context holds ", model.context_tokens,
      " tokens, which no text longer than ", limit, " bytes fits in: shorten the text"));
}

absl::StatusOr<Request> ToRequest(const v1::GenerateRequest& in, const ModelInfo& model) {
  Request r;
  if (in.request_id().size() > kMaxRequestIdBytes) {
    return absl::InvalidArgumentError(absl::StrCat("request_id has ", in.request_id().size(),
                                                   " bytes; allowed: at most ",
                                                   kMaxRequestIdBytes));
  }
  // Counted before anything is copied: a message of millions of ids is refused at once.
  if (static_cast<size_t>(in.stopping().stop_token_ids_size()) > kMaxStopTokenIds) {
    return absl::InvalidArgumentError(absl::StrCat("stopping.stop_token_ids has ",
                                                   in.stopping().stop_token_ids_size(),
                                                   " ids; allowed: at most ", kMaxStopTokenIds));
  }
  if (in.cache_salt().size() > kMaxRequestIdBytes) {
    return absl::InvalidArgumentError(absl::StrCat("cache_salt has ", in.cache_salt().size(),
                                                   " bytes; allowed: at most ",
                                                   kMaxRequestIdBytes));
  }
  r.request_id = in.request_id();
  r.cache_salt = in.cache_salt();
  r.priority = in.priority();
  const v1::SamplingParams& s = in.sampling();
  if (s.has_temperature()) r.sampling.temperature = s.temperature();
  r.sampling.top_k = s.top_k();
  if (s.has_top_p()) r.sampling.top_p = s.top_p();
  r.sampling.min_p = s.min_p();
  if (s.has_repetition_penalty()) r.sampling.repetition_penalty = s.repetition_penalty();
  r.sampling.presence_penalty = s.presence_penalty();
  r.sampling.frequency_penalty = s.frequency_penalty();
  if (s.has_seed()) {
    r.sampling.seed = s.seed();
    r.sampling.has_seed = true;
  }
  if (in.options().logprobs() > 20) {
    return absl::InvalidArgumentError(
        absl::StrCat("options.logprobs is ", in.options().logprobs(), "; allowed: [0, 20]"));
  }
  r.sampling.top_logprobs = static_cast<int32_t>(in.options().logprobs());
  if (auto st = ValidateSamplingParams(r.sampling); !st.ok()) return st;
  const v1::StoppingParams& p = in.stopping();
  if (p.max_new_tokens() > (1u << 20)) {
    return absl::InvalidArgumentError(
        absl::StrCat("stopping.max_new_tokens is ", p.max_new_tokens(), "; allowed: [1, 1048576]"));
  }
  r.stopping.max_new_tokens =
      p.max_new_tokens() == 0 ? 16 : static_cast<int32_t>(p.max_new_tokens());
  r.stopping.stop.assign(p.stop().begin(), p.stop().end());
  r.stopping.stop_token_ids.assign(p.stop_token_ids().begin(), p.stop_token_ids().end());
  r.stopping.ignore_eos = p.ignore_eos();
  if (auto st = ValidateStoppingParams(r.stopping); !st.ok()) return st;
  for (int32_t id : r.stopping.stop_token_ids) {
    if (id < 0 || id >= model.config.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat(
          "stopping.stop_token_ids has ", id, "; allowed: [0, ", model.config.vocab_size, ")"));
    }
  }
  // The prompt last: every cheap check above runs before the text is tokenized.
  switch (in.input_case()) {
    case v1::GenerateRequest::kPrompt: {
      if (in.prompt().empty()) return absl::InvalidArgumentError("prompt is empty");
      if (model.tokenizer == nullptr)
        return absl::FailedPreconditionError("the model has no tokenizer; send prompt_token_ids");
      if (absl::Status st = CheckTextBytes("prompt", in.prompt().size(), model); !st.ok())
        return st;
      auto ids = model.tokenizer->Encode(in.prompt());
      if (!ids.ok())
        return absl::InvalidArgumentError(absl::StrCat("prompt: ", ids.status().message()));
      if (in.add_bos()) r.prompt.push_back(model.config.bos_token_id);
      r.prompt.insert(r.prompt.end(), ids->begin(), ids->end());
      break;
    }
    case v1::GenerateRequest::kPromptTokenIds:
      r.prompt.assign(in.prompt_token_ids().ids().begin(), in.prompt_token_ids().ids().end());
      break;
    default:
      return absl::InvalidArgumentError("one of prompt or prompt_token_ids is required");
  }
  return r;
}

v1::FinishReason ToProto(FinishReason r) {
  switch (r) {
    case FinishReason::kLength:
      return v1::FINISH_REASON_LENGTH;
    case FinishReason::kStop:
      return v1::FINISH_REASON_STOP;
    case FinishReason::kCancelled:
      return v1::FINISH_REASON_CANCELLED;
    case FinishReason::kDeadline:
      return v1::FINISH_REASON_DEADLINE;
    default:
      return v1::FINISH_REASON_UNSPECIFIED;
  }
}

grpc::Status ToGrpc(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(static_cast<int>(s.code())),
                      std::string(s.message()));
}

}  // namespace sparsed::server
