#include "engine/common/thread_pool.h"

namespace sparsed {

ThreadPool::ThreadPool(int num_threads) {
  for (int i = 1; i < num_threads; ++i) workers_.emplace_back([this, i] { WorkerLoop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::ParallelFor(int num_tasks, const std::function<void(int)>& fn) {
  if (num_tasks <= 0) return;
  if (workers_.empty() || num_tasks == 1) {
    for (int i = 0; i < num_tasks; ++i) fn(i);
    return;
  }
  {
    std::lock_guard<std::mutex> l(mu_);
    job_ = &fn;
    num_tasks_ = num_tasks;
    next_task_.store(0, std::memory_order_relaxed);
    pending_workers_.store(static_cast<int>(workers_.size()), std::memory_order_relaxed);
    ++generation_;
  }
  cv_.notify_all();
  for (int t; (t = next_task_.fetch_add(1, std::memory_order_relaxed)) < num_tasks;) fn(t);
  while (pending_workers_.load(std::memory_order_acquire) != 0) std::this_thread::yield();
}

void ThreadPool::WorkerLoop(int /*index*/) {
  uint64_t seen = 0;
  for (;;) {
    const std::function<void(int)>* job;
    int n;
    {
      std::unique_lock<std::mutex> l(mu_);
      cv_.wait(l, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      job = job_;
      n = num_tasks_;
    }
    for (int t; (t = next_task_.fetch_add(1, std::memory_order_relaxed)) < n;) (*job)(t);
    pending_workers_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

}  // namespace sparsed
