#include "engine/engine.h"

#include <cmath>
#include <filesystem>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "engine/backend/device.h"
#include "engine/common/cpu_quota.h"
#include "engine/common/status_macros.h"
#include "engine/model/fingerprint.h"
#include "engine/model/weight_format.h"
#include "engine/sparse/cett.h"

namespace sparsed {

absl::StatusOr<std::unique_ptr<Engine>> Engine::Load(const EngineOptions& options) {
  if (options.kv_cache_fraction < 0 || options.kv_cache_fraction >= 1) {
    return absl::InvalidArgumentError("kv_cache_fraction must be in [0, 1)");
  }
  const std::optional<DType> kv_dtype = ParseDTypeName(options.kv_cache_dtype);
  if (kv_dtype != DType::kF32 && kv_dtype != DType::kBF16) {
    return absl::InvalidArgumentError(
        absl::StrCat("kv_cache_dtype must be fp32 or bf16, not '", options.kv_cache_dtype, "'"));
  }
  auto e = std::unique_ptr<Engine>(new Engine());
  ASSIGN_OR_RETURN(e->checkpoint_, Checkpoint::Open(options.model_dir));
  const ModelConfig& c = e->checkpoint_->config();
  // --weights: each layer is converted as soon as it is read, so the resident set holds one
  // layer of the checkpoint's type at a time, never the whole model.
  std::unique_ptr<ThreadPool> convert_pool;
  LayerHook convert_layer;
  // Block-quantized dense products (converted, or as a GGUF file stores them) go to row panels.
  if (options.weights) {
    convert_pool = std::make_unique<ThreadPool>(
        options.backend.threads > 0 ? options.backend.threads : UsableCpus());
  }
  convert_layer = [&](int i, LayerWeights* l) -> absl::Status {
    if (options.weights) {
      RETURN_IF_ERROR(ConvertLayerWeights(*options.weights, i, /*release_mapped_pages=*/true,
                                          *convert_pool, l));
    }
    return PanelLayerWeights(/*release_mapped_pages=*/true, l);
  };
  ASSIGN_OR_RETURN(e->weights_, LoadModelWeights(*e->checkpoint_, options.progress, convert_layer));
  if (options.weights) {
    RETURN_IF_ERROR(ConvertLmHead(*options.weights, /*release_mapped_pages=*/true, *convert_pool,
                                  &e->weights_));
  }
  RETURN_IF_ERROR(PanelLmHead(/*release_mapped_pages=*/true, &e->weights_));
  if (options.load_tokenizer) {
    const std::string tok =
        (std::filesystem::path(e->checkpoint_->dir()) / "tokenizer.model").string();
    ASSIGN_OR_RETURN(e->tokenizer_, Tokenizer::Load(tok));
  }
  if (options.sparsity_mode.empty()) {
    e->mode_ = IsReluFamily(c.activation) ? SparsityMode::kExact : SparsityMode::kOff;
  } else {
    ASSIGN_OR_RETURN(e->mode_, ParseSparsityMode(options.sparsity_mode));
  }
  ASSIGN_OR_RETURN(e->fingerprint_, ModelFingerprint(*e->checkpoint_));
  ASSIGN_OR_RETURN(e->backend_, MakeBackend(options.device, options.backend));
  std::vector<const Matrix*> mats = {&e->weights_.embed, &e->weights_.lm_head};
  for (const LayerWeights& l : e->weights_.layers) {
    for (const Matrix* m : {&l.q, &l.k, &l.v, &l.o}) {
      if (m->data) mats.push_back(m);
    }
  }
  RETURN_IF_ERROR(e->backend_->PrepareWeights(mats));
  for (int l = 0; l < c.num_layers; ++l) {
    RETURN_IF_ERROR(e->backend_->PrepareFfn(e->FfnOf(l)));
    if (options.progress && e->backend_->name() != "cpu") {
      options.progress(l + 1, static_cast<int>(c.num_layers), "layers placed on the device");
    }
  }

  if (options.kv_block_size <= 0)
    return absl::InvalidArgumentError("kv_block_size must be positive");
  e->kv_shape_.layers = static_cast<int>(c.num_layers);
  e->kv_shape_.block_size = options.kv_block_size;
  e->kv_shape_.kv_heads = static_cast<int>(c.num_kv_heads);
  e->kv_shape_.head_dim = static_cast<int>(c.head_dim);
  e->kv_shape_.dtype = *kv_dtype;
  int64_t kv_bytes = options.kv_cache_bytes;
  if (options.kv_cache_fraction > 0) {
    const int64_t free_bytes = e->backend_->FreeMemoryBytes();
    if (free_bytes >= 0) kv_bytes = static_cast<int64_t>(options.kv_cache_fraction * free_bytes);
  }
  e->kv_shape_.blocks = options.kv_blocks > 0
                            ? options.kv_blocks
                            : static_cast<int>(kv_bytes / e->kv_shape_.BytesPerBlock());
  if (e->kv_shape_.blocks <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("KV cache of ", kv_bytes,
                                                   " bytes holds no block; one block needs ",
                                                   e->kv_shape_.BytesPerBlock()));
  }
  RETURN_IF_ERROR(e->backend_->AllocKvCache(e->kv_shape_));
  const int half = static_cast<int>(c.head_dim / 2);
  for (int i = 0; i < half; ++i) {
    e->inv_freq_.push_back(static_cast<float>(1.0 / std::pow(c.rope_theta, 2.0 * i / c.head_dim)));
  }
  if (e->mode_ == SparsityMode::kThreshold) RETURN_IF_ERROR(e->LoadSparsityFile(options));
  return e;
}

