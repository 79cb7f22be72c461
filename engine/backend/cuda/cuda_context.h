// The stream and cuBLAS handle that one model's CUDA work runs on. The CUDA backend creates one
// and hands it to everything that launches: its own ops take its stream, and the FFN workspace
// (cuda_ffn.h) holds it for every layer. Owning them here, apart from any op, means no op borrows
// another's stream, and a step graph (cuda_step_graphs.h) records every launch of the step.
// No CUDA types appear here (void* stands for cudaStream_t and cublasHandle_t). Thread-safety:
// none; one thread at a time, as the backend that owns it.
#pragma once

#include <memory>

#include "absl/status/statusor.h"

namespace sparsed::cuda {

class Context {
 public:
  // A blocking stream (ordered with the legacy default stream that synchronous copies use) and a
  // cuBLAS handle bound to it, or what failed (INTERNAL; RESOURCE_EXHAUSTED when out of memory).
  static absl::StatusOr<std::shared_ptr<Context>> Create();
  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  void* stream() const { return stream_; }  // cudaStream_t
  void* cublas() const { return cublas_; }  // cublasHandle_t, launching on stream()

 private:
  Context() = default;
  void* stream_ = nullptr;
  void* cublas_ = nullptr;
};

}  // namespace sparsed::cuda
