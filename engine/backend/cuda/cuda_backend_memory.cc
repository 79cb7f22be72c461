// CudaBackend's memory: growable device and pinned scratch, host → device staging, and the
// device copies of weights and vectors (uploaded once, kept until ForgetHostData).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/backend/cuda/cuda_backend.h"
#include "engine/backend/cuda/cuda_backend_internal.h"
#include "engine/common/dtype.h"

namespace sparsed {
namespace {

using cuda::detail::AsBf16;
using cuda::detail::Err;
using cuda::detail::kOpCopy;
using cuda::detail::W;

}  // namespace

namespace cuda::detail {

const uint16_t* AsBf16(const Matrix& m, std::vector<uint16_t>* storage) {
  if (m.dtype == DType::kBF16) return static_cast<const uint16_t*>(m.data);
  const size_t n = static_cast<size_t>(m.rows * m.cols);
  storage->resize(n);
  for (size_t i = 0; i < n; ++i) {
    const float f = m.dtype == DType::kF32 ? static_cast<const float*>(m.data)[i]
                                           : F16ToF32(static_cast<const uint16_t*>(m.data)[i]);
    (*storage)[i] = F32ToBf16(f);
  }
  return storage->data();
}

}  // namespace cuda::detail

void* CudaBackend::Grow(Scratch& s, size_t bytes, bool pinned_host) {
  if (bytes <= s.bytes) return s.p;
  // Deferred work and cached graphs may point at the old buffer: launch the one, drop the other.
  Flush();
  graphs_->Drop();
  // Grows geometrically so a slowly rising batch size does not reallocate every step. cudaFree
  // and cudaFreeHost wait for the device, so work still reading the old buffer finishes first.
  const size_t want = std::max<size_t>(bytes, 2 * s.bytes);
  pinned_host ? cudaFreeHost(s.p) : cudaFree(s.p);
  s.p = nullptr;
  s.bytes = 0;
  const cudaError_t e = pinned_host ? cudaMallocHost(&s.p, want) : cudaMalloc(&s.p, want);
  if (e != cudaSuccess) {
    Failed(Err(absl::StrCat("cannot allocate ", want, " bytes of ",
                            pinned_host ? "pinned host memory" : "device scratch"),
               e));
    s.p = nullptr;
    return nullptr;
  }
  s.bytes = want;
  return s.p;
}

void* CudaBackend::GrowPinned(Staging& s, size_t bytes) {
  if (s.pending) {
    // A copy from this buffer may not have run yet: launch what is deferred and wait before
    // overwriting it (only when one buffer is used twice in a step, which the engine's steps do
    // not do).
    Flush();
    cudaStreamSynchronize(static_cast<cudaStream_t>(stream_));
    s.pending = false;
  }
  return Grow(s.buffer, std::max<size_t>(bytes, 4096), /*pinned_host=*/true);
}

bool CudaBackend::Upload(Staging& s, void* dst, std::initializer_list<Piece> pieces, size_t bytes,
                         const char* what) {
  size_t total = 0;
  for (const Piece& p : pieces) total += p.bytes;
  bytes = std::max(bytes, total);
  auto* host = static_cast<char*>(GrowPinned(s, bytes));
  if (host == nullptr) return false;
  size_t off = 0;
  for (const Piece& p : pieces) {
    std::memcpy(host + off, p.src, p.bytes);
    off += p.bytes;
  }
  s.pending = true;
  void* stream = stream_;
  Enqueue({kOpCopy, W(dst), W(host), W(bytes)}, [=] {
    return Err(what, cudaMemcpyAsync(dst, host, bytes, cudaMemcpyHostToDevice,
                                     static_cast<cudaStream_t>(stream)));
  });
  return error_.ok();
}

absl::StatusOr<DeviceBuffer> CudaBackend::Alloc(size_t floats) {
  void* p = nullptr;
  const size_t bytes = std::max<size_t>(floats, 1) * sizeof(float);
  if (const cudaError_t e = cudaMalloc(&p, bytes); e != cudaSuccess) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "cannot allocate ", bytes, " bytes of device memory: ", cudaGetErrorString(e)));
  }
  cudaMemset(p, 0, bytes);
  return DeviceBuffer(static_cast<float*>(p), [](float* f) { cudaFree(f); });
}