absl::Status Engine::LoadSparsityFile(const EngineOptions& options) {
  const std::string path =
      options.sparsity_file.empty()
          ? (std::filesystem::path(checkpoint_->dir()) / "sparsity.json").string()
          : options.sparsity_file;
  if (!std::filesystem::exists(path)) {
    return absl::FailedPreconditionError(
        absl::StrCat("sparsity mode 'threshold' needs calibrated thresholds, and ", path,
                     " does not exist: run sparsed-calibrate --model ", options.model_dir,
                     " (or pass the file with --sparsity_file)"));
  }
  ASSIGN_OR_RETURN(SparsityProfile p, ReadSparsityProfile(path));
  const ModelConfig& c = config();
  RETURN_IF_ERROR(CheckProfileMatchesModel(p, path, fingerprint_, static_cast<int>(c.num_layers),
                                           static_cast<int>(c.intermediate_size)));
  std::vector<double> eps;
  for (const SparsityLayer& l : p.layers) eps.push_back(l.epsilon);
  RETURN_IF_ERROR(SetThresholds(eps));
  profile_ = std::move(p);
  return absl::OkStatus();
}

FfnLayer Engine::FfnOf(int layer) const {
  const LayerWeights& w = weights_.layers[layer];
  return FfnLayer{w.gate.data ? &w.gate : nullptr, &w.up, &w.down_t, config().activation,
                  config().activation_threshold};
}

const std::vector<float>& Engine::DownNorms(int layer) {
  if (down_norms_.empty()) down_norms_.resize(weights_.layers.size());
  std::vector<float>& n = down_norms_[layer];
  if (n.empty()) n = DownColumnNorms(weights_.layers[layer].down_t);
  return n;
}

absl::Status Engine::SetThresholds(const std::vector<double>& epsilons) {
  if (epsilons.size() != weights_.layers.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(epsilons.size(), " thresholds for ", weights_.layers.size(), " layers"));
  }
  std::vector<std::vector<float>> t;
  for (size_t l = 0; l < epsilons.size(); ++l) {
    if (!(epsilons[l] >= 0) || std::isinf(epsilons[l])) {
      return absl::InvalidArgumentError(
          absl::StrCat("threshold of layer ", l, " must be finite and non-negative"));
    }
    t.push_back(NeuronThresholds(DownNorms(static_cast<int>(l)), epsilons[l]));
  }
  for (const std::vector<float>& old : neuron_thresholds_) backend_->ForgetHostData(old.data());
  neuron_thresholds_ = std::move(t);
  return absl::OkStatus();
}

