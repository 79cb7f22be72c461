// Device utilities of the CUDA library: whether a device is usable, plain memory helpers for
// tests and benchmarks, fp32 → bf16 conversion, and timing with CUDA events. Errors are strings,
// "" for success (the library builds without Abseil on a GPU host: tests/gpu/CMakeLists.txt).
#pragma once

#include <cstddef>
#include <functional>
#include <string>

namespace sparsed::cuda {

// "" when a usable CUDA device is present, else why not (driver missing, no device, ...).
std::string ProbeDevice(std::string* device_name = nullptr);

// Small device-memory helpers for tests and benchmarks.
std::string DeviceAlloc(size_t bytes, void** ptr);
void DeviceFree(void* ptr);
std::string CopyToDevice(void* dst, const void* src, size_t bytes);
std::string CopyToHost(void* dst, const void* src, size_t bytes);
std::string Synchronize();
// fp32 → bf16 (device to device), n elements, on `stream` (a cudaStream_t; null: legacy).
std::string ConvertToBf16(const float* src, void* dst, size_t n, void* stream);

// Device-to-device copy bandwidth in GB/s (bytes read + written), median of a few copies.
double MeasureCopyBandwidthGBs(size_t bytes);

// Times `fn` with CUDA events: median milliseconds over `reps` runs after `warmup` runs.
double TimeMs(const std::function<void()>& fn, int warmup, int reps);

}  // namespace sparsed::cuda
