// CUDA and cuBLAS results as absl::Status, for the library's .cu files and the backend's .cc
// files: OK on success, else "what: reason" with RESOURCE_EXHAUSTED for a failed allocation and
// INTERNAL for every other failure. The SPARSED_*_TRY macros return such a status early from a
// function that returns absl::Status (or absl::StatusOr), as engine/common/status_macros.h's
// RETURN_IF_ERROR does for a status.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "engine/common/status_macros.h"  // RETURN_IF_ERROR, ASSIGN_OR_RETURN

namespace sparsed::cuda {

inline absl::Status CudaStatus(absl::string_view what, cudaError_t e) {
  if (e == cudaSuccess) return absl::OkStatus();
  std::string message = absl::StrCat(what, ": ", cudaGetErrorString(e));
  return e == cudaErrorMemoryAllocation ? absl::ResourceExhaustedError(std::move(message))
                                        : absl::InternalError(std::move(message));
}

inline absl::Status CublasStatus(absl::string_view what, cublasStatus_t s) {
  if (s == CUBLAS_STATUS_SUCCESS) return absl::OkStatus();
  std::string message = absl::StrCat(what, ": cuBLAS status ", static_cast<int>(s), " (",
                                     cublasGetStatusName(s), ")");
  return s == CUBLAS_STATUS_ALLOC_FAILED ? absl::ResourceExhaustedError(std::move(message))
                                         : absl::InternalError(std::move(message));
}

// The status with "prefix: " before its message, its code kept (OK stays OK).
inline absl::Status WithContext(absl::string_view prefix, const absl::Status& s) {
  if (s.ok()) return s;
  return absl::Status(s.code(), absl::StrCat(prefix, ": ", s.message()));
}

}  // namespace sparsed::cuda

#define SPARSED_CUDA_TRY(expr)                            \
  do {                                                    \
    if (const cudaError_t _e = (expr); _e != cudaSuccess) \
      return ::sparsed::cuda::CudaStatus(#expr, _e);      \
  } while (0)

#define SPARSED_CUBLAS_TRY(expr)                                       \
  do {                                                                 \
    if (const cublasStatus_t _s = (expr); _s != CUBLAS_STATUS_SUCCESS) \
      return ::sparsed::cuda::CublasStatus(#expr, _s);                 \
  } while (0)