absl::Status Engine::SetSparsityMode(SparsityMode m) {
  if (m == SparsityMode::kThreshold && neuron_thresholds_.empty()) {
    return absl::FailedPreconditionError("threshold mode needs thresholds (sparsity.json)");
  }
  mode_ = m;
  return absl::OkStatus();
}

double Engine::WeightBytesPerStep(double ffn_active_fraction) const {
  double bytes = weights_.lm_head.bytes();
  for (const LayerWeights& l : weights_.layers) {
    bytes += l.q.bytes() + l.k.bytes() + l.v.bytes() + l.o.bytes() + l.gate.bytes();
    bytes += ffn_active_fraction * (l.up.bytes() + l.down_t.bytes());
  }
  return bytes;
}

absl::Status Engine::Validate(const Batch& batch) const {
  const ModelConfig& c = config();
  int64_t total = 0;
  for (size_t s = 0; s < batch.sequences.size(); ++s) {
    const BatchSequence& q = batch.sequences[s];
    auto bad = [&](absl::string_view what) {
      return absl::InvalidArgumentError(absl::StrCat("batch sequence ", s, ": ", what));
    };
    if (q.num_tokens <= 0) return bad("num_tokens must be positive");
    if (q.start_position < 0) return bad("start_position must be non-negative");
    const int64_t end = static_cast<int64_t>(q.start_position) + q.num_tokens;
    if (static_cast<int64_t>(q.block_table.size()) * kv_shape_.block_size < end) {
      return bad(absl::StrCat("block_table of ", q.block_table.size(),
                              " blocks does not cover position ", end - 1));
    }
    for (int32_t b : q.block_table) {
      if (b < 0 || b >= kv_shape_.blocks) {
        return bad(
            absl::StrCat("block id ", b, " is outside the KV cache [0, ", kv_shape_.blocks, ")"));
      }
    }
    total += q.num_tokens;
  }
  if (total == 0) return absl::InvalidArgumentError("batch has no tokens");
  if (total != static_cast<int64_t>(batch.token_ids.size())) {
    return absl::InvalidArgumentError(absl::StrCat("batch has ", batch.token_ids.size(),
                                                   " token ids but its sequences count ", total));
  }
  for (size_t i = 0; i < batch.token_ids.size(); ++i) {
    if (batch.token_ids[i] < 0 || batch.token_ids[i] >= c.vocab_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("token id ", batch.token_ids[i], " at batch row ", i,
                       " is outside the vocabulary [0, ", c.vocab_size, ")"));
    }
  }
  return absl::OkStatus();
}

absl::Status Engine::EnsureWorkspace(int tokens) {
  if (tokens <= workspace_tokens_) return absl::OkStatus();
  const ModelConfig& c = config();
  const size_t d = c.hidden_size, qd = c.num_heads * c.head_dim, kvd = c.num_kv_heads * c.head_dim;
  const size_t n = tokens;
  ASSIGN_OR_RETURN(hidden_, backend_->Alloc(n * d));
  ASSIGN_OR_RETURN(normed_, backend_->Alloc(n * d));
  ASSIGN_OR_RETURN(q_, backend_->Alloc(n * qd));
  ASSIGN_OR_RETURN(k_, backend_->Alloc(n * kvd));
  ASSIGN_OR_RETURN(v_, backend_->Alloc(n * kvd));
  ASSIGN_OR_RETURN(attn_, backend_->Alloc(n * qd));
  ASSIGN_OR_RETURN(proj_, backend_->Alloc(n * d));
  ASSIGN_OR_RETURN(logits_in_, backend_->Alloc(n * d));
  ASSIGN_OR_RETURN(logits_, backend_->Alloc(n * c.vocab_size));
  workspace_tokens_ = tokens;
  return absl::OkStatus();
}

