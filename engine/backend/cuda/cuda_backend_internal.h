// Pieces the CUDA backend's files share (cuda_backend.cc, cuda_backend_memory.cc,
// cuda_step_graphs.cc): operation signature words and CUDA errors as statuses. Internal to the
// backend.
#pragma once

#include <cuda_runtime.h>

#include <bit>
#include <cstdint>
#include <vector>

#include "engine/backend/cuda/cuda_status.h"
#include "engine/common/matrix.h"

namespace sparsed::cuda::detail {

// Signature words of operation arguments.
inline uint64_t W(const void* p) { return reinterpret_cast<uintptr_t>(p); }
inline uint64_t W(float f) { return std::bit_cast<uint32_t>(f); }
inline uint64_t W(double f) { return std::bit_cast<uint64_t>(f); }
inline uint64_t W(int64_t v) { return static_cast<uint64_t>(v); }
inline uint64_t W(int v) { return static_cast<uint64_t>(static_cast<int64_t>(v)); }
inline uint64_t W(size_t v) { return v; }
inline uint64_t W(bool v) { return v; }

// Operation kinds, the first word of every signature.
enum OpKind : uint64_t {
  kOpCopy = 1,
  kOpEmbed,
  kOpRmsNorm,
  kOpMatMul,
  kOpMatMul3,
  kOpAddScaled,
  kOpRope,
  kOpAttention,
  kOpFfn,
};

// OK for success, else "what: reason" (RESOURCE_EXHAUSTED for a failed allocation, else
// INTERNAL).
inline absl::Status Err(absl::string_view what, cudaError_t e) { return CudaStatus(what, e); }

// The matrix as bf16 bits: a view when it already is bf16, else converted into *storage
// (cuda_backend_memory.cc).
const uint16_t* AsBf16(const Matrix& m, std::vector<uint16_t>* storage);

}  // namespace sparsed::cuda::detail
