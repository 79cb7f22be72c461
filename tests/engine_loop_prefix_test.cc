// The engine loop's prefix cache: cached prefixes give the bits of recomputation, across
// conversation turns, preemption, eviction and cancellation mid-prefill.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <random>

#include "scheduler/engine_loop.h"
#include "tests/engine_loop_fixture.h"

namespace sparsed {
namespace {

std::vector<int32_t> SharedPrompt(int i) {
  std::vector<int32_t> p = PromptOfLength(40, 77);
  const int tail = 1 + (i * 5) % 23;
  for (int k = 0; k < tail; ++k) p.push_back(3 + (i * 131 + k * 17) % 900);
  return p;
}

struct Outcome {
  std::vector<int32_t> ids;
  std::vector<float> logprobs;
  int64_t cached = 0;
  FinishReason reason = FinishReason::kError;
};

Request PrefixReq(int i, std::shared_ptr<TokenSink> sink) {
  Request r;
  r.prompt = SharedPrompt(i);
  r.stopping.max_new_tokens = 6 + i % 7;
  r.stopping.ignore_eos = true;
  r.sampling.temperature = 0;
  if (i % 2) {
    r.sampling.temperature = 0.9f;
    r.sampling.top_p = 0.95f;
    r.sampling.seed = 500 + i;
    r.sampling.has_seed = true;
  }
  r.sink = std::move(sink);
  return r;
}

// Submits the requests all at once (concurrent) or one after another, and waits for all.
std::vector<Outcome> RunAll(EngineLoop& loop, const std::vector<Request>& reqs, bool concurrent) {
  std::vector<std::shared_ptr<CollectingSink>> sinks;
  std::vector<Outcome> out(reqs.size());
  for (size_t i = 0; i < reqs.size(); ++i) {
    sinks.push_back(std::make_shared<CollectingSink>());
    Request r = reqs[i];
    r.sink = sinks.back();
    EXPECT_TRUE(loop.Submit(std::move(r)).ok());
    if (!concurrent) {
      EXPECT_TRUE(sinks.back()->Wait());
    }
  }
  for (size_t i = 0; i < reqs.size(); ++i) {
    EXPECT_TRUE(sinks[i]->Wait());
    out[i] = {sinks[i]->ids(), sinks[i]->logprobs(), sinks[i]->stats().cached_prompt_tokens,
              sinks[i]->reason()};
  }
  return out;
}

// Every request of RunAll has finished: Stats() already counts its blocks as freed.
void ExpectNoBlocksUsed(const EngineLoop& loop) { EXPECT_EQ(loop.Stats().kv_blocks_used, 0); }

class PrefixCacheLoopTest : public EngineLoopTest {
 protected:
  std::unique_ptr<EngineLoop> Loop(int kv_blocks, bool cache, EngineLoopOptions o = {}) {
    o.prefix_cache.enabled = cache;
    return EngineLoopTest::Loop(kv_blocks, o);
  }
  static std::vector<Request> Requests(int n) {
    std::vector<Request> r;
    for (int i = 0; i < n; ++i) r.push_back(PrefixReq(i, nullptr));
    return r;
  }
  // The reference: every request alone, no cache.
  static const std::vector<Outcome>& Reference() {
    static const std::vector<Outcome>* ref = [] {
      PrefixCacheLoopTest t;
      auto loop = t.Loop(256, false);
      return new std::vector<Outcome>(RunAll(*loop, Requests(12), false));
    }();
    return *ref;
  }
  static void ExpectBitwise(const std::vector<Outcome>& got, const std::string& what) {
    const auto& ref = Reference();
    ASSERT_EQ(got.size(), ref.size());
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_EQ(got[i].reason, FinishReason::kLength) << what << ", request " << i;
      EXPECT_EQ(got[i].ids, ref[i].ids) << what << ", request " << i;
      // Bitwise: == on floats, no tolerance.
      EXPECT_EQ(got[i].logprobs, ref[i].logprobs) << what << ", request " << i;
    }
  }
  void TestBody() override {}
};

TEST_F(PrefixCacheLoopTest, CachedPrefixGivesTheBitsOfRecomputation) {
  auto loop = Loop(256, true);
  // One after another: from the second request on, the shared 32 tokens come from the cache.
  const auto seq = RunAll(*loop, Requests(12), false);
  ExpectBitwise(seq, "one after another");
  EXPECT_EQ(seq[0].cached, 0);
  for (size_t i = 1; i < seq.size(); ++i) EXPECT_EQ(seq[i].cached, 32) << "request " << i;
  // All at once, in a batch with each other, with the prefix cached.
  ExpectBitwise(RunAll(*loop, Requests(12), true), "all at once");
  // A request repeated exactly reuses every full block short of its last token.
  const auto again = RunAll(*loop, Requests(12), false);
  ExpectBitwise(again, "repeated");
  for (size_t i = 0; i < again.size(); ++i) {
    const int64_t len = static_cast<int64_t>(SharedPrompt(static_cast<int>(i)).size());
    EXPECT_EQ(again[i].cached, (len - 1) / 16 * 16) << "request " << i;
  }
  ExpectNoBlocksUsed(*loop);
  EXPECT_GT(loop->Stats().kv_blocks_cached, 0);
}

TEST_F(PrefixCacheLoopTest, ACachedConversationTurnReusesGeneratedTokens) {
  auto loop = Loop(256, true);
  auto off = Loop(256, false);
  // Turn 1, then turn 2 = turn 1's prompt + its answer + a new question.
  Request t1 = PrefixReq(0, nullptr);
  t1.stopping.max_new_tokens = 20;
  const auto a1 = RunAll(*loop, {t1}, false);
  Request t2 = t1;
  t2.prompt.insert(t2.prompt.end(), a1[0].ids.begin(), a1[0].ids.end());
  for (int k = 0; k < 9; ++k) t2.prompt.push_back(40 + k);
  const auto cached = RunAll(*loop, {t2}, false);
  const auto fresh = RunAll(*off, {t2}, false);
  EXPECT_EQ(cached[0].ids, fresh[0].ids);
  EXPECT_EQ(cached[0].logprobs, fresh[0].logprobs);
  // Turn 1 left 41 + 20 tokens: its first 3 blocks (48 tokens) were computed and published.
  EXPECT_EQ(cached[0].cached, 48);
}

// Salts partition the cache: a request shares blocks only with requests of its own salt and
// owner (API key), so cached_prompt_tokens tells no one about another tenant's prompts. Outputs
// stay the bits of recomputation either way.
TEST_F(PrefixCacheLoopTest, SaltsAndOwnersPartitionTheCache) {
  auto loop = Loop(256, true);
  auto with = [](int i, std::string salt, std::string owner) {
    Request r = PrefixReq(i, nullptr);
    r.cache_salt = std::move(salt);
    r.owner = std::move(owner);
    return r;
  };
  // Requests 0 and 2 share their first 32 tokens (SharedPrompt).
  EXPECT_EQ(RunAll(*loop, {with(0, "tenant-a", "")}, false)[0].cached, 0);
  EXPECT_EQ(RunAll(*loop, {with(2, "tenant-b", "")}, false)[0].cached, 0) << "another salt";
  EXPECT_EQ(RunAll(*loop, {with(2, "", "")}, false)[0].cached, 0) << "the common pool";
  EXPECT_EQ(RunAll(*loop, {with(2, "tenant-a", "alice")}, false)[0].cached, 0)
      << "the same salt under another owner";
  const auto same = RunAll(*loop, {with(2, "tenant-a", "")}, false);
  EXPECT_EQ(same[0].cached, 32) << "the same salt";
  EXPECT_EQ(same[0].ids, Reference()[2].ids);
  EXPECT_EQ(same[0].logprobs, Reference()[2].logprobs);
  EXPECT_EQ(RunAll(*loop, {with(4, "tenant-a", "alice")}, false)[0].cached, 32)
      << "the same salt and owner";
  ExpectNoBlocksUsed(*loop);
  EXPECT_TRUE(loop->Stats().kv_blocks_cached > 0);
}

TEST_F(PrefixCacheLoopTest, PreemptionAndEvictionUnderASmallCacheKeepTheBits) {
  EngineLoopOptions o;
  o.limits.max_prefill_chunk = 16;
  // 12 blocks of 16 tokens: 12 requests of 41–63 + up to 12 tokens preempt each other, and the
  // cached blocks are evicted and recreated again and again.
  auto loop = Loop(12, true, o);
  int64_t preemptions = 0;
  for (int round = 0; round < 2; ++round) {
    const auto got = RunAll(*loop, Requests(12), true);
    ExpectBitwise(got, "round " + std::to_string(round));
    preemptions = loop->Stats().preemptions;
  }
  EXPECT_GT(preemptions, 0);
  ExpectNoBlocksUsed(*loop);
  EXPECT_LE(loop->Stats().kv_blocks_cached, 12);
}

TEST_F(PrefixCacheLoopTest, CancellationMidPrefillKeepsTheOthersAndTheCache) {
  EngineLoopOptions o;
  o.limits.max_prefill_chunk = 16;
  o.prefix_cache.enabled = true;
  // A long prompt sharing the prefix is cancelled after its third 16-token prefill chunk, from
  // the step callback (so always mid-prefill), with its first blocks already published.
  std::atomic<int64_t> victim_id{0};
  std::atomic<int> prefill_steps{0};
  EngineLoop* loop_ptr = nullptr;
  auto loop = std::make_unique<EngineLoop>(
      testing::LoadEngine(dir_->path(), "", 256), o, [&](const StepReport& r) {
        if (r.prefill_tokens > 0 && ++prefill_steps == 3 && victim_id.load() != 0)
          loop_ptr->Cancel(victim_id.load());
      });
  loop_ptr = loop.get();
  std::vector<int32_t> longp = SharedPrompt(3);
  for (int k = 0; k < 150; ++k) longp.push_back(5 + k);
  auto victim = std::make_shared<CollectingSink>();
  Request vr = PrefixReq(3, victim);
  vr.prompt = longp;
  auto id = loop->Submit(std::move(vr));
  ASSERT_TRUE(id.ok());
  victim_id = *id;
  ASSERT_TRUE(victim->Wait());
  if (prefill_steps.load() >= 3) {  // else the id was stored too late: nothing to check here
    EXPECT_EQ(victim->reason(), FinishReason::kCancelled);
    EXPECT_TRUE(victim->ids().empty());
  }
  const auto got = RunAll(*loop, Requests(12), true);
  ExpectBitwise(got, "after a cancelled prefill");
  EXPECT_EQ(got[0].cached, 32);  // the victim's published blocks serve the others
  ExpectNoBlocksUsed(*loop);
}

}  // namespace
}  // namespace sparsed
