#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "engine/backend/cuda/cuda_device.h"
#include "engine/backend/cuda/cuda_status.h"

namespace sparsed::cuda {
namespace {

__global__ void ToBf16Kernel(const float* src, __nv_bfloat16* dst, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) dst[i] = __float2bfloat16(src[i]);
}

}  // namespace

absl::Status ProbeDevice(std::string* device_name) {
  int n = 0;
  if (const cudaError_t e = cudaGetDeviceCount(&n); e != cudaSuccess) {
    cudaGetLastError();
    return absl::FailedPreconditionError(absl::StrCat("no CUDA device: ", cudaGetErrorString(e)));
  }
  if (n == 0) return absl::FailedPreconditionError("no CUDA device");
  cudaDeviceProp p{};
  if (const cudaError_t e = cudaGetDeviceProperties(&p, 0); e != cudaSuccess) {
    cudaGetLastError();
    return absl::FailedPreconditionError(
        absl::StrCat("cudaGetDeviceProperties(&p, 0): ", cudaGetErrorString(e)));
  }
  if (device_name) *device_name = p.name;
  return absl::OkStatus();
}

absl::Status DeviceAlloc(size_t bytes, void** ptr) {
  SPARSED_CUDA_TRY(cudaMalloc(ptr, bytes));
  return absl::OkStatus();
}
void DeviceFree(void* ptr) {
  if (ptr) cudaFree(ptr);
}
absl::Status CopyToDevice(void* dst, const void* src, size_t bytes) {
  SPARSED_CUDA_TRY(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
  return absl::OkStatus();
}
absl::Status CopyToHost(void* dst, const void* src, size_t bytes) {
  SPARSED_CUDA_TRY(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
  return absl::OkStatus();
}
absl::Status Synchronize() {
  SPARSED_CUDA_TRY(cudaDeviceSynchronize());
  SPARSED_CUDA_TRY(cudaGetLastError());
  return absl::OkStatus();
}
absl::Status ConvertToBf16(const float* src, void* dst, size_t n, void* stream) {
  if (n == 0) return absl::OkStatus();
  ToBf16Kernel<<<static_cast<unsigned>((n + 255) / 256), 256, 0,
                 static_cast<cudaStream_t>(stream)>>>(src, static_cast<__nv_bfloat16*>(dst),
                                                      static_cast<int64_t>(n));
  SPARSED_CUDA_TRY(cudaGetLastError());
  return absl::OkStatus();
}

double MeasureCopyBandwidthGBs(size_t bytes) {
  void *a = nullptr, *b = nullptr;
  if (cudaMalloc(&a, bytes) != cudaSuccess || cudaMalloc(&b, bytes) != cudaSuccess) {
    cudaFree(a);
    return 0;
  }
  cudaMemset(a, 1, bytes);
  const double ms = TimeMs([&] { cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice); }, 2, 7);
  cudaFree(a);
  cudaFree(b);
  return 2.0 * bytes / (ms * 1e-3) / 1e9;
}

double TimeMs(const std::function<void()>& fn, int warmup, int reps) {
  for (int i = 0; i < warmup; ++i) fn();
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  std::vector<float> ms;
  for (int i = 0; i < reps; ++i) {
    cudaEventRecord(a);
    fn();
    cudaEventRecord(b);
    cudaEventSynchronize(b);
    float t = 0;
    cudaEventElapsedTime(&t, a, b);
    ms.push_back(t);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

}  // namespace sparsed::cuda
