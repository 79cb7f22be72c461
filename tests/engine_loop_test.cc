// The engine loop with a real (synthetic) model: batched equals alone, stop conditions,
// cancellation, deadlines, backpressure, preemption under a small KV cache, step failures.
#include "scheduler/engine_loop.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <random>

#include "tests/engine_loop_fixture.h"

namespace sparsed {
namespace {

using ::testing::HasSubstr;

TEST_F(EngineLoopTest, ConcurrentRequestsMatchEachAlone) {
  auto ref_engine = testing::LoadEngine(dir_->path(), "");
  auto loop = Loop(256);
  std::vector<std::shared_ptr<CollectingSink>> sinks;
  for (const auto& p : Prompts()) {
    sinks.push_back(std::make_shared<CollectingSink>());
    ASSERT_TRUE(loop->Submit(Req(p, 12, sinks.back())).ok());
  }
  for (size_t i = 0; i < sinks.size(); ++i) {
    ASSERT_TRUE(sinks[i]->Wait());
    EXPECT_EQ(sinks[i]->reason(), FinishReason::kLength);
    const auto alone = testing::GreedyBatch(*ref_engine, {Prompts()[i]}, 12);
    EXPECT_EQ(sinks[i]->ids(), alone.tokens[0]) << "request " << i;
    // The streamed text is exactly the ids decoded after the prompt's last token.
    EXPECT_EQ(sinks[i]->text(),
              *ref_engine->tokenizer()->DecodeAfter({Prompts()[i].back()}, sinks[i]->ids()));
    const RequestStats st = sinks[i]->stats();
    EXPECT_EQ(st.generated_tokens, 12);
    EXPECT_EQ(st.prompt_tokens, static_cast<int64_t>(Prompts()[i].size()));
    EXPECT_GT(st.mean_active_ratio, 0.0);
    EXPECT_LE(st.mean_active_ratio, st.mean_union_ratio + 1e-9);
    EXPECT_LE(st.time_to_first_token, st.total_time);
  }
  // Everything freed: Stats() counts a finish before its sink hears of it, so no wait.
  EXPECT_EQ(loop->Stats().kv_blocks_used, 0);
}

TEST_F(EngineLoopTest, PreemptionUnderSmallCacheKeepsOutputs) {
  auto ref_engine = testing::LoadEngine(dir_->path(), "");
  // 5 blocks of 16 tokens: the five requests (up to 18 + 24 tokens each) cannot all stay resident.
  EngineLoopOptions o;
  auto loop = Loop(5, o);
  std::vector<std::shared_ptr<CollectingSink>> sinks;
  for (const auto& p : Prompts()) {
    sinks.push_back(std::make_shared<CollectingSink>());
    ASSERT_TRUE(loop->Submit(Req(p, 24, sinks.back())).ok());
  }
  int64_t preempted = 0;
  for (size_t i = 0; i < sinks.size(); ++i) {
    ASSERT_TRUE(sinks[i]->Wait());
    ASSERT_EQ(sinks[i]->reason(), FinishReason::kLength);
    const auto alone = testing::GreedyBatch(*ref_engine, {Prompts()[i]}, 24);
    EXPECT_EQ(sinks[i]->ids(), alone.tokens[0]) << "request " << i;
    preempted += sinks[i]->stats().preemptions;
  }
  EXPECT_GT(preempted, 0);
  EXPECT_EQ(loop->Stats().preemptions, preempted);
}

TEST_F(EngineLoopTest, PriorityPreemptionServesTheHigherFirstAndKeepsEveryOutput) {
  auto ref_engine = testing::LoadEngine(dir_->path(), "");
  EngineLoopOptions o;
  o.limits.max_num_seqs = 2;  // two slots, both taken by low-priority requests
  // The loop takes no step between the two low-priority submissions (paused), and once both have
  // tokens (both run) it holds before its next step until the urgent request is in, whatever
  // the machine's load.
  std::vector<std::shared_ptr<CollectingSink>> lows = {std::make_shared<CollectingSink>(),
                                                       std::make_shared<CollectingSink>()};
  std::mutex gate_mu;
  std::condition_variable gate_cv;
  bool armed = false, paused = false, holding = false, open = false;
  o.inject_step_fault = [&]() -> absl::Status {
    std::unique_lock<std::mutex> l(gate_mu);
    gate_cv.wait_for(l, std::chrono::seconds(60), [&] { return !paused; });
    if (armed && !holding && !lows[0]->ids().empty() && !lows[1]->ids().empty()) {
      holding = true;
      gate_cv.notify_all();
      gate_cv.wait_for(l, std::chrono::seconds(60), [&] { return open; });
    }
    return absl::OkStatus();
  };
  auto loop = Loop(256, o);
  auto low = [&](int i, std::shared_ptr<TokenSink> sink) {
    Request r = Req(PromptOfLength(9 + i, 100 + i), 60, std::move(sink));
    if (i == 1) {  // one sampled with a seed: its random stream must survive the preemption
      r.sampling.temperature = 0.9f;
      r.sampling.seed = 77;
      r.sampling.has_seed = true;
    }
    return r;
  };
  // Reference outputs, each alone.
  std::vector<std::vector<int32_t>> alone(2);
  for (int i = 0; i < 2; ++i) {
    auto sink = std::make_shared<CollectingSink>();
    ASSERT_TRUE(loop->Submit(low(i, sink)).ok());
    ASSERT_TRUE(sink->Wait());
    alone[i] = sink->ids();
  }
  const std::vector<int32_t> urgent_prompt = PromptOfLength(12, 7);
  const auto urgent_alone = testing::GreedyBatch(*ref_engine, {urgent_prompt}, 8);

  {
    std::lock_guard<std::mutex> l(gate_mu);
    armed = paused = true;
  }
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(loop->Submit(low(i, lows[i])).ok());
  {
    std::lock_guard<std::mutex> l(gate_mu);
    paused = false;
  }
  gate_cv.notify_all();
  {
    std::unique_lock<std::mutex> l(gate_mu);
    ASSERT_TRUE(gate_cv.wait_for(l, std::chrono::seconds(60), [&] { return holding; }));
  }
  auto urgent = std::make_shared<CollectingSink>();
  Request u = Req(urgent_prompt, 8, urgent);
  u.priority = 10;
  ASSERT_TRUE(loop->Submit(std::move(u)).ok());
  {
    std::lock_guard<std::mutex> l(gate_mu);
    open = true;
  }
  gate_cv.notify_all();
  ASSERT_TRUE(urgent->Wait());
  // The urgent request finished while both low ones were still generating (it did not wait for a
  // slot), and every output is bitwise what it is alone.
  EXPECT_EQ(lows[0]->finishes() + lows[1]->finishes(), 0);
  EXPECT_EQ(urgent->ids(), urgent_alone.tokens[0]);
  int64_t preempted = 0;
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(lows[i]->Wait());
    EXPECT_EQ(lows[i]->ids(), alone[i]) << "low-priority request " << i;
    preempted += lows[i]->stats().preemptions;
  }
  EXPECT_EQ(preempted, 1);  // one slot was needed, one request gave it up
}

TEST_F(EngineLoopTest, OneOwnerFillsOnlyItsShareOfTheQueue) {
  EngineLoopOptions o;
  o.max_waiting_per_owner = 2;
  // The loop holds in its first step (one request running) until released, so whatever is
  // submitted meanwhile waits.
  std::mutex gate_mu;
  std::condition_variable gate_cv;
  bool open = false;
  std::atomic<bool> holding{false};
  o.inject_step_fault = [&]() -> absl::Status {
    std::unique_lock<std::mutex> l(gate_mu);
    holding = true;
    gate_cv.wait_for(l, std::chrono::seconds(60), [&] { return open; });
    return absl::OkStatus();
  };
  auto loop = Loop(256, o);
  std::vector<std::shared_ptr<CollectingSink>> sinks;
  auto submit = [&](const std::string& owner) {
    sinks.push_back(std::make_shared<CollectingSink>());
    Request r = Req(PromptOfLength(6, static_cast<int>(sinks.size())), 4, sinks.back());
    r.owner = owner;
    return loop->Submit(std::move(r));
  };
  ASSERT_TRUE(submit("a").ok());
  for (int i = 0; i < 6000 && !holding; ++i) absl::SleepFor(absl::Milliseconds(5));
  ASSERT_TRUE(holding);  // "a"'s first request runs; the ones below wait
  EXPECT_TRUE(submit("a").ok());
  EXPECT_TRUE(submit("a").ok());
  const absl::StatusOr<int64_t> third = submit("a");
  EXPECT_EQ(third.status().code(), absl::StatusCode::kResourceExhausted) << third.status();
  EXPECT_NE(third.status().message().find("'a'"), std::string::npos) << third.status();
  sinks.pop_back();               // refused: its sink hears nothing
  EXPECT_TRUE(submit("b").ok());  // another owner is still queued
  EXPECT_TRUE(submit("").ok());   // and so is a request without one
  EXPECT_EQ(loop->Current().waiting, 4);
  {
    std::lock_guard<std::mutex> l(gate_mu);
    open = true;
  }
  gate_cv.notify_all();
  for (auto& s : sinks) {
    ASSERT_TRUE(s->Wait());
    EXPECT_EQ(s->reason(), FinishReason::kLength);
  }
  // Once "a"'s requests have left the queue, it may queue again.
  EXPECT_TRUE(submit("a").ok());
  ASSERT_TRUE(sinks.back()->Wait());
}

TEST_F(EngineLoopTest, StopTokenIdsAndLength) {
  auto ref_engine = testing::LoadEngine(dir_->path(), "");
  const auto alone = testing::GreedyBatch(*ref_engine, {Prompts()[0]}, 8);
  auto loop = Loop(64);
  auto sink = std::make_shared<CollectingSink>();
  Request r = Req(Prompts()[0], 8, sink);
  r.stopping.stop_token_ids = {alone.tokens[0][3]};
  ASSERT_TRUE(loop->Submit(std::move(r)).ok());
  ASSERT_TRUE(sink->Wait());
  EXPECT_EQ(sink->reason(), FinishReason::kStop);
  const auto ids = sink->ids();
  ASSERT_FALSE(ids.empty());
  EXPECT_EQ(ids.back(), alone.tokens[0][3]);
  EXPECT_LE(ids.size(), 4u);
}

TEST_F(EngineLoopTest, CancelFreesBlocks) {
  auto loop = Loop(64);
  auto sink = std::make_shared<CollectingSink>();
  auto id = loop->Submit(Req(Prompts()[2], 40, sink));
  ASSERT_TRUE(id.ok());
  loop->Cancel(*id);
  ASSERT_TRUE(sink->Wait());
  EXPECT_EQ(sink->reason(), FinishReason::kCancelled);
  EXPECT_EQ(sink->finishes(), 1);
  // Stats() counts a finish before its sink hears of it: no waiting needed.
  EXPECT_EQ(loop->Stats().kv_blocks_used, 0);
  loop->Cancel(*id);  // unknown or finished ids are ignored
}

// Whoever hears of a finish (the sink, on the loop thread, and anyone it wakes) finds it already
// counted in Stats(): no running or waiting sequence and no block held.
TEST_F(EngineLoopTest, StatsCountAFinishBeforeItsSinkHears) {
  auto loop = Loop(64);
  struct StatsAtFinish : CollectingSink {
    EngineLoop* loop = nullptr;
    EngineLoop::Snapshot seen;
    void OnFinish(FinishReason reason, const absl::Status& status,
                  const RequestStats& stats) override {
      seen = loop->Stats();
      CollectingSink::OnFinish(reason, status, stats);
    }
  };
  for (int i = 0; i < 3; ++i) {
    auto sink = std::make_shared<StatsAtFinish>();
    sink->loop = loop.get();
    ASSERT_TRUE(loop->Submit(Req(Prompts()[i], 5 + i, sink)).ok());
    ASSERT_TRUE(sink->Wait());
    EXPECT_EQ(sink->seen.running, 0) << "request " << i;
    EXPECT_EQ(sink->seen.waiting, 0) << "request " << i;
    EXPECT_EQ(sink->seen.kv_blocks_used, 0) << "request " << i;
  }
}

TEST_F(EngineLoopTest, DeadlineExpires) {
  auto loop = Loop(64);
  auto sink = std::make_shared<CollectingSink>();
  Request r = Req(Prompts()[1], 40, sink);
  r.deadline = absl::Now() - absl::Seconds(1);
  ASSERT_TRUE(loop->Submit(std::move(r)).ok());
  ASSERT_TRUE(sink->Wait());
  EXPECT_EQ(sink->reason(), FinishReason::kDeadline);
}

// A cancellation that arrives after the request's deadline (gRPC cancels such calls) is
// reported as the deadline, so metrics and logs count deadlines honestly.
TEST_F(EngineLoopTest, CancelAfterTheDeadlineIsTheDeadline) {
  auto loop = Loop(64);
  auto sink = std::make_shared<CollectingSink>();
  Request r = Req(Prompts()[1], 40, sink);
  r.deadline = absl::Now() - absl::Milliseconds(1);
  auto id = loop->Submit(std::move(r));
  ASSERT_TRUE(id.ok());
  loop->Cancel(*id);
  ASSERT_TRUE(sink->Wait());
  EXPECT_EQ(sink->reason(), FinishReason::kDeadline);
  EXPECT_EQ(sink->finishes(), 1);
}

TEST_F(EngineLoopTest, BackpressureRefusesAtOnce) {
  EngineLoopOptions o;
  o.max_waiting_requests = 2;
  o.limits.max_num_seqs = 1;
  auto loop = Loop(64, o);
  std::vector<std::shared_ptr<CollectingSink>> sinks;
  int refused = 0;
  for (int i = 0; i < 12; ++i) {
    sinks.push_back(std::make_shared<CollectingSink>());
    auto id = loop->Submit(Req(Prompts()[i % 5], 30, sinks.back()));
    if (!id.ok()) {
      EXPECT_EQ(id.status().code(), absl::StatusCode::kResourceExhausted);
      EXPECT_THAT(std::string(id.status().message()), HasSubstr("queue is full"));
      ++refused;
      sinks.pop_back();
    }
  }
  EXPECT_GT(refused, 0);
  for (auto& s : sinks) ASSERT_TRUE(s->Wait());
}

TEST_F(EngineLoopTest, RejectsBadRequestsWithTheField) {
  auto loop = Loop(8);  // 128 tokens of context
  auto sink = std::make_shared<CollectingSink>();
  auto msg = [&](Request r) {
    auto id = loop->Submit(std::move(r));
    EXPECT_EQ(id.status().code(), absl::StatusCode::kInvalidArgument);
    return std::string(id.status().message());
  };
  EXPECT_THAT(msg(Req({}, 4, sink)), HasSubstr("prompt is empty"));
  EXPECT_THAT(msg(Req({1, 99999}, 4, sink)), HasSubstr("prompt_token_ids[1]"));
  EXPECT_THAT(msg(Req({1, 2}, 0, sink)), HasSubstr("stopping.max_new_tokens"));
  EXPECT_THAT(msg(Req(std::vector<int32_t>(200, 5), 4, sink)),
              HasSubstr("at most 127 prompt tokens"));
  EXPECT_THAT(msg(Req({1, 2, 3}, 126, sink)), HasSubstr("exceeds the context of 128"));
  Request r = Req({1, 2}, 4, sink);
  r.sampling.top_p = 2;
  EXPECT_THAT(msg(std::move(r)), HasSubstr("sampling.top_p"));
  EXPECT_EQ(sink->finishes(), 0);
}

TEST_F(EngineLoopTest, ShutdownFinishesEveryRequestOnce) {
  auto sink = std::make_shared<CollectingSink>();
  {
    auto loop = Loop(64);
    ASSERT_TRUE(loop->Submit(Req(Prompts()[2], 60, sink)).ok());
    loop->Shutdown();
    auto late = loop->Submit(Req(Prompts()[1], 4, std::make_shared<CollectingSink>()));
    EXPECT_EQ(late.status().code(), absl::StatusCode::kUnavailable);
  }
  ASSERT_TRUE(sink->Wait(absl::Seconds(1)));
  EXPECT_EQ(sink->finishes(), 1);
}

TEST_F(EngineLoopTest, SixteenDifferentRequestsGreedyAndSeededMatchAlone) {
  auto loop = Loop(512);
  auto make = [&](int i, std::shared_ptr<TokenSink> sink) {
    Request r = Req(PromptOfLength(1 + (i * 7) % 40, i), 4 + i % 9, std::move(sink));
    if (i % 2) {  // half sampled with a seed
      r.sampling.temperature = 0.8f;
      r.sampling.top_p = 0.9f;
      r.sampling.seed = 1000 + i;
      r.sampling.has_seed = true;
    }
    return r;
  };
  std::vector<std::vector<int32_t>> alone(16);
  for (int i = 0; i < 16; ++i) {
    auto sink = std::make_shared<CollectingSink>();
    ASSERT_TRUE(loop->Submit(make(i, sink)).ok());
    ASSERT_TRUE(sink->Wait());
    alone[i] = sink->ids();
  }
  std::vector<std::shared_ptr<CollectingSink>> sinks;
  for (int i = 0; i < 16; ++i) {
    sinks.push_back(std::make_shared<CollectingSink>());
    ASSERT_TRUE(loop->Submit(make(i, sinks.back())).ok());
  }
  for (int i = 0; i < 16; ++i) {
    ASSERT_TRUE(sinks[i]->Wait());
    EXPECT_EQ(sinks[i]->ids(), alone[i])
        << "request " << i << (i % 2 ? " (seeded sampling)" : " (greedy)");
  }
}

TEST_F(EngineLoopTest, CancellingHalfOf64FreesBlocksAtOnceAndKeepsTheOthers) {
  auto ref_engine = testing::LoadEngine(dir_->path(), "");
  std::atomic<int> steps{0};
  EngineLoopOptions o;
  o.limits.max_num_seqs = 64;
  o.limits.max_num_batched_tokens = 2048;
  EngineLoop loop(testing::LoadEngine(dir_->path(), "", 512), o,
                  [&](const StepReport&) { ++steps; });
  std::vector<std::shared_ptr<CollectingSink>> sinks;
  std::vector<int64_t> ids;
  for (int i = 0; i < 64; ++i) {
    sinks.push_back(std::make_shared<CollectingSink>());
    auto id = loop.Submit(Req(PromptOfLength(2 + i % 13, i), 30, sinks.back()));
    ASSERT_TRUE(id.ok());
    ids.push_back(*id);
  }
  // Wait until every request is decoding, then cancel the even ones.
  for (int t = 0; t < 2000; ++t) {
    bool all = true;
    for (auto& s : sinks) all &= !s->ids().empty();
    if (all) break;
    absl::SleepFor(absl::Milliseconds(1));
  }
  const int at_cancel = steps.load();
  for (int i = 0; i < 64; i += 2) loop.Cancel(ids[i]);
  for (int i = 0; i < 64; i += 2) {
    ASSERT_TRUE(sinks[i]->Wait());
    if (sinks[i]->reason() == FinishReason::kCancelled) {
      // The cancellation is taken at the start of the next iteration.
      EXPECT_LE(steps.load(), at_cancel + 2) << "request " << i;
    }
  }
  for (int i = 1; i < 64; i += 2) {
    ASSERT_TRUE(sinks[i]->Wait());
    ASSERT_EQ(sinks[i]->reason(), FinishReason::kLength);
    const auto alone = testing::GreedyBatch(*ref_engine, {PromptOfLength(2 + i % 13, i)}, 30);
    EXPECT_EQ(sinks[i]->ids(), alone.tokens[0]) << "request " << i;
  }
  EXPECT_EQ(loop.Stats().kv_blocks_used, 0);  // every sink has heard its finish
}

TEST_F(EngineLoopTest, RandomizedArrivalsCancellationsAndDeadlines) {
  // Many short requests against a small cache (preemptions happen), some cancelled, some with
  // tight deadlines. Every request ends exactly once with a reason its fate allows, admission is
  // first-come-first-served, and every block comes back.
  EngineLoopOptions o;
  o.limits.max_num_seqs = 16;
  o.limits.max_num_batched_tokens = 128;
  o.limits.max_prefill_chunk = 32;
  auto loop = Loop(24, o);
  std::mt19937_64 rng(2026);
  constexpr int kRequests = 1200;
  struct Item {
    std::shared_ptr<CollectingSink> sink;
    int64_t id;
    int fate;  // 0 normal, 1 cancelled, 2 deadline
    absl::Time submitted;
  };
  std::vector<Item> items;
  for (int i = 0; i < kRequests; ++i) {
    Item it{std::make_shared<CollectingSink>(), 0, static_cast<int>(rng() % 10), absl::Now()};
    it.fate = it.fate < 7 ? 0 : it.fate < 9 ? 1 : 2;
    Request r = Req(PromptOfLength(1 + static_cast<int>(rng() % 40), i),
                    1 + static_cast<int>(rng() % 12), it.sink);
    if (it.fate == 2)
      r.deadline = absl::Now() + absl::Microseconds(static_cast<int64_t>(rng() % 3000));
    for (;;) {
      it.submitted = absl::Now();
      auto id = loop->Submit(r);
      if (id.ok()) {
        it.id = *id;
        break;
      }
      ASSERT_EQ(id.status().code(), absl::StatusCode::kResourceExhausted);
      absl::SleepFor(absl::Microseconds(200));
    }
    if (it.fate == 1 && rng() % 2) loop->Cancel(it.id);
    items.push_back(std::move(it));
  }
  for (size_t i = 0; i < items.size(); ++i) {
    if (items[i].fate == 1) loop->Cancel(items[i].id);  // the rest of the cancellations, late
  }
  absl::Time last_admission = absl::InfinitePast();
  int64_t preempted = 0;
  for (const Item& it : items) {
    ASSERT_TRUE(it.sink->Wait()) << "request " << it.id << " never finished";
    EXPECT_EQ(it.sink->finishes(), 1);
    const FinishReason r = it.sink->reason();
    if (it.fate == 0) {
      EXPECT_EQ(r, FinishReason::kLength) << it.id;
    } else if (it.fate == 1) {
      EXPECT_TRUE(r == FinishReason::kLength || r == FinishReason::kCancelled) << it.id;
    } else if (it.fate == 2) {
      EXPECT_TRUE(r == FinishReason::kLength || r == FinishReason::kDeadline) << it.id;
    }
    const RequestStats st = it.sink->stats();
    preempted += st.preemptions;
    if (it.fate == 0) {
      // Admission is first-come-first-served: nobody is admitted before an earlier request
      // (requests admitted in one step share a timestamp).
      EXPECT_GE(st.first_scheduled, last_admission) << "request " << it.id << " overtaken";
      last_admission = std::max(last_admission, st.first_scheduled);
    }
  }
  const auto snap = loop->Stats();  // every sink has heard its finish
  EXPECT_EQ(snap.kv_blocks_used, 0);
  EXPECT_EQ(snap.running + snap.waiting, 0);
  EXPECT_GT(snap.preemptions, 0);
  EXPECT_EQ(snap.preemptions, preempted);
}

TEST_F(EngineLoopTest, StopStringEndsTheTextBeforeIt) {
  auto loop = Loop(64);
  auto free_run = std::make_shared<CollectingSink>();
  ASSERT_TRUE(loop->Submit(Req(Prompts()[4], 24, free_run)).ok());
  ASSERT_TRUE(free_run->Wait());
  const std::string text = free_run->text();
  // A 3-byte ASCII stop string from the second half of the text.
  size_t at = std::string::npos;
  for (size_t i = text.size() / 2; i + 3 <= text.size(); ++i) {
    if (std::all_of(text.begin() + i, text.begin() + i + 3,
                    [](char c) { return c > 32 && c < 127; })) {
      at = i;
      break;
    }
  }
  if (at == std::string::npos) GTEST_SKIP() << "no ASCII run in: " << text;
  const std::string stop = text.substr(at, 3);
  auto sink = std::make_shared<CollectingSink>();
  Request r = Req(Prompts()[4], 24, sink);
  r.stopping.stop = {stop};
  ASSERT_TRUE(loop->Submit(std::move(r)).ok());
  ASSERT_TRUE(sink->Wait());
  EXPECT_EQ(sink->reason(), FinishReason::kStop);
  EXPECT_EQ(sink->text(), text.substr(0, text.find(stop)));
  EXPECT_LT(sink->ids().size(), free_run->ids().size());
}

TEST_F(EngineLoopTest, RepeatedStepFailuresMakeTheEngineUnhealthyUntilAStepSucceeds) {
  std::atomic<bool> fail{true};
  EngineLoopOptions o;
  o.unhealthy_after_failed_steps = 3;
  o.inject_step_fault = [&]() -> absl::Status {
    return fail ? absl::InternalError("injected device error") : absl::OkStatus();
  };
  std::mutex mu;
  std::vector<StepReport> reports;
  EngineLoop loop(testing::LoadEngine(dir_->path(), "", 64), o, [&](const StepReport& r) {
    std::lock_guard<std::mutex> l(mu);
    if (r.sequences > 0) reports.push_back(r);
  });
  for (int i = 0; i < 3; ++i) {
    auto sink = std::make_shared<CollectingSink>();
    ASSERT_TRUE(loop.Submit(Req({1, 5, 6}, 4, sink)).ok());
    ASSERT_TRUE(sink->Wait());
    EXPECT_EQ(sink->reason(), FinishReason::kError);
    // Healthy through the first two failures in a row; unhealthy from the third.
    EXPECT_EQ(loop.Stats().engine_healthy, i < 2) << "after failure " << i + 1;
  }
  {
    std::lock_guard<std::mutex> l(mu);
    ASSERT_EQ(reports.size(), 3u);
    for (int i = 0; i < 3; ++i) {
      EXPECT_TRUE(reports[i].step_failed);
      EXPECT_EQ(reports[i].consecutive_failed_steps, i + 1);
      EXPECT_EQ(reports[i].engine_healthy, i < 2);
    }
    EXPECT_EQ(reports[2].kv_blocks_used, 0);  // the failed sequences' blocks came back
  }
  fail = false;
  auto sink = std::make_shared<CollectingSink>();
  ASSERT_TRUE(loop.Submit(Req({1, 5, 6}, 4, sink)).ok());
  ASSERT_TRUE(sink->Wait());
  EXPECT_EQ(sink->reason(), FinishReason::kLength);
  EXPECT_TRUE(loop.Stats().engine_healthy);
  std::lock_guard<std::mutex> l(mu);
  EXPECT_FALSE(reports.back().step_failed);
  EXPECT_EQ(reports.back().consecutive_failed_steps, 0);
}

// Prefix cache: requests sharing a 40-token system prompt (two full 16-token blocks), greedy and
// seeded-sampled, each with its token ids and log-probabilities.

}  // namespace
}  // namespace sparsed
