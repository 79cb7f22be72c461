#include "engine/sampling/sampler.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <set>

namespace sparsed {
namespace {

std::vector<float> Logits() { return {1.0f, 3.0f, 2.5f, -1.0f, 0.0f, 2.9f}; }

TEST(Sampler, GreedyPicksArgmaxWithLogprobs) {
  SamplingParams p;
  p.temperature = 0;
  p.top_logprobs = 3;
  Sampler s(p, 1);
  const auto l = Logits();
  auto r = s.Sample(l.data(), 6, {}, {});
  EXPECT_EQ(r.token, 1);
  double z = 0;
  for (float v : l) z += std::exp(v);
  EXPECT_NEAR(r.logprob, 3.0 - std::log(z), 1e-5);
  ASSERT_EQ(r.top.size(), 3u);
  EXPECT_EQ(r.top[0].first, 1);
  EXPECT_EQ(r.top[1].first, 5);
  EXPECT_EQ(r.top[2].first, 2);
}

TEST(Sampler, SameSeedSameTokens) {
  SamplingParams p;
  p.temperature = 1.0;
  p.seed = 1234;
  p.has_seed = true;
  Sampler a(p, 0), b(p, 99);
  const auto l = Logits();
  std::vector<int32_t> ta, tb;
  for (int i = 0; i < 50; ++i) {
    ta.push_back(a.Sample(l.data(), 6, {}, {}).token);
    tb.push_back(b.Sample(l.data(), 6, {}, {}).token);
  }
  EXPECT_EQ(ta, tb);
  EXPECT_GT(std::set<int32_t>(ta.begin(), ta.end()).size(), 2u);  // it does sample
}

TEST(Sampler, FiltersRestrictTheSupport) {
  const auto l = Logits();
  auto support = [&](SamplingParams p) {
    Sampler s(p, 7);
    std::set<int32_t> seen;
    for (int i = 0; i < 400; ++i) seen.insert(s.Sample(l.data(), 6, {}, {}).token);
    return seen;
  };
  SamplingParams k2;
  k2.top_k = 2;
  EXPECT_EQ(support(k2), (std::set<int32_t>{1, 5}));
  SamplingParams p;
  p.top_p = 0.3f;  // the top token alone holds more than 0.3
  EXPECT_EQ(support(p), (std::set<int32_t>{1}));
  SamplingParams m;
  m.min_p = 0.5f;  // exp(2.5-3)=0.61 kept, exp(1-3)=0.14 dropped
  EXPECT_EQ(support(m), (std::set<int32_t>{1, 2, 5}));
}

TEST(Sampler, FrequencyStatisticsFollowSoftmax) {
  SamplingParams p;
  p.temperature = 0.5f;
  Sampler s(p, 3);
  const std::vector<float> l = {0.f, std::log(3.f) * 0.5f};  // at T=0.5: odds 1:3
  int ones = 0;
  const int n = 20000;
  for (int i = 0; i < n; ++i) ones += s.Sample(l.data(), 2, {}, {}).token;
  EXPECT_NEAR(double(ones) / n, 0.75, 0.015);
}

TEST(Sampler, PenaltiesChangeTheChoice) {
  const auto l = Logits();
  SamplingParams rep;
  rep.temperature = 0;
  rep.repetition_penalty = 2.0f;  // 3.0 → 1.5 for token 1 (seen in the prompt)
  EXPECT_EQ(Sampler(rep, 0).Sample(l.data(), 6, {1}, {}).token, 5);
  SamplingParams pres;
  pres.temperature = 0;
  pres.presence_penalty = 0.5f;  // only generated tokens are penalised
  EXPECT_EQ(Sampler(pres, 0).Sample(l.data(), 6, {}, {1}).token, 5);
  EXPECT_EQ(Sampler(pres, 0).Sample(l.data(), 6, {1}, {}).token, 1);
  SamplingParams freq;
  freq.temperature = 0;
  freq.frequency_penalty = 0.1f;  // twice generated: 3.0 - 0.2 = 2.8 < 2.9
  EXPECT_EQ(Sampler(freq, 0).Sample(l.data(), 6, {}, {1, 1}).token, 5);
  EXPECT_EQ(Sampler(freq, 0).Sample(l.data(), 6, {}, {1}).token, 1);
}

TEST(Sampler, ValidationNamesFieldAndRange) {
  auto msg = [](SamplingParams p) { return std::string(ValidateSamplingParams(p).message()); };
  SamplingParams p;
  EXPECT_TRUE(ValidateSamplingParams(p).ok());
  p.temperature = -1;
  EXPECT_THAT(msg(p), ::testing::AllOf(::testing::HasSubstr("sampling.temperature"),
                                       ::testing::HasSubstr("[0, 100]")));
  p = {};
  p.top_p = 0;
  EXPECT_THAT(msg(p), ::testing::HasSubstr("sampling.top_p"));
  p = {};
  p.top_k = -3;
  EXPECT_THAT(msg(p), ::testing::HasSubstr("sampling.top_k"));
  p = {};
  p.min_p = NAN;
  EXPECT_THAT(msg(p), ::testing::HasSubstr("sampling.min_p"));
  p = {};
  p.repetition_penalty = 0;
  EXPECT_THAT(msg(p), ::testing::HasSubstr("sampling.repetition_penalty"));
  p = {};
  p.presence_penalty = 3;
  EXPECT_THAT(msg(p), ::testing::HasSubstr("sampling.presence_penalty"));
  p = {};
  p.top_logprobs = 21;
  EXPECT_THAT(msg(p), ::testing::HasSubstr("top_logprobs"));
}

}  // namespace
}  // namespace sparsed
