// What the layers above the engine may know of a loaded model outside its thread: a value fixed
// when the model loads (Engine::Info()), so any thread may read it at any time without touching
// the engine, its weights or its KV cache (which the engine loop's thread owns).
#pragma once

#include <cstdint>
#include <string>

#include "engine/backend/ffn_types.h"
#include "engine/common/dtype.h"
#include "engine/model/config.h"
#include "engine/tokenizer/tokenizer.h"

namespace sparsed {

struct ModelInfo {
  ModelConfig config;
  std::string fingerprint;
  SparsityMode sparsity_mode = SparsityMode::kOff;
  DType weight_dtype = DType::kF32;  // of the linear layers as loaded (--weights)
  int64_t kv_cache_tokens = 0;       // KV blocks × tokens per block
  int64_t kv_block_tokens = 0;       // tokens per KV block
  int64_t context_tokens = 0;        // longest sequence (prompt + generated) the engine takes
  // Thread-safe (tokenizer.h); null when the model has none. Owned by the engine: valid while the
  // engine (for the server: its EngineLoop) lives.
  const Tokenizer* tokenizer = nullptr;
  // The folder of the model's files (config.json, tokenizer files, sparsity.json; a GGUF file's
  // folder).
  std::string dir;
};

}  // namespace sparsed
