// The flags of every binary that loads a model, declared once with one help text:
//   --model, --device, --threads, --weights   (cli/engine_flags.cc)
//   --sparsity                     (cli/sparsity_flag.cc)
// A binary has a flag exactly when it calls the function below that reads it: each function lives
// in the file that defines its flags, and the linker takes a file only when it is called.
#pragma once

#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/backend/device.h"
#include "engine/engine.h"

namespace sparsed {

// Reads --model, --device, --threads and --weights into `options` (model_dir, device,
// backend.threads, weights) and returns the resolved device, whose reason is for a start-up log
// line. An empty --model takes `default_model`. Errors: INVALID_ARGUMENT for no model (empty
// --model and no default), an unknown --weights or an unknown --device (--threads outside its range
// never gets past ParseFlags: cli/help_flags.h); FAILED_PRECONDITION for --device cuda without a
// usable GPU. "auto" loads the CUDA module to ask for a device: call it after blocking signals in a
// program that takes them on a dedicated thread.
absl::StatusOr<DeviceChoice> ApplyEngineFlags(EngineOptions& options,
                                              std::string_view default_model = {});

// Reads --sparsity into options.sparsity_mode. INVALID_ARGUMENT for a mode ParseSparsityMode
// rejects; empty (the flag's default) stays empty: the engine's default for the model.
absl::Status ApplySparsityFlag(EngineOptions& options);

}  // namespace sparsed
