// Early returns of a CUDA or cuBLAS call's error as this library's error string ("" means
// success): the expression's text, then the reason. For the library's .cu files only.
#pragma once

#include <string>

#define SPARSED_CUDA_TRY(expr)                                                        \
  do {                                                                                \
    cudaError_t _e = (expr);                                                          \
    if (_e != cudaSuccess) return std::string(#expr) + ": " + cudaGetErrorString(_e); \
  } while (0)

#define SPARSED_CUBLAS_TRY(expr)                                                \
  do {                                                                          \
    cublasStatus_t _s = (expr);                                                 \
    if (_s != CUBLAS_STATUS_SUCCESS)                                            \
      return std::string(#expr) + ": cuBLAS status " + std::to_string(int(_s)); \
  } while (0)
