// Step graphs for the CUDA backend (BackendOptions::cuda_graphs; cuda_backend.h describes when a
// step is recorded). Between Begin() and Flush() every operation is deferred as a closure with a
// signature of its arguments; Flush() then replays a cached CUDA graph whose signatures match,
// captures one when the step's shape (all signatures combined) is among the last few steps', or
// launches the closures one by one. Outside that window Enqueue() runs an operation at once.
//
// Errors are absl::Status values, as the CUDA kernels' (cuda_ffn.h). A failed capture turns
// graphs off for the life of the object (why: Describe()); the operations then run one by one.
// Thread-safety: one thread at a time, as the backend that owns it.
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace sparsed::cuda {

class StepGraphs {
 public:
  // An operation's device work: returns OK or the error.
  using Op = std::function<absl::Status()>;

  // `stream`: the cudaStream_t every operation is queued on; `enabled`: false runs every
  // operation at once (Begin() then defers nothing).
  StepGraphs(void* stream, bool enabled) : stream_(stream), enabled_(enabled) {}
  ~StepGraphs() { Drop(); }
  StepGraphs(const StepGraphs&) = delete;
  StepGraphs& operator=(const StepGraphs&) = delete;

  // Starts deferring a step's operations (while graphs are on).
  void Begin();
  bool deferring() const { return deferring_; }
  // Runs `run` now and returns its status, or defers it (returning OK) while deferring. `args`
  // are the operation's signature words: its kind first, then every argument that the launch
  // depends on (pointers, sizes, scalars).
  absl::Status Enqueue(std::initializer_list<uint64_t> args, Op run);
  // Stops deferring and launches what was deferred, unless `launch` is false (an earlier error:
  // the deferred work is dropped). Returns the first error.
  absl::Status Flush(bool launch = true);
  // Forgets cached graphs (waiting for the stream first) and the recent shapes: memory that a
  // graph uses is about to move or be freed.
  void Drop();
  // "step graphs: N captured, M replayed[, then turned off: why]".
  std::string Describe() const;

 private:
  struct Deferred {
    uint64_t sig;
    Op run;
  };
  struct Graph {
    std::vector<uint64_t> sigs;
    void* exec = nullptr;  // cudaGraphExec_t
  };

  absl::Status Launch(const std::vector<uint64_t>& sigs, uint64_t shape);
  // Captures and launches the deferred operations, returning the launch's status; nullopt
  // (nothing ran, graphs turned off) when capture failed.
  std::optional<absl::Status> Capture(const std::vector<uint64_t>& sigs);

  void* stream_;
  bool enabled_;
  bool deferring_ = false;
  std::vector<Deferred> deferred_;
  std::vector<uint64_t> recent_shapes_;  // of the last kRecentShapes steps, most recent last
  std::vector<Graph> graphs_;            // most recently used last
  absl::Status off_;                     // why step graphs were turned off, if they were
  int64_t captures_ = 0, replays_ = 0;
};

}  // namespace sparsed::cuda