absl::StatusOr<StepOutput> Engine::Step(const Batch& batch) {
  RETURN_IF_ERROR(Validate(batch));
  const ModelConfig& c = config();
  const int T = static_cast<int>(batch.token_ids.size());
  RETURN_IF_ERROR(EnsureWorkspace(T));
  const int d = static_cast<int>(c.hidden_size), H = static_cast<int>(c.num_heads);
  const int KV = static_cast<int>(c.num_kv_heads), hd = static_cast<int>(c.head_dim), half = hd / 2;

  // Per-token positions, block tables and rotary tables.
  std::vector<int32_t> positions(T);
  std::vector<const std::vector<int32_t>*> tables(T);
  std::vector<int> logit_rows;
  StepOutput out;
  for (int s = 0, row = 0; s < static_cast<int>(batch.sequences.size()); ++s) {
    const BatchSequence& q = batch.sequences[s];
    for (int j = 0; j < q.num_tokens; ++j, ++row) {
      positions[row] = q.start_position + j;
      tables[row] = &q.block_table;
    }
    if (q.all_logits) {
      for (int j = row - q.num_tokens; j < row; ++j) {
        logit_rows.push_back(j);
        out.logit_sequences.push_back(s);
      }
    } else if (q.need_logits) {
      logit_rows.push_back(row - 1);
      out.logit_sequences.push_back(s);
    }
  }
  std::vector<float> cos(static_cast<size_t>(T) * half), sin(cos.size());
  for (int t = 0; t < T; ++t) {
    const float p = static_cast<float>(positions[t] / c.rope_linear_factor);
    for (int i = 0; i < half; ++i) {
      const float angle = p * inv_freq_[i];
      cos[t * half + i] = std::cos(angle);
      sin[t * half + i] = std::sin(angle);
    }
  }
  AttentionBatch ab{T, positions.data(), tables.data()};

  Backend& b = *backend_;
  b.BeginStep(ab, cos.data(), sin.data());
  std::vector<float> observed;  // the observer's host copy on device backends
  float* x = hidden_.get();
  b.Embed(weights_.embed, batch.token_ids.data(), T, static_cast<float>(c.scale_emb), x);
  const float eps = static_cast<float>(c.rms_norm_eps);
  const float rs = static_cast<float>(c.residual_scale);
  out.layer_stats.resize(c.num_layers);
  for (int l = 0; l < c.num_layers; ++l) {
    const LayerWeights& w = weights_.layers[l];
    b.RmsNorm(x, w.attn_norm.data(), T, d, eps, normed_.get());
    b.MatMul3(normed_.get(), T, w.q, q_.get(), w.k, k_.get(), w.v, v_.get());
    b.Rope(q_.get(), k_.get(), cos.data(), sin.data(), T, H, KV, hd);
    b.Attention(l, q_.get(), k_.get(), v_.get(), ab, H, attn_.get());
    b.MatMul(attn_.get(), T, w.o, proj_.get());
    b.AddScaled(x, proj_.get(), static_cast<size_t>(T) * d, rs);
    b.RmsNorm(x, w.ffn_norm.data(), T, d, eps, normed_.get());
    FfnLayer fl = FfnOf(l);
    if (mode_ == SparsityMode::kThreshold) fl.neuron_thresholds = neuron_thresholds_[l].data();
    if (ffn_observer_) {
      const float* seen = normed_.get();
      if (b.name() != "cpu") {
        observed.resize(static_cast<size_t>(T) * d);
        b.CopyToHost(seen, observed.size(), observed.data());
        seen = observed.data();
      }
      ffn_observer_(l, seen, T);
    }
    b.Ffn(fl, normed_.get(), T, mode_, proj_.get(), &out.layer_stats[l]);
    b.AddScaled(x, proj_.get(), static_cast<size_t>(T) * d, rs);
  }
  if (!logit_rows.empty()) {
    const int n = static_cast<int>(logit_rows.size());
    // Final norm only on the rows that need logits.
    for (int i = 0; i < n; ++i) {
      b.RmsNorm(x + static_cast<size_t>(logit_rows[i]) * d, weights_.final_norm.data(), 1, d, eps,
                logits_in_.get() + static_cast<size_t>(i) * d);
    }
    b.MatMul(logits_in_.get(), n, weights_.lm_head, logits_.get());
    out.logits.resize(static_cast<size_t>(n) * c.vocab_size);
    b.CopyToHost(logits_.get(), out.logits.size(), out.logits.data());
  }
  RETURN_IF_ERROR(b.FinishStep());
  if (c.logit_scale != 1.0) {
    const float ls = static_cast<float>(c.logit_scale);
    for (float& v : out.logits) v *= ls;
  }
  return out;
}

}  // namespace sparsed
