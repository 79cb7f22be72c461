#include "cli/engine_flags.h"

#include <string>

#include "absl/flags/flag.h"

ABSL_FLAG(std::string, model, "",
          "Model directory: config.json, *.safetensors, tokenizer.model (the daemon's default: "
          "models/sparsed-tiny; the tools require it).");
ABSL_FLAG(std::string, device, "auto",
          "auto | cpu | cuda: where the model runs (auto: CUDA when a GPU answers, else the CPU).");
ABSL_FLAG(int, threads, 0,
          "CPU threads for the engine (0 = the CPUs this process may use: its affinity, capped by "
          "its cgroup CPU quota) [0, 1024].");

namespace sparsed {

absl::StatusOr<DeviceChoice> ApplyEngineFlags(EngineOptions& options,
                                              std::string_view default_model) {
  std::string model = absl::GetFlag(FLAGS_model);
  if (model.empty()) model = std::string(default_model);
  if (model.empty()) return absl::InvalidArgumentError("--model is required");
  auto device = ResolveDevice(absl::GetFlag(FLAGS_device));
  if (!device.ok()) return device.status();
  options.model_dir = model;
  options.device = device->device;
  options.backend.threads = absl::GetFlag(FLAGS_threads);
  return device;
}

}  // namespace sparsed
