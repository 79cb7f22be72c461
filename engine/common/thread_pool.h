// A fixed pool of worker threads for data-parallel loops.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace sparsed {

// Thread-safety: ParallelFor may be called from one thread at a time (the engine thread).
class ThreadPool {
 public:
  // `num_threads` counts the calling thread; 1 means no workers.
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return static_cast<int>(workers_.size()) + 1; }

  // Calls fn(task) for task in [0, num_tasks), spread over all threads, and waits.
  void ParallelFor(int num_tasks, const std::function<void(int)>& fn);

 private:
  void WorkerLoop(int index);

  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable cv_;
  const std::function<void(int)>* job_ = nullptr;
  int num_tasks_ = 0;
  uint64_t generation_ = 0;
  bool stop_ = false;
  std::atomic<int> next_task_{0};
  std::atomic<int> pending_workers_{0};
};

}  // namespace sparsed
