#include "engine/backend/cuda/cuda_step_graphs.h"

#include <cuda_runtime.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "engine/backend/cuda/cuda_backend_internal.h"
#include "engine/common/mix.h"

namespace sparsed::cuda {
namespace {

// Step graphs kept (one per recent step shape: batch size × attention splits × mode).
constexpr size_t kMaxStepGraphs = 16;
// Shapes of recent steps remembered: a step whose shape is among them is captured.
constexpr size_t kRecentShapes = 8;

using detail::Err;

}  // namespace

void StepGraphs::Begin() {
  deferred_.clear();
  deferring_ = enabled_ && off_.ok();
}

absl::Status StepGraphs::Enqueue(std::initializer_list<uint64_t> args, Op run) {
  if (!deferring_) return run();
  uint64_t h = 0x2545f4914f6cdd1dull;
  for (uint64_t a : args) h = Mix64(h ^ a);
  deferred_.push_back({h, std::move(run)});
  return absl::OkStatus();
}

absl::Status StepGraphs::Flush(bool launch) {
  deferring_ = false;
  if (deferred_.empty()) return absl::OkStatus();
  std::vector<uint64_t> sigs;
  sigs.reserve(deferred_.size());
  uint64_t shape = 0;
  for (const Deferred& op : deferred_) {
    sigs.push_back(op.sig);
    shape = Mix64(shape ^ op.sig);
  }
  absl::Status status = launch ? Launch(sigs, shape) : absl::OkStatus();
  deferred_.clear();
  // Remember the shape, most recent last.
  std::erase(recent_shapes_, shape);
  recent_shapes_.push_back(shape);
  if (recent_shapes_.size() > kRecentShapes) recent_shapes_.erase(recent_shapes_.begin());
  return status;
}

absl::Status StepGraphs::Launch(const std::vector<uint64_t>& sigs, uint64_t shape) {
  auto st = static_cast<cudaStream_t>(stream_);
  for (size_t i = 0; i < graphs_.size(); ++i) {
    if (graphs_[i].sigs != sigs) continue;
    // The same operations on the same buffers as the captured step: replay it.
    std::rotate(graphs_.begin() + i, graphs_.begin() + i + 1, graphs_.end());
    ++replays_;
    return Err("launching a step graph",
               cudaGraphLaunch(static_cast<cudaGraphExec_t>(graphs_.back().exec), st));
  }
  // A shape seen among the recent steps (a decode batch between prefill steps) is captured.
  const bool seen =
      std::find(recent_shapes_.begin(), recent_shapes_.end(), shape) != recent_shapes_.end();
  if (seen && off_.ok()) {
    if (std::optional<absl::Status> launched = Capture(sigs)) return *launched;
  }
  for (const Deferred& op : deferred_) RETURN_IF_ERROR(op.run());
  return absl::OkStatus();
}

std::optional<absl::Status> StepGraphs::Capture(const std::vector<uint64_t>& sigs) {
  auto st = static_cast<cudaStream_t>(stream_);
  if (const cudaError_t e = cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal);
      e != cudaSuccess) {
    cudaGetLastError();
    off_ = Err("cudaStreamBeginCapture", e);
    return std::nullopt;
  }
  absl::Status op_status;
  for (const Deferred& op : deferred_) {
    op_status = op.run();
    if (!op_status.ok()) break;
  }
  cudaGraph_t graph = nullptr;
  const cudaError_t ended = cudaStreamEndCapture(st, &graph);
  cudaGraphExec_t exec = nullptr;
  cudaError_t inst = cudaErrorUnknown;
  if (op_status.ok() && ended == cudaSuccess) inst = cudaGraphInstantiate(&exec, graph, 0);
  if (graph) cudaGraphDestroy(graph);
  if (!op_status.ok() || ended != cudaSuccess || inst != cudaSuccess) {
    // Nothing ran: the caller launches the operations one by one, and later steps do too.
    cudaGetLastError();
    off_ = !op_status.ok()        ? WithContext("capturing a step", op_status)
           : ended != cudaSuccess ? Err("capturing a step", ended)
                                  : Err("instantiating a step graph", inst);
    return std::nullopt;
  }
  if (graphs_.size() >= kMaxStepGraphs) {
    cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(graphs_.front().exec));
    graphs_.erase(graphs_.begin());
  }
  graphs_.push_back({sigs, exec});
  ++captures_;
  return Err("launching a step graph", cudaGraphLaunch(exec, st));
}

void StepGraphs::Drop() {
  recent_shapes_.clear();
  if (graphs_.empty()) return;
  // Execs may only be destroyed once no launch of them is running.
  cudaStreamSynchronize(static_cast<cudaStream_t>(stream_));
  for (Graph& g : graphs_) cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(g.exec));
  graphs_.clear();
}

std::string StepGraphs::Describe() const {
  return absl::StrCat("step graphs: ", captures_, " captured, ", replays_, " replayed",
                      off_.ok() ? "" : ", then turned off: ", off_.message());
}

}  // namespace sparsed::cuda
