// The CPU backend's thread pool: every task of a loop runs exactly once, on the calling thread
// and the workers, for any task and thread count; loops run back to back; the destructor joins.
#include "engine/common/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

namespace sparsed {
namespace {

TEST(ThreadPoolTest, EveryTaskRunsExactlyOnce) {
  for (int threads : {1, 2, 4}) {
    ThreadPool pool(threads);
    EXPECT_EQ(pool.num_threads(), threads);
    for (int tasks : {0, 1, 2, 3, 7, 64, 1000}) {
      std::vector<std::atomic<int>> runs(tasks);
      pool.ParallelFor(tasks, [&](int t) { runs[t].fetch_add(1); });
      for (int t = 0; t < tasks; ++t)
        EXPECT_EQ(runs[t].load(), 1) << "task " << t << " of " << tasks << ", " << threads;
    }
  }
}

// ParallelFor returns only after every task finished: the results are visible to the caller.
TEST(ThreadPoolTest, ReturnsAfterAllTasksAndReusesWorkers) {
  ThreadPool pool(3);
  std::vector<int64_t> out(257);
  for (int round = 0; round < 200; ++round) {
    pool.ParallelFor(static_cast<int>(out.size()), [&](int t) { out[t] = int64_t{t} * round; });
    for (size_t t = 0; t < out.size(); ++t) ASSERT_EQ(out[t], int64_t(t) * round);
  }
}

// The worker takes part: the first task waits (up to 10 s, however busy the machine) until
// another thread has run a task; whichever thread holds it, the other runs the rest.
TEST(ThreadPoolTest, WorkersShareTheLoad) {
  ThreadPool pool(2);
  std::mutex mu;
  std::set<std::thread::id> seen;
  pool.ParallelFor(64, [&](int t) {
    {
      std::lock_guard<std::mutex> l(mu);
      seen.insert(std::this_thread::get_id());
    }
    if (t != 0) return;
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < until) {
      {
        std::lock_guard<std::mutex> l(mu);
        if (seen.size() > 1) return;
      }
      std::this_thread::yield();
    }
  });
  EXPECT_EQ(seen.size(), 2u);
}

TEST(ThreadPoolTest, OneThreadRunsInlineInOrder) {
  ThreadPool pool(1);
  std::vector<int> order;
  pool.ParallelFor(5, [&](int t) { order.push_back(t); });
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3, 4}));
}

}  // namespace
}  // namespace sparsed
