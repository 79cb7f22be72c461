// Paged causal attention on the CPU backend, over an fp32 or bf16 KV cache.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "engine/backend/cpu/cpu_backend.h"
#include "engine/common/dtype.h"

namespace sparsed {
namespace {

// One cached element as fp32, and fp32 into the cache's element type.
inline float Load(const float* p, size_t i) { return p[i]; }
inline float Load(const uint16_t* p, size_t i) { return Bf16ToF32(p[i]); }
inline void Store(const float* src, size_t n, float* dst) {
  std::memcpy(dst, src, n * sizeof(float));
}
inline void Store(const float* src, size_t n, uint16_t* dst) {
  for (size_t i = 0; i < n; ++i) dst[i] = F32ToBf16(src[i]);
}

}  // namespace

void CpuBackend::Attention(int layer, const float* q, const float* k, const float* v,
                           const AttentionBatch& batch, int heads, float* out) {
  if (kv_shape_.dtype == DType::kBF16) {
    AttentionOver(kv16_.data(), layer, q, k, v, batch, heads, out);
  } else {
    AttentionOver(kv_.data(), layer, q, k, v, batch, heads, out);
  }
}

template <class E>
void CpuBackend::AttentionOver(E* cache, int layer, const float* q, const float* k, const float* v,
                               const AttentionBatch& batch, int heads, float* out) {
  const KvCacheShape& s = kv_shape_;
  const int kvh = s.kv_heads, hd = s.head_dim, bs = s.block_size;
  const size_t token_stride = static_cast<size_t>(kvh) * hd;
  const size_t block_stride = token_stride * bs;
  E* kcache = cache + static_cast<size_t>(layer) * 2 * s.blocks * block_stride;
  E* vcache = kcache + static_cast<size_t>(s.blocks) * block_stride;
  auto slot = [&](const std::vector<int32_t>& table, int pos) {
    return static_cast<size_t>(table[pos / bs]) * block_stride +
           static_cast<size_t>(pos % bs) * token_stride;
  };
  const int T = batch.num_tokens;
  for (int t = 0; t < T; ++t) {
    const size_t off = slot(*batch.block_tables[t], batch.positions[t]);
    Store(k + t * token_stride, token_stride, kcache + off);
    Store(v + t * token_stride, token_stride, vcache + off);
  }
  const int group = heads / kvh;
  const float scale = 1.f / std::sqrt(static_cast<float>(hd));
  pool_.ParallelFor(T * heads, [&](int task) {
    const int t = task / heads, h = task % heads, g = h / group;
    const std::vector<int32_t>& table = *batch.block_tables[t];
    const int n = batch.positions[t] + 1;
    const float* qh = q + (static_cast<size_t>(t) * heads + h) * hd;
    std::vector<float> scores(n);
    float mx = -INFINITY;
    for (int j = 0; j < n; ++j) {
      const E* kj = kcache + slot(table, j) + static_cast<size_t>(g) * hd;
      float dot = 0.f;
      for (int i = 0; i < hd; ++i) dot += qh[i] * Load(kj, i);
      scores[j] = dot * scale;
      mx = std::max(mx, scores[j]);
    }
    float sum = 0.f;
    for (int j = 0; j < n; ++j) {
      scores[j] = std::exp(scores[j] - mx);
      sum += scores[j];
    }
    float* oh = out + (static_cast<size_t>(t) * heads + h) * hd;
    std::fill(oh, oh + hd, 0.f);
    const float inv = 1.f / sum;
    for (int j = 0; j < n; ++j) {
      const E* vj = vcache + slot(table, j) + static_cast<size_t>(g) * hd;
      const float p = scores[j] * inv;
      for (int i = 0; i < hd; ++i) oh[i] += p * Load(vj, i);
    }
  });
}

}  // namespace sparsed
