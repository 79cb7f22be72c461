// The CPU backend: SIMD kernels chosen at run time, a thread pool, host memory.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "absl/strings/string_view.h"
#include "engine/backend/backend.h"
#include "engine/backend/cpu/kernels.h"
#include "engine/backend/mask.h"
#include "engine/common/thread_pool.h"

namespace sparsed {

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(const BackendOptions& options);

  absl::string_view name() const override { return "cpu"; }
  std::string Describe() const override;
  absl::StatusOr<DeviceBuffer> Alloc(size_t floats) override;
  void CopyToHost(const float* src, size_t n, float* dst) override;
  void CopyFromHost(const float* src, size_t n, float* dst) override;
  absl::Status PrepareWeights(const std::vector<const Matrix*>&) override {
    return absl::OkStatus();
  }
  absl::Status AllocKvCache(const KvCacheShape& shape) override;

  void Embed(const Matrix& table, const int32_t* ids, int T, float scale, float* out) override;
  void RmsNorm(const float* x, const float* weight, int T, int d, float eps, float* out) override;
  void MatMul(const float* x, int T, const Matrix& w, float* y) override;
  void MatMulRows(const float* x, int T, const Matrix& w, const int32_t* rows, int n_rows,
                  float* y) override;
  // q, k and v of one x: quantized once for block-quantized weights.
  void MatMul3(const float* x, int T, const Matrix& a, float* ya, const Matrix& b, float* yb,
               const Matrix& c, float* yc) override;
  void AddScaled(float* y, const float* x, size_t n, float scale) override;
  void Rope(float* q, float* k, const float* cos, const float* sin, int T, int heads, int kv_heads,
            int head_dim) override;
  void Attention(int layer, const float* q, const float* k, const float* v,
                 const AttentionBatch& batch, int heads, float* out) override;
  void Ffn(const FfnLayer& layer, const float* x, int T, SparsityMode mode, float* y,
           FfnStats* stats) override;

  double dense_break_even() const { return dense_break_even_; }

  // The FFN's products over the thread pool, public for benchmarks.
  // y[T × n] = x · W[rows]ᵀ (rows null = first n rows). need: as in KernelTable::dot_rows
  // (pairs with a zero entry may be skipped and set to 0), or null.
  void DotRows(const float* x, int T, const Matrix& w, const int32_t* rows, int64_t n, float* y,
               int64_t ldy, const float* need, int64_t ld_need);
  // For block-quantized weights, DotRows quantizes x per token (QuantizeActivations) and runs
  // the quantized dot (KernelTable::dot_rows_q, or dot_panels_q for a matrix in row panels —
  // which REQUIRES rows and need null: panels serve the dense products only): a token's codes
  // depend on it alone.
  // y[T × w.cols] += Σ_i h[:, i] · W[rows[i]] (rows null = first n rows), in fixed neuron-id
  // ranges whose partial sums are added in range order.
  void AxpyRows(const float* h, int64_t ldh, int T, int64_t n, const int32_t* rows, const Matrix& w,
                float* y, bool skip_zero_rows);

  // Cumulative wall time of the FFN phases since construction (for benchmarks):
  // gate, activation + union, up, down.
  struct FfnPhaseNs {
    int64_t gate = 0, mask = 0, up = 0, down = 0;
  };
  const FfnPhaseNs& ffn_phase_ns() const { return phase_ns_; }
  // FFN calls that took the per-token path since construction (for benchmarks).
  int64_t per_token_steps() const { return per_token_steps_; }

