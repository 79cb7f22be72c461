// Picks the compute device at start-up. The CUDA backend is a separate shared library
// (libsparsed_cuda.so) loaded with dlopen, so the daemon never links CUDA itself and the same
// binary serves on CPU-only hosts (ENVIRONMENT.md, trap 2).
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace sparsed {

struct DeviceChoice {
  std::string device;  // "cpu" (the only forward pass built so far)
  std::string reason;  // why, for the start-up log line
};

// flag: "auto" | "cpu" | "cuda". "auto" falls back to the CPU with the reason; "cuda" fails with
// FAILED_PRECONDITION when no usable device or CUDA library is present, UNIMPLEMENTED while the
// CUDA forward pass is not built; anything else is INVALID_ARGUMENT.
absl::StatusOr<DeviceChoice> ResolveDevice(const std::string& flag);

}  // namespace sparsed
