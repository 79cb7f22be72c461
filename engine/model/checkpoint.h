// A Hugging Face checkpoint directory: config.json, model.safetensors or shards listed in
// model.safetensors.index.json, tokenizer.model.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model/config.h"
#include "engine/model/safetensors.h"

namespace sparsed {

// Thread-safety: immutable after Open().
class Checkpoint {
 public:
  static absl::StatusOr<std::unique_ptr<Checkpoint>> Open(const std::string& dir);

  const ModelConfig& config() const { return config_; }
  const std::string& dir() const { return dir_; }
  // Looks a tensor up across shards; errors name the file (or index) and the tensor.
  absl::StatusOr<TensorView> Get(const std::string& name) const;
  // Like Get(), and checks the shape; the error names file, tensor, expected and actual shape.
  absl::StatusOr<TensorView> GetShaped(const std::string& name, std::vector<int64_t> shape) const;
  bool Has(const std::string& name) const { return where_.count(name) != 0; }
  // Every tensor name across the shards, sorted.
  std::vector<std::string> TensorNames() const;
  std::string FileOf(const std::string& name) const;
  // Total bytes of all safetensors files.
  uint64_t total_bytes() const { return total_bytes_; }

 private:
  std::string dir_;
  ModelConfig config_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const SafetensorsFile*> where_;
  uint64_t total_bytes_ = 0;
};

}  // namespace sparsed
