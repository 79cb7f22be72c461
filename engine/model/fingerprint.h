// A model's fingerprint: ties files made for one model (sparsity.json) to that model.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "engine/model/checkpoint.h"

namespace sparsed {

// "fnv1a64:" and 16 hex digits of a 64-bit FNV-1a hash over config.json's bytes and, for every
// tensor in name order, its name, dtype, shape and the first and last 4 KiB of its data. Cheap
// at load for any model size; any retraining, fine-tune or re-quantisation changes it, a copy of
// the directory does not. Not a cryptographic hash: it guards against mistakes, not attacks.
absl::StatusOr<std::string> ModelFingerprint(const Checkpoint& checkpoint);

}  // namespace sparsed
