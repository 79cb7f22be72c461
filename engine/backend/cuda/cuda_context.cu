#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "engine/backend/cuda/cuda_context.h"

namespace sparsed::cuda {

std::shared_ptr<Context> Context::Create(std::string* error) {
  auto c = std::shared_ptr<Context>(new Context());
  cudaStream_t st;
  if (const cudaError_t e = cudaStreamCreate(&st); e != cudaSuccess) {
    *error = std::string("cudaStreamCreate: ") + cudaGetErrorString(e);
    return nullptr;
  }
  c->stream_ = st;
  cublasHandle_t h;
  if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS) {
    *error = "cublasCreate failed";
    return nullptr;
  }
  c->cublas_ = h;
  if (cublasSetStream(h, st) != CUBLAS_STATUS_SUCCESS) {
    *error = "cublasSetStream failed";
    return nullptr;
  }
  return c;
}

Context::~Context() {
  if (cublas_) cublasDestroy(static_cast<cublasHandle_t>(cublas_));
  if (stream_) cudaStreamDestroy(static_cast<cudaStream_t>(stream_));
}

}  // namespace sparsed::cuda
