// The tools' --device flag: resolves "auto" | "cpu" | "cuda" into the engine options as the daemon
// does (auto: CUDA when a GPU answers, else the CPU).
#pragma once

#include <string>

#include "absl/status/status.h"
#include "engine/backend/device.h"
#include "engine/engine.h"

namespace sparsed {

inline absl::Status SetDevice(const std::string& flag, EngineOptions* options) {
  auto device = ResolveDevice(flag);
  if (!device.ok()) return device.status();
  options->device = device->device;
  return absl::OkStatus();
}

}  // namespace sparsed
