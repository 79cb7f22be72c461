// Picks the compute device at start-up. The CUDA backend is a separate shared library
// (libsparsed_cuda.so) loaded with dlopen, so the daemon never links CUDA itself and the same
// binary serves on CPU-only hosts (and cuBLAS's large static thread-local storage never reaches
// the threads of the metrics server, which it would keep from starting).
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "engine/backend/backend.h"

namespace sparsed {

struct DeviceChoice {
  std::string device;  // "cpu" | "cuda"
  std::string reason;  // why, for the start-up log line
};

// flag: "auto" | "cpu" | "cuda". "auto" picks CUDA when a device answers and falls back to the
// CPU with the reason; "cuda" fails with FAILED_PRECONDITION when no usable device or CUDA library
// is present; anything else is INVALID_ARGUMENT.
absl::StatusOr<DeviceChoice> ResolveDevice(const std::string& flag);

// The backend of a resolved device ("cpu" or "cuda"). The CUDA library stays loaded for the
// life of the process once a CUDA backend was made.
absl::StatusOr<std::unique_ptr<Backend>> MakeBackend(const std::string& device,
                                                     const BackendOptions& options);

}  // namespace sparsed