 private:
  // First neuron id of down-projection range c (of kDownChunks) for F neurons.
  static int64_t DownChunkStart(int64_t F, int c) { return F * c / kDownChunks; }
  // Runs fn(range, c0, c1, partial) for every neuron range × column group over the pool, with
  // partial = that range's [T × cols] slab, zeroed on columns [c0, c1); then y += Σ partials in
  // range order.
  // `direct`: fn's kernel calls take the axpy kernel's direct path (at most kDirectDownTokens
  // tokens per call), which streams whole rows best; tasks then split columns less.
  void DownByRanges(
      int T, int64_t cols, float* y, bool direct,
      const std::function<void(int range, int64_t c0, int64_t c1, float* partial)>& fn);
  // Runs fn over ranges [w0, w1) of W 64-neuron words on the pool and returns the sum of what it
  // returns. Ranges are disjoint, so fn may write its own words without locks.
  int64_t SumOverWords(int64_t W, const std::function<int64_t(int64_t w0, int64_t w1)>& fn);
  // Applies the activation to act_ [T × F] in place over the pool and returns the number of
  // non-zero outputs; with `masks`, also each token's non-zero bits (tok_bits_, [T × ⌈F/64⌉]
  // words) and their union in *uni (cpu_ffn_mask.cc).
  int64_t ActivateAndMask(const FfnLayer& layer, int T, bool masks, NeuronUnion* uni);
  // The down projection's coefficients over the pool: h_[t, k] = act_[t, rows[k]] · up_[t, k]
  // (act_ alone when the layer is not gated; rows null = the first n neurons), for T tokens and n
  // rows. With `threshold` (rows null, n == F), values below their neuron's threshold become 0
  // in the same pass, down_union_ holds the union of the surviving neurons, and the return value
  // is how many values survive; otherwise it returns 0 (cpu_ffn_mask.cc).
  int64_t Coefficients(const FfnLayer& layer, int T, const int32_t* rows, int64_t n,
                       bool threshold);
  // xq_, xd_, xs_ ← x [T × K] quantized per token in blocks of 32 (QuantizeActivationRow), and
  // each block's sum of codes, over the pool.
  void QuantizeActivations(const float* x, int T, int64_t K);
  // DotRows with `quantize` false for block-quantized w: REQUIRES xq_, xd_ to hold this x
  // (QuantizeActivations), so several products of one x quantize it once.
  void DotRowsOn(const float* x, int T, const Matrix& w, const int32_t* rows, int64_t n, float* y,
                 int64_t ldy, const float* need, int64_t ld_need, bool quantize);
  // Exact mode's per-token products (cpu_ffn_tokens.cc): each token's up and down over its own
  // active neurons only, bitwise the same as the union products; act_ holds the activations and,
  // for block-quantized weights, xq_ and xd_ hold x quantized (Ffn does it once).
  void FfnPerToken(const FfnLayer& layer, const float* x, int T, float* y);

  const cpu::KernelTable& kernels_;
  ThreadPool pool_;
  double dense_break_even_;
  double per_token_break_even_;
  KvCacheShape kv_shape_;
  // [layers][2][blocks][block_size][kv_heads][head_dim], in kv_ (fp32) or kv16_ (bf16 bits).
  std::vector<float> kv_;
  std::vector<uint16_t> kv16_;
  template <class E>
  void AttentionOver(E* cache, int layer, const float* q, const float* k, const float* v,
                     const AttentionBatch& batch, int heads, float* out);
  // FFN scratch, reused across calls.
  std::vector<float> act_, up_, h_;
  // Activations quantized for the quantized dot: [T × K] codes, [T × K/32] scales and sums of
  // codes (the row-panel dot's Q4_0 offset).
  std::vector<int8_t> xq_;
  std::vector<float> xd_;
  std::vector<int32_t> xs_;
  std::vector<int32_t> union_rows_;
  NeuronUnion down_union_{0};  // threshold mode: rows the down projection reads
  // Per-token lists of the per-token path: token t's active neuron ids (ascending) are
  // tok_rows_[tok_off_[t] .. tok_off_[t + 1]), with their up products and coefficients.
  std::vector<uint64_t> tok_bits_;
  std::vector<int64_t> tok_off_;
  std::vector<int32_t> tok_rows_;
  std::vector<float> tok_up_, tok_h_;
  static constexpr int kDownChunks = 8;
  // Calls of the axpy kernel with this many tokens or fewer take its direct path
  // (kernels_blocked.h, kAxDirectTokens).
  static constexpr int kDirectDownTokens = 8;
  std::vector<float> partial_;  // [kDownChunks][T × d] down-projection partial sums
  FfnPhaseNs phase_ns_;
  int64_t per_token_steps_ = 0;
};

}  // namespace sparsed
