#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "engine/backend/cuda/cuda_context.h"
#include "engine/backend/cuda/cuda_status.h"

namespace sparsed::cuda {

absl::StatusOr<std::shared_ptr<Context>> Context::Create() {
  auto c = std::shared_ptr<Context>(new Context());
  cudaStream_t st;
  SPARSED_CUDA_TRY(cudaStreamCreate(&st));
  c->stream_ = st;
  cublasHandle_t h;
  SPARSED_CUBLAS_TRY(cublasCreate(&h));
  c->cublas_ = h;
  SPARSED_CUBLAS_TRY(cublasSetStream(h, st));
  return c;
}

Context::~Context() {
  if (cublas_) cublasDestroy(static_cast<cublasHandle_t>(cublas_));
  if (stream_) cudaStreamDestroy(static_cast<cudaStream_t>(stream_));
}

}  // namespace sparsed::cuda
