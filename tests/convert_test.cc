// sparsed.v1 requests to engine requests (server/convert.cc): defaults, every field carried over,
// each out-of-range field refused with INVALID_ARGUMENT naming it, prompts tokenized (with BOS
// when asked) only after the cheap checks, and the status and finish-reason mappings.
#include "server/convert.h"

#include <gtest/gtest.h>

#include <string>

#include "tests/bundled_engine_fixture.h"

namespace sparsed::server {
namespace {

class ConvertTest : public testing::BundledEngineTest {
 protected:
  static v1::GenerateRequest Ids(std::initializer_list<int32_t> ids) {
    v1::GenerateRequest in;
    for (int32_t id : ids) in.mutable_prompt_token_ids()->add_ids(id);
    return in;
  }
  static void ExpectInvalid(const v1::GenerateRequest& in, const std::string& field) {
    testing::ExpectInvalidNaming(ToRequest(in, engine_->Info()).status(), field);
  }
};

TEST_F(ConvertTest, DefaultsAndEveryFieldCarriedOver) {
  auto plain = ToRequest(Ids({1, 5, 9}), engine_->Info());
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ(plain->prompt, (std::vector<int32_t>{1, 5, 9}));
  EXPECT_EQ(plain->stopping.max_new_tokens, 16);
  EXPECT_FALSE(plain->sampling.has_seed);
  EXPECT_EQ(plain->sampling.top_logprobs, 0);

  v1::GenerateRequest in = Ids({1, 2});
  in.set_request_id("req-7");
  in.set_priority(3);
  auto* s = in.mutable_sampling();
  s->set_temperature(0.5f);
  s->set_top_k(40);
  s->set_top_p(0.9f);
  s->set_min_p(0.05f);
  s->set_repetition_penalty(1.2f);
  s->set_presence_penalty(0.5f);
  s->set_frequency_penalty(-0.5f);
  s->set_seed(42);
  in.mutable_options()->set_logprobs(5);
  auto* p = in.mutable_stopping();
  p->set_max_new_tokens(7);
  p->add_stop("\n\n");
  p->add_stop_token_ids(2);
  p->set_ignore_eos(true);
  auto r = ToRequest(in, engine_->Info());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->request_id, "req-7");
  EXPECT_EQ(r->priority, 3);
  EXPECT_FLOAT_EQ(r->sampling.temperature, 0.5f);
  EXPECT_EQ(r->sampling.top_k, 40);
  EXPECT_FLOAT_EQ(r->sampling.top_p, 0.9f);
  EXPECT_FLOAT_EQ(r->sampling.min_p, 0.05f);
  EXPECT_FLOAT_EQ(r->sampling.repetition_penalty, 1.2f);
  EXPECT_FLOAT_EQ(r->sampling.presence_penalty, 0.5f);
  EXPECT_FLOAT_EQ(r->sampling.frequency_penalty, -0.5f);
  EXPECT_TRUE(r->sampling.has_seed);
  EXPECT_EQ(r->sampling.seed, 42u);
  EXPECT_EQ(r->sampling.top_logprobs, 5);
  EXPECT_EQ(r->stopping.max_new_tokens, 7);
  EXPECT_EQ(r->stopping.stop, (std::vector<std::string>{"\n\n"}));
  EXPECT_EQ(r->stopping.stop_token_ids, (std::vector<int32_t>{2}));
  EXPECT_TRUE(r->stopping.ignore_eos);
}

TEST_F(ConvertTest, OutOfRangeFieldsNamed) {
  v1::GenerateRequest in = Ids({1});
  in.mutable_options()->set_logprobs(21);
  ExpectInvalid(in, "options.logprobs");
  in = Ids({1});
  in.mutable_stopping()->set_max_new_tokens((1u << 20) + 1);
  ExpectInvalid(in, "stopping.max_new_tokens");
  in = Ids({1});
  in.mutable_stopping()->add_stop_token_ids(static_cast<int32_t>(engine_->config().vocab_size));
  ExpectInvalid(in, "stopping.stop_token_ids");
  in = Ids({1});
  in.mutable_stopping()->add_stop_token_ids(-1);
  ExpectInvalid(in, "stopping.stop_token_ids");
  in = Ids({1});
  in.mutable_sampling()->set_top_p(1.5f);
  ExpectInvalid(in, "top_p");
  in = Ids({1});
  in.mutable_sampling()->set_temperature(-1.f);
  ExpectInvalid(in, "temperature");
  ExpectInvalid(v1::GenerateRequest(), "prompt");  // neither prompt nor ids
  v1::GenerateRequest empty;
  empty.set_prompt("");
  ExpectInvalid(empty, "prompt");
}

TEST_F(ConvertTest, PromptTokenizedWithBosWhenAsked) {
  const std::string text = "In the beginning God created the heaven and the earth.";
  auto ids = engine_->tokenizer()->Encode(text);
  ASSERT_TRUE(ids.ok());
  v1::GenerateRequest in;
  in.set_prompt(text);
  auto plain = ToRequest(in, engine_->Info());
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ(plain->prompt, *ids);
  in.set_add_bos(true);
  auto bos = ToRequest(in, engine_->Info());
  ASSERT_TRUE(bos.ok()) << bos.status();
  ASSERT_EQ(bos->prompt.size(), ids->size() + 1);
  EXPECT_EQ(bos->prompt[0], engine_->config().bos_token_id);
  // A text no context can hold is refused before it is tokenized.
  in.set_prompt(std::string(
      static_cast<size_t>(engine_->context_tokens() * engine_->tokenizer()->max_bytes_per_token() +
                          1),
      'a'));
  ExpectInvalid(in, "prompt has");
  EXPECT_TRUE(CheckTextBytes("text", 10, engine_->Info()).ok());
}

TEST_F(ConvertTest, StatusAndFinishReasonMappings) {
  EXPECT_TRUE(ToGrpc(absl::OkStatus()).ok());
  const grpc::Status g = ToGrpc(absl::ResourceExhaustedError("queue full"));
  EXPECT_EQ(g.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(g.error_message(), "queue full");
  EXPECT_EQ(ToGrpc(absl::InvalidArgumentError("x")).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(ToProto(FinishReason::kLength), v1::FINISH_REASON_LENGTH);
  EXPECT_EQ(ToProto(FinishReason::kStop), v1::FINISH_REASON_STOP);
  EXPECT_EQ(ToProto(FinishReason::kCancelled), v1::FINISH_REASON_CANCELLED);
  EXPECT_EQ(ToProto(FinishReason::kDeadline), v1::FINISH_REASON_DEADLINE);
  EXPECT_EQ(ToProto(FinishReason::kError), v1::FINISH_REASON_UNSPECIFIED);
}

}  // namespace
}  // namespace sparsed::server
