// The engine: a loaded model, its backend and paged KV cache, and the batched step.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/backend/backend.h"
#include "engine/model/checkpoint.h"
#include "engine/model/weights.h"
#include "engine/model_info.h"
#include "engine/sparse/sparsity_profile.h"
#include "engine/tokenizer/tokenizer.h"

namespace sparsed {

struct EngineOptions {
  std::string model_dir;
  // Empty: exact for ReLU-family activations, off otherwise.
  std::string sparsity_mode;
  // Threshold mode's calibrated thresholds; empty: MODEL_DIR/sparsity.json.
  std::string sparsity_file;
  int kv_block_size = 16;
  int kv_blocks = 0;  // 0: derived from kv_cache_bytes
  int64_t kv_cache_bytes = 256ll << 20;
  // >0 on a device backend: the KV cache takes this fraction of the memory free after the
  // weights are placed (kv_cache_bytes is then ignored).
  double kv_cache_fraction = 0;
  // "fp32" | "bf16": the cached K and V's element type. bf16 holds twice the tokens in the same
  // memory; K and V are rounded to bf16 when written (attention arithmetic stays fp32), so
  // logits move by about bf16's rounding.
  std::string kv_cache_dtype = "fp32";
  // The linear layers' weight type (weight_format.h): nullopt runs the checkpoint's own; bf16,
  // q8_0 or q4_0 converts at load (block types on the CPU backend only).
  std::optional<DType> weights;
  bool load_tokenizer = true;  // false: no tokenizer.model needed (kernel benchmarks)
  std::string device = "cpu";  // "cpu" | "cuda" (resolve "auto" with ResolveDevice first)
  BackendOptions backend;
  ProgressFn progress;  // model-load progress
};

// One sequence's slice of a batch. Its tokens are contiguous in Batch::token_ids and take the
// positions start_position, start_position + 1, ...
struct BatchSequence {
  std::vector<int32_t> block_table;  // KV block ids covering positions [0, start + num_tokens)
  int32_t start_position = 0;
  int32_t num_tokens = 0;
  bool need_logits = false;  // logits of the slice's last token
  bool all_logits = false;   // logits of every token of the slice (perplexity); overrides the above
};

struct Batch {
  std::vector<int32_t> token_ids;
  std::vector<BatchSequence> sequences;
};

struct StepOutput {
  // One row of vocab_size logits per sequence with need_logits (num_tokens rows, in token order,
  // with all_logits), in batch order.
  std::vector<float> logits;
  std::vector<int> logit_sequences;   // index into Batch::sequences of each logits row
  std::vector<FfnStats> layer_stats;  // one per layer
};

// Called during Step() with each layer's FFN input (after its RMSNorm), x [tokens × hidden] in
// host memory, before the FFN runs. For calibration and profiling tools.
using FfnInputObserver = std::function<void(int layer, const float* x, int tokens)>;

// Thread-safety: Step(), SetSparsityMode(), SetThresholds(), DownNorms() and set_ffn_observer()
// must be called from one thread at a time (the engine-loop thread). What Load() fixes —
// config(), tokenizer(), fingerprint(), sparsity_profile(), weights(), kv_blocks(),
// kv_block_size(), context_tokens() — may be read from any thread at any time (the server's
// gRPC threads do); so may sparsity_mode() while nothing calls SetSparsityMode() (the daemon
// never does; the calibration tools are single-threaded).
class Engine {
 public:
  static absl::StatusOr<std::unique_ptr<Engine>> Load(const EngineOptions& options);

  // Runs one forward step over the batch. Writes the batch's K/V into the cache blocks named
  // by the block tables. INVALID_ARGUMENT (naming the sequence and field) for ids outside the
  // vocabulary, block ids outside the cache, tables too short for the positions.
  absl::StatusOr<StepOutput> Step(const Batch& batch);

  const ModelConfig& config() const { return checkpoint_->config(); }
  const Tokenizer* tokenizer() const { return tokenizer_.get(); }
  // The model as the layers above see it from any thread (model_info.h).
  ModelInfo Info() const {
    return ModelInfo{
        config(),
        fingerprint(),
        sparsity_mode(),
        weights().layers.empty() ? weights().embed.dtype : weights().layers[0].up.dtype,
        static_cast<int64_t>(kv_blocks()) * kv_block_size(),
        kv_block_size(),
        context_tokens(),
        tokenizer(),
        checkpoint_->dir()};
  }
  SparsityMode sparsity_mode() const { return mode_; }
  // Switching to threshold mode needs thresholds (loaded from sparsity.json or SetThresholds).
  absl::Status SetSparsityMode(SparsityMode m);
  // Threshold mode: neuron i of layer l is active when |x1_i| ≥ epsilons[l] / ‖W_down[:, i]‖.
  absl::Status SetThresholds(const std::vector<double>& epsilons);
  // The profile loaded from sparsity.json (threshold mode), if any.
  const std::optional<SparsityProfile>& sparsity_profile() const { return profile_; }
  // ModelFingerprint() of the loaded checkpoint.
  const std::string& fingerprint() const { return fingerprint_; }
  // Layer `layer`'s FFN weights and activation (no thresholds attached).
  FfnLayer FfnOf(int layer) const;
  // ‖W_down[:, i]‖ per layer (computed on first use).
  const std::vector<float>& DownNorms(int layer);
  // The observer gets host memory (copied from the device on CUDA); null to remove.
  void set_ffn_observer(FfnInputObserver observer) { ffn_observer_ = std::move(observer); }
  int kv_blocks() const { return kv_shape_.blocks; }
  int kv_block_size() const { return kv_shape_.block_size; }
  // Tokens one sequence may hold (prompt and output): the model's context, or the whole KV cache
  // if that is smaller.
  int64_t context_tokens() const {
    return std::min<int64_t>(config().max_position_embeddings,
                             static_cast<int64_t>(kv_blocks()) * kv_block_size());
  }
  Backend& backend() { return *backend_; }
  const ModelWeights& weights() const { return weights_; }
  // Bytes of weights a decode step reads per token: everything but the FFN up/down, plus
  // up/down scaled by `ffn_active_fraction` (1 = dense).
  double WeightBytesPerStep(double ffn_active_fraction) const;

 private:
  Engine() = default;
  absl::Status Validate(const Batch& batch) const;
  absl::Status EnsureWorkspace(int tokens);
  absl::Status LoadSparsityFile(const EngineOptions& options);

  std::unique_ptr<Checkpoint> checkpoint_;
  ModelWeights weights_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<Backend> backend_;
  SparsityMode mode_ = SparsityMode::kOff;
  KvCacheShape kv_shape_;
  std::vector<float> inv_freq_;  // [head_dim / 2]
  std::string fingerprint_;
  std::optional<SparsityProfile> profile_;
  std::vector<std::vector<float>> down_norms_;         // per layer, lazily
  std::vector<std::vector<float>> neuron_thresholds_;  // per layer; empty until set
  FfnInputObserver ffn_observer_;
  int workspace_tokens_ = 0;
  DeviceBuffer hidden_, normed_, q_, k_, v_, attn_, proj_, logits_in_, logits_;
};

}  // namespace sparsed
