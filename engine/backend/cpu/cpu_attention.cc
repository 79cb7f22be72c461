// Paged causal attention on the CPU backend, over an fp32 or bf16 KV cache.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#include "engine/backend/cpu/cpu_backend.h"
#include "engine/common/dtype.h"

namespace sparsed {
namespace {

// fp32 into the cache's element type.
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
  constexpr DType kDt = std::is_same_v<E, float> ? DType::kF32 : DType::kBF16;
  // One task per (token, KV head): the `group` query heads sharing that KV head read each cached
  // row once. The cache is viewed as rows of head_dim elements: position j's K (or V) for KV head
  // g is row slot(j) / head_dim + g, so the kernel table's gathered-row dot and axpy run over it.
  // Their summation orders depend on head_dim only (never on how many heads or tokens share a
  // call), so a token's result is the same in any batch.
  pool_.ParallelFor(T * kvh, [&](int task) {
    const int t = task / kvh, g = task % kvh;
    const std::vector<int32_t>& table = *batch.block_tables[t];
    const int n = batch.positions[t] + 1;
    const size_t first = static_cast<size_t>(t) * heads + static_cast<size_t>(g) * group;
    std::vector<int32_t> rows(n);
    for (int j = 0; j < n; ++j) rows[j] = static_cast<int32_t>(slot(table, j) / hd + g);
    std::vector<float> scores(static_cast<size_t>(group) * n);  // [head in group][position]
    kernels_.dot_rows(q + first * hd, hd, group, kcache, kDt, hd, rows.data(), 0, n, scores.data(),
                      n, nullptr, 0);
    for (int i = 0; i < group; ++i) {
      float* sc = scores.data() + static_cast<size_t>(i) * n;
      float mx = -INFINITY;
      for (int j = 0; j < n; ++j) {
        sc[j] *= scale;
        mx = std::max(mx, sc[j]);
      }
      float sum = 0.f;
      for (int j = 0; j < n; ++j) {
        sc[j] = std::exp(sc[j] - mx);
        sum += sc[j];
      }
      const float inv = 1.f / sum;
      for (int j = 0; j < n; ++j) sc[j] *= inv;
    }
    float* oh = out + first * hd;
    std::fill(oh, oh + static_cast<size_t>(group) * hd, 0.f);
    kernels_.axpy_rows(scores.data(), n, group, n, rows.data(), vcache, kDt, hd, 0, hd, oh, hd,
                       /*skip_zero_rows=*/false);
  });
}

}  // namespace sparsed
