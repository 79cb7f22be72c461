#include "cli/engine_flags.h"

#include <string>

#include "absl/flags/flag.h"
#include "engine/model/weight_format.h"

ABSL_FLAG(std::string, model, "",
          "Model directory: config.json, *.safetensors, tokenizer.model (the daemon's default: "
          "models/sparsed-tiny; the tools require it). Or a llama-architecture GGUF file "
          "(F32/F16/BF16/Q8_0/Q4_0 tensors) with tokenizer.model beside it.");
ABSL_FLAG(std::string, device, "auto",
          "auto | cpu | cuda: where the model runs (auto: CUDA when a GPU answers, else the CPU).");
ABSL_FLAG(int, threads, 0,
          "CPU threads for the engine (0 = the CPUs this process may use: its affinity, capped by "
          "its cgroup CPU quota) [0, 1024].");
ABSL_FLAG(std::string, weights, "checkpoint",
          "checkpoint | bf16 | q8_0 | q4_0: the type the linear layers' weights run in. checkpoint "
          "keeps the files' own; the others convert at load (round to nearest): q8_0 is 8-bit "
          "codes with an fp16 scale per 32 weights (34 bytes per 32: 0.53x bf16's memory and "
          "bytes read), q4_0 4-bit codes (18 bytes per 32: 0.28x). The embedding table stays as "
          "stored. Block types run on the CPU (--device=cpu); sparsity stays exact relative to "
          "the quantized model.");

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
  auto weights = ParseWeightFormat(absl::GetFlag(FLAGS_weights));
  if (!weights.ok()) return weights.status();
  options.weights = *weights;
  return device;
}

}  // namespace sparsed
