// A Hugging Face checkpoint directory: config.json, model.safetensors or shards listed in
// model.safetensors.index.json, tokenizer.model. Or a GGUF file of the llama architecture
// (checkpoint_gguf.cc): a path to a .gguf file, or a directory holding one .gguf and no
// config.json; its tensors answer to the Hugging Face names, its metadata gives the config, and
// the tokenizer is the directory's tokenizer.model.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model/config.h"
#include "engine/model/gguf.h"
#include "engine/model/safetensors.h"

namespace sparsed {

// Thread-safety: immutable after Open().
class Checkpoint {
 public:
  static absl::StatusOr<std::unique_ptr<Checkpoint>> Open(const std::string& dir);

  const ModelConfig& config() const { return config_; }
  const std::string& dir() const { return dir_; }
  // GGUF: q and k rows are in GGUF's rotary order (each head's rotated pairs interleaved, as
  // llama.cpp's converter permutes them); LoadModelWeights restores the rotate-half order.
  bool rotary_pairs_interleaved() const { return gguf_ != nullptr; }
  // What the model's identity is hashed from (fingerprint.h): config.json's text, or the GGUF
  // file's header bytes.
  const std::string& config_text() const { return config_text_; }
  // Looks a tensor up across shards; errors name the file (or index) and the tensor.
  absl::StatusOr<TensorView> Get(const std::string& name) const;
  // Like Get(), and checks the shape; the error names file, tensor, expected and actual shape.
  absl::StatusOr<TensorView> GetShaped(const std::string& name, std::vector<int64_t> shape) const;
  bool Has(const std::string& name) const {
    return where_.count(name) != 0 || gguf_names_.count(name) != 0;
  }
  // Every tensor name across the shards, sorted.
  std::vector<std::string> TensorNames() const;
  std::string FileOf(const std::string& name) const;
  // Total bytes of all safetensors files.
  uint64_t total_bytes() const { return total_bytes_; }

 private:
  // Fills a checkpoint from the GGUF file at `path` (checkpoint_gguf.cc).
  absl::Status OpenGguf(const std::string& path);

  std::string dir_;
  std::string config_text_;
  ModelConfig config_;
  std::unique_ptr<GgufFile> gguf_;
  std::map<std::string, std::string> gguf_names_;  // Hugging Face name → GGUF tensor name
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const SafetensorsFile*> where_;
  uint64_t total_bytes_ = 0;
};

}  // namespace sparsed
