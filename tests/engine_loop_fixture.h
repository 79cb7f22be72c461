// Shared by the engine loop's tests (engine_loop_test.cc, engine_loop_prefix_test.cc): a sink
// that records what a request heard, and a fixture that loads one small synthetic ReLU² model per
// suite and makes loops and greedy requests on it.
#pragma once

#include <gtest/gtest.h>

#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "scheduler/engine_loop.h"
#include "tests/reference/test_models.h"

namespace sparsed {

class CollectingSink : public TokenSink {
 public:
  void OnTokens(const TokenEvent& e) override {
    std::lock_guard<std::mutex> l(mu_);
    text_ += e.text;
    ids_.insert(ids_.end(), e.token_ids.begin(), e.token_ids.end());
    logprobs_.insert(logprobs_.end(), e.logprobs.begin(), e.logprobs.end());
    ++events_;
  }
  void OnFinish(FinishReason r, const absl::Status& s, const RequestStats& st) override {
    {
      std::lock_guard<std::mutex> l(mu_);
      reason_ = r;
      status_ = s;
      stats_ = st;
      ++finishes_;
    }
    cv_.notify_all();
  }
  bool Wait(absl::Duration d = absl::Seconds(60)) {
    std::unique_lock<std::mutex> l(mu_);
    return cv_.wait_for(l, absl::ToChronoMilliseconds(d), [this] { return finishes_ > 0; });
  }
  std::vector<int32_t> ids() const {
    std::lock_guard<std::mutex> l(mu_);
    return ids_;
  }
  std::vector<float> logprobs() const {
    std::lock_guard<std::mutex> l(mu_);
    return logprobs_;
  }
  std::string text() const {
    std::lock_guard<std::mutex> l(mu_);
    return text_;
  }
  FinishReason reason() const {
    std::lock_guard<std::mutex> l(mu_);
    return reason_;
  }
  RequestStats stats() const {
    std::lock_guard<std::mutex> l(mu_);
    return stats_;
  }
  int finishes() const {
    std::lock_guard<std::mutex> l(mu_);
    return finishes_;
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::string text_;
  std::vector<int32_t> ids_;
  std::vector<float> logprobs_;
  int events_ = 0;
  FinishReason reason_ = FinishReason::kError;
  absl::Status status_;
  RequestStats stats_;
  int finishes_ = 0;
};

class EngineLoopTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    SyntheticModelSpec s;
    s.activation = "relu2";
    s.active_ratio = 0.2;
    dir_ = testing::MakeModel(s).release();
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  std::unique_ptr<EngineLoop> Loop(int kv_blocks, EngineLoopOptions o = {}) {
    return std::make_unique<EngineLoop>(testing::LoadEngine(dir_->path(), "", kv_blocks), o);
  }
  Request Req(std::vector<int32_t> prompt, int max_new, std::shared_ptr<TokenSink> sink) {
    Request r;
    r.prompt = std::move(prompt);
    r.sampling.temperature = 0;
    r.stopping.max_new_tokens = max_new;
    r.stopping.ignore_eos = true;
    r.sink = std::move(sink);
    return r;
  }
  static std::vector<std::vector<int32_t>> Prompts() {
    return {{1, 17, 300, 5, 99},
            {1, 900, 3},
            {1, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60},
            {1, 2, 3, 4},
            {1, 600, 601, 602, 603, 604, 605, 606, 607}};
  }
  static inline testing::TempDir* dir_ = nullptr;
};

// A prompt of n tokens: BOS, then tokens that vary with `seed` (no two seeds alike).
inline std::vector<int32_t> PromptOfLength(int n, int seed) {
  std::vector<int32_t> p = {1};
  for (int i = 1; i < n; ++i) p.push_back(3 + (seed * 37 + i * 11) % 900);
  return p;
}

}  // namespace sparsed
