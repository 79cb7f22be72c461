// Device utilities of the CUDA library: whether a device is usable, plain memory helpers for
// tests and benchmarks, fp32 → bf16 conversion, and timing with CUDA events. Failures are
// absl::Status values naming the call and CUDA's reason (cuda_status.h).
#pragma once

#include <cstddef>
#include <functional>
#include <string>

#include "absl/status/status.h"

namespace sparsed::cuda {

// OK when a usable CUDA device is present (its name in *device_name), else FAILED_PRECONDITION
// saying why not (driver missing, no device, ...).
absl::Status ProbeDevice(std::string* device_name = nullptr);

// Small device-memory helpers for tests and benchmarks.
absl::Status DeviceAlloc(size_t bytes, void** ptr);
void DeviceFree(void* ptr);
absl::Status CopyToDevice(void* dst, const void* src, size_t bytes);
absl::Status CopyToHost(void* dst, const void* src, size_t bytes);
absl::Status Synchronize();
// fp32 → bf16 (device to device), n elements, on `stream` (a cudaStream_t; null: legacy).
absl::Status ConvertToBf16(const float* src, void* dst, size_t n, void* stream);

// Device-to-device copy bandwidth in GB/s (bytes read + written), median of a few copies.
double MeasureCopyBandwidthGBs(size_t bytes);

// Times `fn` with CUDA events: median milliseconds over `reps` runs after `warmup` runs.
double TimeMs(const std::function<void()>& fn, int warmup, int reps);

}  // namespace sparsed::cuda
