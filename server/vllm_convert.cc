#include "server/vllm_convert.h"

#include <google/protobuf/unknown_field_set.h>

#include <algorithm>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/convert.h"

namespace sparsed::server {
namespace {

absl::Status Refuse(absl::string_view field, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", why));
}

// Fields of a newer protocol version than this server's arrive as unknown fields.
absl::Status NoUnknownFields(const google::protobuf::Message& m, absl::string_view where) {
  const google::protobuf::UnknownFieldSet& u = m.GetReflection()->GetUnknownFields(m);
  if (u.empty()) return absl::OkStatus();
  std::vector<int> numbers;
  for (int i = 0; i < u.field_count(); ++i) numbers.push_back(u.field(i).number());
  return absl::InvalidArgumentError(absl::StrCat(
      where, " carries field number(s) ", absl::StrJoin(numbers, ", "),
      " that this server's protocol (proto/smg/vllm_engine.proto) does not define; refused rather "
      "than ignored"));
}

absl::Status CheckSampling(const vllm_pb::SamplingParams& p) {
  if (absl::Status st = NoUnknownFields(p, "sampling_params"); !st.ok()) return st;
  if (p.n() > 1) {
    return Refuse("sampling_params.n",
                  absl::StrCat(p.n(),
                               " sequences asked; this server generates one per request "
                               "(n = 1): send n requests, each with its own seed"));
  }
  if (p.min_tokens() > 0) {
    return Refuse("sampling_params.min_tokens", "not supported (send 0)");
  }
  if (p.has_prompt_logprobs()) {
    return Refuse("sampling_params.prompt_logprobs", "prompt log-probabilities are not supported");
  }
  if (p.has_logprobs() && (p.logprobs() < 0 || p.logprobs() > 20)) {
    return Refuse("sampling_params.logprobs",
                  absl::StrCat(p.logprobs(), "; allowed: [0, 20] top alternatives per token"));
  }
  if (!p.logit_bias().empty()) {
    return Refuse("sampling_params.logit_bias", "not supported");
  }
  if (p.constraint_case() != vllm_pb::SamplingParams::CONSTRAINT_NOT_SET) {
    const google::protobuf::FieldDescriptor* f =
        p.GetDescriptor()->FindFieldByNumber(static_cast<int>(p.constraint_case()));
    return Refuse(absl::StrCat("sampling_params.", f != nullptr ? f->name() : "constraint"),
                  "structured output (constrained decoding) is not supported by this server");
  }
  if (p.stop_token_ids_size() > static_cast<int>(kMaxStopTokenIds)) {
    return Refuse(
        "sampling_params.stop_token_ids",
        absl::StrCat(p.stop_token_ids_size(), " ids; allowed: at most ", kMaxStopTokenIds));
  }
  return absl::OkStatus();
}

absl::Status CheckUnsupportedInputs(const vllm_pb::GenerateRequest& in) {
  if (absl::Status st = NoUnknownFields(in, "the request"); !st.ok()) return st;
  if (!in.mm_inputs().empty() || in.extra_mm_inputs_size() > 0 || !in.media_refs().empty()) {
    return Refuse("mm_inputs", "the served model takes text only");
  }
  if (!in.kv_transfer_params().empty() || in.has_kv_transfer_params_json()) {
    return Refuse("kv_transfer_params",
                  "disaggregated prefill (KV transfer between workers) is not supported");
  }
  if (in.has_data_parallel_rank() && in.data_parallel_rank() != 0) {
    return Refuse("data_parallel_rank",
                  absl::StrCat(in.data_parallel_rank(), "; this server has one rank, 0"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<v1::GenerateRequest> FromVllm(const vllm_pb::GenerateRequest& in,
                                             const ModelInfo& model) {
  if (absl::Status st = CheckUnsupportedInputs(in); !st.ok()) return st;
  const vllm_pb::SamplingParams& p = in.sampling_params();
  if (absl::Status st = CheckSampling(p); !st.ok()) return st;
  if (in.request_id().size() > kMaxRequestIdBytes) {
    return Refuse("request_id", absl::StrCat(in.request_id().size(), " bytes; allowed: at most ",
                                             kMaxRequestIdBytes));
  }

  v1::GenerateRequest out;
  out.set_request_id(in.request_id());
  std::vector<int32_t> prompt;
  switch (in.input_case()) {
    case vllm_pb::GenerateRequest::kTokenized: {
      if (absl::Status st = NoUnknownFields(in.tokenized(), "tokenized"); !st.ok()) return st;
      const auto& ids = in.tokenized().input_ids();
      if (ids.empty()) return Refuse("tokenized.input_ids", "empty");
      if (static_cast<int64_t>(ids.size()) > model.context_tokens) {
        // Before anything is copied: a message of millions of ids is refused at once.
        return Refuse("tokenized.input_ids",
                      absl::StrCat(ids.size(), " tokens; the context holds ", model.context_tokens,
                                   " (use truncate_prompt_tokens or shorten the prompt)"));
      }
      for (uint32_t id : ids) {
        if (id >= static_cast<uint32_t>(model.config.vocab_size)) {
          return Refuse("tokenized.input_ids",
                        absl::StrCat("has ", id, "; allowed: [0, ", model.config.vocab_size, ")"));
        }
        prompt.push_back(static_cast<int32_t>(id));
      }
      break;
    }
    case vllm_pb::GenerateRequest::kText: {
      if (in.text().empty()) return Refuse("text", "empty");
      if (model.tokenizer == nullptr) {
        return absl::FailedPreconditionError(
            "the model has no tokenizer; send tokenized.input_ids");
      }
      if (absl::Status st = CheckTextBytes("text", in.text().size(), model); !st.ok()) return st;
      absl::StatusOr<std::vector<int32_t>> ids = model.tokenizer->Encode(in.text());
      if (!ids.ok()) return Refuse("text", ids.status().message());
      prompt.push_back(model.config.bos_token_id);  // as vLLM adds special tokens to a text prompt
      prompt.insert(prompt.end(), ids->begin(), ids->end());
      break;
    }
    default:
      return absl::InvalidArgumentError("one of tokenized or text is required");
  }
  if (p.has_truncate_prompt_tokens()) {
    const int32_t t = p.truncate_prompt_tokens();
    if (t == 0 || t < -1) {
      return Refuse("sampling_params.truncate_prompt_tokens",
                    absl::StrCat(t, "; allowed: -1 (the context) or a positive count"));
    }
    const int64_t keep = t == -1 ? model.context_tokens - 1 : t;
    if (static_cast<int64_t>(prompt.size()) > keep) {
      prompt.erase(prompt.begin(), prompt.end() - keep);  // keeps the last `keep` tokens
    }
  }
  const int64_t room = model.context_tokens - static_cast<int64_t>(prompt.size());
  if (room < 1) {
    return Refuse("prompt", absl::StrCat(prompt.size(),
                                         " tokens leave no room for output in the "
                                         "context of ",
                                         model.context_tokens, " tokens"));
  }
  int64_t max_tokens = room;  // vLLM: unset = up to the end of the context
  if (p.has_max_tokens()) {
    if (p.max_tokens() == 0 || p.max_tokens() > room) {
      return Refuse(
          "sampling_params.max_tokens",
          absl::StrCat(p.max_tokens(), "; allowed: [1, ", room, "] (the prompt's ", prompt.size(),
                       " tokens and the output share a context of ", model.context_tokens, ")"));
    }
    max_tokens = p.max_tokens();
  }
  out.mutable_prompt_token_ids()->mutable_ids()->Assign(prompt.begin(), prompt.end());

  v1::SamplingParams* s = out.mutable_sampling();
  if (p.has_temperature()) s->set_temperature(p.temperature());
  if (p.top_p() != 0.0f) s->set_top_p(p.top_p());
  s->set_top_k(static_cast<int32_t>(std::min<uint32_t>(p.top_k(), 1u << 30)));
  s->set_min_p(p.min_p());
  if (p.repetition_penalty() != 0.0f) s->set_repetition_penalty(p.repetition_penalty());
  s->set_presence_penalty(p.presence_penalty());
  s->set_frequency_penalty(p.frequency_penalty());
  if (p.has_seed()) s->set_seed(static_cast<uint64_t>(static_cast<uint32_t>(p.seed())));

  v1::StoppingParams* st = out.mutable_stopping();
  st->set_max_new_tokens(static_cast<uint32_t>(max_tokens));
  for (const std::string& stop : p.stop()) st->add_stop(stop);
  for (uint32_t id : p.stop_token_ids()) {
    if (id > static_cast<uint32_t>(std::numeric_limits<int32_t>::max())) {
      return Refuse("sampling_params.stop_token_ids",
                    absl::StrCat("has ", id, "; allowed: [0, ", model.config.vocab_size, ")"));
    }
    st->add_stop_token_ids(static_cast<int32_t>(id));
  }
  st->set_ignore_eos(p.ignore_eos());
  // The sampler returns the chosen token's log-probability whenever it computes alternatives;
  // logprobs = 0 asks for the chosen one alone (ReplyShape drops the alternatives).
  if (p.has_logprobs()) out.mutable_options()->set_logprobs(std::max(p.logprobs(), 1));
  // skip_special_tokens, spaces_between_special_tokens and include_stop_str_in_output shape the
  // text, which the gateway detokenizes itself from the ids; grammar_from_first_token applies to a
  // constraint, which is refused above.
  return out;
}

VllmReplyShape ReplyShape(const vllm_pb::GenerateRequest& in) {
  VllmReplyShape s;
  s.stream = in.stream();
  if (in.sampling_params().has_logprobs()) s.logprobs = in.sampling_params().logprobs();
  return s;
}

const char* VllmFinishReason(FinishReason r) {
  switch (r) {
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kLength:
      return "length";
    case FinishReason::kCancelled:
    case FinishReason::kDeadline:
    case FinishReason::kShutdown:
      return "abort";
    case FinishReason::kError:
      break;
  }
  return "error";
}

void AppendTokens(const std::vector<TokenEvent>& events, const VllmReplyShape& shape,
                  google::protobuf::RepeatedField<uint32_t>* ids, vllm_pb::OutputLogProbs* lp) {
  for (const TokenEvent& e : events) {
    for (size_t i = 0; i < e.token_ids.size(); ++i) {
      const uint32_t id = static_cast<uint32_t>(e.token_ids[i]);
      ids->Add(id);
      if (shape.logprobs < 0) continue;
      lp->add_token_ids(id);
      lp->add_token_logprobs(i < e.logprobs.size() ? e.logprobs[i] : 0.0f);
      if (shape.logprobs == 0) continue;
      vllm_pb::TopLogProbs* top = lp->add_top_logprobs();
      if (i >= e.top_logprobs.size()) continue;
      const auto& alts = e.top_logprobs[i];
      for (size_t k = 0; k < alts.size() && k < static_cast<size_t>(shape.logprobs); ++k) {
        top->add_token_ids(static_cast<uint32_t>(alts[k].first));
        top->add_values(alts[k].second);
      }
    }
  }
}

vllm_pb::GenerateComplete MakeComplete(FinishReason reason, const RequestStats& st,
                                       std::vector<uint32_t> ids, vllm_pb::OutputLogProbs lp,
                                       bool with_logprobs) {
  vllm_pb::GenerateComplete c;
  c.mutable_output_ids()->Assign(ids.begin(), ids.end());
  c.set_finish_reason(VllmFinishReason(reason));
  c.set_prompt_tokens(static_cast<uint32_t>(st.prompt_tokens));
  c.set_completion_tokens(static_cast<uint32_t>(ids.size()));
  c.set_cached_tokens(static_cast<uint32_t>(st.cached_prompt_tokens));
  if (with_logprobs && lp.token_ids_size() > 0) *c.mutable_output_logprobs() = std::move(lp);
  if (reason == FinishReason::kStop) {
    if (!st.matched_stop_string.empty()) {
      c.set_matched_stop_str(st.matched_stop_string);
    } else if (st.matched_stop_token >= 0) {
      c.set_matched_token_id(static_cast<uint32_t>(st.matched_stop_token));
    }
  }
  return c;
}

}  // namespace sparsed::server
