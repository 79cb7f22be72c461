// vLLM engine-protocol requests to the daemon's (server/vllm_convert.cc): vLLM's "unset" values
// mapped as vLLM reads them, text prompts tokenized with BOS, truncation and the output budget,
// every unsupported or unknown field refused INVALID_ARGUMENT by name; and the reply pieces
// (tokens with logprobs, the complete's finish reason and matched stop).
#include "server/vllm_convert.h"

#include <google/protobuf/unknown_field_set.h>
#include <gtest/gtest.h>

#include <string>

#include "server/convert.h"
#include "tests/bundled_engine_fixture.h"

namespace sparsed::server {
namespace {

class VllmConvertTest : public testing::BundledEngineTest {
 protected:
  static vllm_pb::GenerateRequest Ids(std::initializer_list<uint32_t> ids) {
    vllm_pb::GenerateRequest in;
    for (uint32_t id : ids) in.mutable_tokenized()->add_input_ids(id);
    return in;
  }
  static void ExpectInvalid(const vllm_pb::GenerateRequest& in, const std::string& field) {
    testing::ExpectInvalidNaming(FromVllm(in, engine_->Info()).status(), field);
  }
};

TEST_F(VllmConvertTest, UnsetValuesMeanWhatVllmMakesOfThem) {
  auto r = FromVllm(Ids({1, 5, 9}), engine_->Info());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(
      std::vector<int32_t>(r->prompt_token_ids().ids().begin(), r->prompt_token_ids().ids().end()),
      (std::vector<int32_t>{1, 5, 9}));
  // top_p 0 and repetition_penalty 0 are "unset" (1); no temperature is 1; top_k 0 is off.
  EXPECT_FALSE(r->sampling().has_top_p());
  EXPECT_FALSE(r->sampling().has_repetition_penalty());
  EXPECT_FALSE(r->sampling().has_temperature());
  EXPECT_EQ(r->sampling().top_k(), 0);
  // No max_tokens: up to the end of the context.
  EXPECT_EQ(r->stopping().max_new_tokens(), engine_->Info().context_tokens - 3);
  EXPECT_EQ(r->options().logprobs(), 0u);

  auto full = ToRequest(*r, engine_->Info());
  ASSERT_TRUE(full.ok()) << full.status();
  EXPECT_FLOAT_EQ(full->sampling.top_p, 1.0f);
  EXPECT_FLOAT_EQ(full->sampling.repetition_penalty, 1.0f);
  EXPECT_FLOAT_EQ(full->sampling.temperature, 1.0f);
}

TEST_F(VllmConvertTest, EveryFieldCarriedOver) {
  vllm_pb::GenerateRequest in = Ids({1, 2, 3});
  in.set_request_id("gw-7");
  auto* p = in.mutable_sampling_params();
  p->set_temperature(0.5f);
  p->set_top_p(0.9f);
  p->set_top_k(40);
  p->set_min_p(0.05f);
  p->set_frequency_penalty(-0.5f);
  p->set_presence_penalty(0.5f);
  p->set_repetition_penalty(1.2f);
  p->set_max_tokens(7);
  p->add_stop("\n\n");
  p->add_stop_token_ids(13);
  p->set_ignore_eos(true);
  p->set_seed(-5);  // int32 on the wire: kept bit for bit
  p->set_logprobs(0);
  p->set_skip_special_tokens(true);  // the gateway detokenizes: no effect on the ids
  p->set_n(1);
  auto r = FromVllm(in, engine_->Info());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->request_id(), "gw-7");
  EXPECT_FLOAT_EQ(r->sampling().temperature(), 0.5f);
  EXPECT_FLOAT_EQ(r->sampling().top_p(), 0.9f);
  EXPECT_EQ(r->sampling().top_k(), 40);
  EXPECT_FLOAT_EQ(r->sampling().min_p(), 0.05f);
  EXPECT_FLOAT_EQ(r->sampling().frequency_penalty(), -0.5f);
  EXPECT_FLOAT_EQ(r->sampling().presence_penalty(), 0.5f);
  EXPECT_FLOAT_EQ(r->sampling().repetition_penalty(), 1.2f);
  EXPECT_EQ(r->sampling().seed(), 0xFFFFFFFBu);
  EXPECT_EQ(r->stopping().max_new_tokens(), 7u);
  ASSERT_EQ(r->stopping().stop_size(), 1);
  EXPECT_EQ(r->stopping().stop(0), "\n\n");
  ASSERT_EQ(r->stopping().stop_token_ids_size(), 1);
  EXPECT_EQ(r->stopping().stop_token_ids(0), 13);
  EXPECT_TRUE(r->stopping().ignore_eos());
  // logprobs 0 (the chosen token's only) still needs the sampler's log-probabilities.
  EXPECT_EQ(r->options().logprobs(), 1u);
  EXPECT_EQ(ReplyShape(in).logprobs, 0);
}

TEST_F(VllmConvertTest, TextPromptTokenizedWithBos) {
  vllm_pb::GenerateRequest in;
  in.set_text("And God said");
  auto r = FromVllm(in, engine_->Info());
  ASSERT_TRUE(r.ok()) << r.status();
  auto ids = engine_->tokenizer()->Encode("And God said");
  ASSERT_TRUE(ids.ok());
  std::vector<int32_t> want = {engine_->config().bos_token_id};
  want.insert(want.end(), ids->begin(), ids->end());
  EXPECT_EQ(
      std::vector<int32_t>(r->prompt_token_ids().ids().begin(), r->prompt_token_ids().ids().end()),
      want);
}

TEST_F(VllmConvertTest, TruncationKeepsTheLastTokens) {
  vllm_pb::GenerateRequest in = Ids({1, 2, 3, 4, 5, 6});
  in.mutable_sampling_params()->set_truncate_prompt_tokens(4);
  auto r = FromVllm(in, engine_->Info());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(
      std::vector<int32_t>(r->prompt_token_ids().ids().begin(), r->prompt_token_ids().ids().end()),
      (std::vector<int32_t>{3, 4, 5, 6}));
  in.mutable_sampling_params()->set_truncate_prompt_tokens(0);
  ExpectInvalid(in, "truncate_prompt_tokens");
}

TEST_F(VllmConvertTest, UnsupportedFieldsRefusedByName) {
  const auto with = [](auto set) {
    vllm_pb::GenerateRequest in = Ids({1, 2});
    set(&in);
    return in;
  };
  using R = vllm_pb::GenerateRequest;
  ExpectInvalid(with([](R* r) { r->mutable_sampling_params()->set_n(3); }), "sampling_params.n");
  ExpectInvalid(with([](R* r) { r->mutable_sampling_params()->set_min_tokens(2); }), "min_tokens");
  ExpectInvalid(with([](R* r) { r->mutable_sampling_params()->set_prompt_logprobs(1); }),
                "prompt_logprobs");
  ExpectInvalid(with([](R* r) { r->mutable_sampling_params()->set_logprobs(-1); }), "logprobs");
  ExpectInvalid(with([](R* r) { r->mutable_sampling_params()->set_logprobs(21); }), "logprobs");
  ExpectInvalid(with([](R* r) { (*r->mutable_sampling_params()->mutable_logit_bias())[5] = 1; }),
                "logit_bias");
  ExpectInvalid(with([](R* r) { r->mutable_sampling_params()->set_regex("a+"); }),
                "sampling_params.regex");
  ExpectInvalid(with([](R* r) { r->mutable_sampling_params()->set_json_object(true); }),
                "sampling_params.json_object");
  ExpectInvalid(
      with([](R* r) { r->mutable_sampling_params()->mutable_choice()->add_choices("x"); }),
      "sampling_params.choice");
  ExpectInvalid(with([](R* r) { r->set_mm_inputs("\x0a\x00"); }), "mm_inputs");
  ExpectInvalid(with([](R* r) { r->add_extra_mm_inputs(""); }), "mm_inputs");
  ExpectInvalid(with([](R* r) { r->set_kv_transfer_params_json("{}"); }), "kv_transfer_params");
  ExpectInvalid(with([](R* r) { r->set_data_parallel_rank(1); }), "data_parallel_rank");
  ExpectInvalid(with([](R* r) { r->mutable_sampling_params()->set_max_tokens(0); }), "max_tokens");
  ExpectInvalid(with([](R* r) { r->mutable_sampling_params()->set_max_tokens(1u << 30); }),
                "max_tokens");
  ExpectInvalid(with([](R* r) {
                  for (int i = 0; i < 129; ++i) r->mutable_sampling_params()->add_stop_token_ids(2);
                }),
                "stop_token_ids");
  ExpectInvalid(with([](R* r) { r->mutable_sampling_params()->add_stop_token_ids(1u << 31); }),
                "stop_token_ids");
  ExpectInvalid(with([](R* r) { r->set_request_id(std::string(300, 'x')); }), "request_id");
  ExpectInvalid(Ids({1, 4096}), "input_ids");
  ExpectInvalid(vllm_pb::GenerateRequest(), "tokenized or text");
  vllm_pb::GenerateRequest empty_text;
  empty_text.set_text("");
  ExpectInvalid(empty_text, "text");
  // A field of a newer protocol than this server's: refused, not ignored.
  vllm_pb::GenerateRequest newer = Ids({1, 2});
  newer.mutable_sampling_params()
      ->GetReflection()
      ->MutableUnknownFields(newer.mutable_sampling_params())
      ->AddVarint(99, 1);
  ExpectInvalid(newer, "99");
  vllm_pb::GenerateRequest newer_top = Ids({1, 2});
  newer_top.GetReflection()->MutableUnknownFields(&newer_top)->AddVarint(42, 7);
  ExpectInvalid(newer_top, "42");
}

TEST_F(VllmConvertTest, PromptAndOutputMustFitTheContext) {
  vllm_pb::GenerateRequest in;
  for (int64_t i = 0; i < engine_->Info().context_tokens; ++i)
    in.mutable_tokenized()->add_input_ids(5);
  ExpectInvalid(in, "prompt");
  in.mutable_tokenized()->add_input_ids(5);
  ExpectInvalid(in, "input_ids");
}

TEST(VllmReplyTest, TokensLogprobsAndComplete) {
  TokenEvent e;
  e.token_ids = {7, 8};
  e.logprobs = {-0.5f, -1.5f};
  e.top_logprobs = {{{7, -0.5f}, {9, -2.0f}, {3, -3.0f}}, {{8, -1.5f}, {1, -1.6f}, {4, -4.0f}}};
  google::protobuf::RepeatedField<uint32_t> ids;
  vllm_pb::OutputLogProbs lp;
  AppendTokens({e}, VllmReplyShape{.stream = true, .logprobs = 2}, &ids, &lp);
  ASSERT_EQ(ids.size(), 2);
  ASSERT_EQ(lp.token_ids_size(), 2);
  EXPECT_FLOAT_EQ(lp.token_logprobs(1), -1.5f);
  ASSERT_EQ(lp.top_logprobs_size(), 2);
  ASSERT_EQ(lp.top_logprobs(0).token_ids_size(), 2);  // cut to the 2 asked for
  EXPECT_EQ(lp.top_logprobs(0).token_ids(1), 9u);

  google::protobuf::RepeatedField<uint32_t> ids0;
  vllm_pb::OutputLogProbs lp0;
  AppendTokens({e}, VllmReplyShape{.stream = false, .logprobs = 0}, &ids0, &lp0);
  EXPECT_EQ(lp0.token_logprobs_size(), 2);
  EXPECT_EQ(lp0.top_logprobs_size(), 0);
  google::protobuf::RepeatedField<uint32_t> ids_none;
  vllm_pb::OutputLogProbs lp_none;
  AppendTokens({e}, VllmReplyShape{}, &ids_none, &lp_none);
  EXPECT_EQ(ids_none.size(), 2);
  EXPECT_EQ(lp_none.token_ids_size(), 0);

  RequestStats st;
  st.prompt_tokens = 11;
  st.cached_prompt_tokens = 8;
  st.matched_stop_token = 2;
  vllm_pb::GenerateComplete c = MakeComplete(FinishReason::kStop, st, {7, 2}, lp, true);
  EXPECT_EQ(c.finish_reason(), "stop");
  EXPECT_EQ(c.prompt_tokens(), 11u);
  EXPECT_EQ(c.cached_tokens(), 8u);
  EXPECT_EQ(c.completion_tokens(), 2u);
  EXPECT_EQ(c.matched_token_id(), 2u);
  EXPECT_TRUE(c.has_output_logprobs());
  st.matched_stop_string = "\n\n";
  EXPECT_EQ(MakeComplete(FinishReason::kStop, st, {}, {}, false).matched_stop_str(), "\n\n");
  EXPECT_EQ(MakeComplete(FinishReason::kLength, st, {}, {}, false).matched_stop_case(),
            vllm_pb::GenerateComplete::MATCHED_STOP_NOT_SET);
  EXPECT_STREQ(VllmFinishReason(FinishReason::kCancelled), "abort");
  EXPECT_STREQ(VllmFinishReason(FinishReason::kDeadline), "abort");
  EXPECT_STREQ(VllmFinishReason(FinishReason::kShutdown), "abort");
  EXPECT_STREQ(VllmFinishReason(FinishReason::kError), "error");
  EXPECT_STREQ(VllmFinishReason(FinishReason::kLength), "length");
}

}  // namespace
}  // namespace sparsed::server