void CudaBackend::CopyToHost(const float* src, size_t n, float* dst) {
  Undefer();
  if (!error_.ok()) {
    std::fill(dst, dst + n, 0.f);
    return;
  }
  // The legacy default stream's copy waits for the blocking stream the operations run on.
  if (const cudaError_t e = cudaMemcpy(dst, src, n * sizeof(float), cudaMemcpyDeviceToHost);
      e != cudaSuccess) {
    Failed(Err("copying results to the host", e));
  }
}

void CudaBackend::CopyFromHost(const float* src, size_t n, float* dst) {
  Undefer();
  if (!error_.ok()) return;
  if (const cudaError_t e = cudaMemcpy(dst, src, n * sizeof(float), cudaMemcpyHostToDevice);
      e != cudaSuccess) {
    Failed(Err("copying inputs to the device", e));
  }
}

const uint16_t* CudaBackend::DeviceWeights(const Matrix& m) {
  auto it = weights_.find(m.data);
  if (it != weights_.end()) return static_cast<const uint16_t*>(it->second);
  std::vector<uint16_t> storage;
  const uint16_t* src = AsBf16(m, &storage);
  void* dev = nullptr;
  const size_t bytes = static_cast<size_t>(m.rows * m.cols) * 2;
  if (const cudaError_t e = cudaMalloc(&dev, bytes); e != cudaSuccess) {
    Failed(Err(absl::StrCat("cannot allocate ", bytes, " bytes for a ", m.rows, "×", m.cols,
                            " weight matrix"),
               e));
    return nullptr;
  }
  if (const cudaError_t e = cudaMemcpy(dev, src, bytes, cudaMemcpyHostToDevice); e != cudaSuccess) {
    cudaFree(dev);
    Failed(Err("uploading weights", e));
    return nullptr;
  }
  weights_[m.data] = dev;
  return static_cast<const uint16_t*>(dev);
}

const float* CudaBackend::DeviceVector(const float* host, size_t n) {
  auto it = vectors_.find(host);
  if (it != vectors_.end() && it->second.n == n)
    return static_cast<const float*>(it->second.device);
  ForgetHostData(host);
  void* dev = nullptr;
  if (const cudaError_t e = cudaMalloc(&dev, std::max<size_t>(n, 1) * sizeof(float));
      e != cudaSuccess) {
    Failed(Err("allocating a weight vector", e));
    return nullptr;
  }
  if (const cudaError_t e = cudaMemcpy(dev, host, n * sizeof(float), cudaMemcpyHostToDevice);
      e != cudaSuccess) {
    cudaFree(dev);
    Failed(Err("uploading a weight vector", e));
    return nullptr;
  }
  vectors_[host] = {dev, n};
  return static_cast<const float*>(dev);
}

void CudaBackend::ForgetHostData(const float* host) {
  auto it = vectors_.find(host);
  if (it == vectors_.end()) return;
  Flush();
  graphs_->Drop();
  cudaFree(it->second.device);  // waits for work still reading it
  vectors_.erase(it);
}

absl::Status CudaBackend::PrepareWeights(const std::vector<const Matrix*>& matrices) {
  for (const Matrix* m : matrices) {
    if (IsBlockQuantized(m->dtype)) {
      return absl::UnimplementedError(absl::StrCat(
          "the CUDA backend runs bf16, fp16 and fp32 weights; ", DTypeName(m->dtype),
          " weights run on the CPU backend (--device=cpu), or load the checkpoint's own type "
          "(--weights=checkpoint)"));
    }
    if (m->cols % 8 != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("the CUDA backend needs weight rows of a multiple of 8 elements; a ",
                       m->rows, "×", m->cols, " matrix has ", m->cols));
    }
    DeviceWeights(*m);
    if (!error_.ok()) return std::exchange(error_, absl::OkStatus());
  }
  return absl::OkStatus();
}

}  // namespace sparsed
