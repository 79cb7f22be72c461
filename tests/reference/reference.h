// Plain scalar reference implementations: the oracle every backend is tested against.
// Written for clarity, double accumulation, no SIMD, no threads, no paging.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/common/matrix.h"
#include "engine/model/config.h"
#include "engine/model/weights.h"

namespace sparsed::ref {

// y [T × w.rows] = x · wᵀ in double; for block-quantized w, x is first quantized per token in
// blocks of 32 as the quantized dot does (KernelTable::dot_rows_q).
std::vector<float> MatMul(const std::vector<float>& x, int T, const Matrix& w);
std::vector<float> RmsNorm(const std::vector<float>& x, int T, const std::vector<float>& w,
                           double eps);
// Dense FFN of one layer (down given transposed, [F × d]).
std::vector<float> Ffn(const std::vector<float>& x, int T, const Matrix* gate, const Matrix& up,
                       const Matrix& down_t, Activation act, float threshold);
// Rotate-half rotary embedding of one head vector at `pos`.
void Rope(float* v, int head_dim, int pos, double theta, double linear_factor);

// The cos and sin tables a backend's Rope takes for tokens at `positions` (rotate-half, base
// `theta`): [T × head_dim/2] each.
void RopeTables(const std::vector<int>& positions, int head_dim, double theta,
                std::vector<float>* cos, std::vector<float>* sin);
// Rope of every head of q [T × H·head_dim] and k [T × KV·head_dim] at `positions`.
void RopeHeads(std::vector<float>& q, std::vector<float>& k, const std::vector<int>& positions,
               int H, int KV, int head_dim, double theta);

// Causal attention with grouped KV heads, no cache: q [T × H·hd], k and v [T × KV·hd] for T
// tokens of consecutive positions; token t attends to tokens first[t]..t (first[t]: the first
// token of t's sequence), scaled by 1/√hd. Returns [T × H·hd].
std::vector<float> CausalAttention(const std::vector<float>& q, const std::vector<float>& k,
                                   const std::vector<float>& v, const std::vector<int>& first,
                                   int H, int KV, int hd);

// Full forward of one sequence (no cache): logits [T × vocab] for every position.
std::vector<float> ModelLogits(const ModelConfig& c, const ModelWeights& w,
                               const std::vector<int32_t>& tokens);

// max |a − b| / max(max |b|, 1e-6); infinite when a holds a non-finite value or the sizes differ.
double RelMaxError(const std::vector<float>& a, const std::vector<float>& b);

}  // namespace sparsed::ref
