// Writes safetensors files (used by the model maker, tests and benchmarks).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "engine/common/dtype.h"

namespace sparsed {

struct TensorToWrite {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;  // numel × element size, little-endian
};

// Converts fp32 values to `dtype` bytes.
std::vector<uint8_t> EncodeTensor(const std::vector<float>& values, DType dtype);

// Writes tensors (sorted by name, each aligned to 8 bytes) to `path`, with optional metadata.
absl::Status WriteSafetensors(
    const std::string& path, const std::vector<TensorToWrite>& tensors,
    const std::vector<std::pair<std::string, std::string>>& metadata = {});

}  // namespace sparsed
