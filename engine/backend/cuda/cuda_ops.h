// The non-FFN operations of the forward pass on CUDA: embedding, RMSNorm, dense matrix products
// over bf16 weights, residual adds, rotary embeddings, paged KV writes and paged causal
// attention.
//
// No CUDA types appear here: pointers are device pointers and `stream` a cudaStream_t, always
// given (null means the legacy default stream, which a backend's step graph does not see). Every
// function launches on `stream` and returns OK or what failed: INVALID_ARGUMENT for arguments the
// kernels do not take, INTERNAL for a failed launch (cuda_status.h).
// Every result of a token depends only on that token's inputs (and, for attention, its
// sequence's cached K/V): the kernels reduce in orders fixed by the shapes, never by the batch,
// so a sequence's output is bitwise the same whatever else is in the batch.
#pragma once

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"

namespace sparsed::cuda {

// out[t, :] = table[ids[t], :] · scale; table bf16 [vocab × d], ids device [T].
absl::Status Embed(const uint16_t* table, int64_t d, const int32_t* ids, int T, float scale,
                   float* out, void* stream);

// out[t] = x[t] / sqrt(mean(x[t]²) + eps) · w (w device fp32 [d]); sums in double as the CPU.
absl::Status RmsNorm(const float* x, const float* w, int T, int d, float eps, float* out,
                     void* stream);

// y[t, i] = Σ_c x[t, c] · W[r_i, c] for i < n, r_i = rows ? rows[i] : i; W bf16 [· × cols]
// (cols a multiple of 8), x fp32 [T × cols], rows device [n] or null, y [T × n].
// layout picks the kernel's rows per warp and warps per block (0: by n; 1: 4 × 8; 2: 2 × 4, for
// benchmarks); results are bitwise the same for every layout and every T.
absl::Status MatMul(const float* x, int T, const uint16_t* w, int64_t cols, const int32_t* rows,
                    int64_t n, float* y, int layout, void* stream);

// Three products of the same x in one launch: y_i = x · W_iᵀ (each as MatMul without rows),
// bitwise equal to three MatMul calls.
struct MatMulOut {
  const uint16_t* w;
  int64_t n;
  float* y;
};
absl::Status MatMul3(const float* x, int T, int64_t cols, const MatMulOut& a, const MatMulOut& b,
                     const MatMulOut& c, void* stream);

// The same product through cuBLAS: x rounded to bf16 (into x_bf16, T × cols), bf16 tensor cores,
// fp32 accumulation and output. Faster for large T; its rounding and order depend on T.
absl::Status CublasMatMul(void* handle, const float* x, int T, const uint16_t* w, int64_t cols,
                          int64_t n, void* x_bf16, float* y, void* stream);

// y += scale · x over n floats.
absl::Status AddScaled(float* y, const float* x, size_t n, float scale, void* stream);

// Rotate-half rotary embeddings on q [T × H·hd] and k [T × KV·hd]; cos, sin device [T × hd/2].
absl::Status Rope(float* q, float* k, const float* cos, const float* sin, int T, int heads,
                  int kv_heads, int head_dim, void* stream);

// One layer's slice of the paged cache: k and v planes of [blocks × block_size × kv_heads × hd],
// fp32 or (bf16) bf16 bits rounded to nearest even when written.
struct PagedLayer {
  void* k = nullptr;
  void* v = nullptr;
  int block_size = 16;
  int kv_heads = 0;
  int head_dim = 0;
  bool bf16 = false;
};

// Writes k, v [T × KV·hd] into the cache at slots[t] (block · block_size + offset).
absl::Status WriteKv(const PagedLayer& layer, const float* k, const float* v, const int32_t* slots,
                     int T, void* stream);

// Causal attention of q [T × H·hd] over each token's cached positions 0 ..= positions[t];
// token t's block table is tables[table_start[t] ...]; max_len = max positions[t] + 1. Positions
// are processed in splits of 128 (each a block, merged in order afterwards), so any context
// length runs and long ones spread over the GPU; `scratch` holds AttentionScratchFloats() floats.
// Scale 1/sqrt(hd); softmax in fp32.
absl::Status Attention(const PagedLayer& layer, const float* q, const int32_t* positions,
                       const int32_t* table_start, const int32_t* tables, int T, int heads,
                       int max_len, float* scratch, float* out, void* stream);
size_t AttentionScratchFloats(int T, int heads, int head_dim, int max_len);
// The number of position splits Attention() launches for max_len (its kernels' arguments depend
// on max_len only through it).
int AttentionSplits(int max_len);

// bf16 (device) → fp32 (device), n elements.
absl::Status Bf16ToF32(const void* src, float* dst, size_t n, void* stream);

}  // namespace sparsed::cuda
