#include "engine/common/quantize.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace sparsed {
namespace {

void PutScale(uint8_t* block, float d) {
  const uint16_t h = F32ToF16(d);
  std::memcpy(block, &h, sizeof h);
}

void QuantizeBlockQ8(const float* x, uint8_t* block) {
  float amax = 0.f;
  for (int j = 0; j < kQuantBlock; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float d = amax / 127.f;
  const float id = d != 0.f ? 1.f / d : 0.f;
  PutScale(block, d);
  for (int j = 0; j < kQuantBlock; ++j) {
    block[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(std::round(x[j] * id)));
  }
}

void QuantizeBlockQ4(const float* x, uint8_t* block) {
  float amax = 0.f, max = 0.f;
  for (int j = 0; j < kQuantBlock; ++j) {
    if (std::fabs(x[j]) > amax) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  }
  const float d = max / -8.f;
  const float id = d != 0.f ? 1.f / d : 0.f;
  PutScale(block, d);
  auto code = [&](float v) {
    // v·id ∈ [−8, 8] up to rounding, so the sum is in [0.5, 16.5]: truncation rounds it.
    return static_cast<uint8_t>(std::min(15, static_cast<int>(v * id + 8.5f)));
  };
  for (int j = 0; j < kQuantBlock / 2; ++j) {
    block[2 + j] = static_cast<uint8_t>(code(x[j]) | (code(x[j + kQuantBlock / 2]) << 4));
  }
}

}  // namespace

bool QuantizeRow(const float* x, int64_t n, DType t, void* dst) {
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(x[i])) return false;
  }
  if (!IsBlockQuantized(t)) {
    for (int64_t i = 0; i < n; ++i) StoreFromF32(dst, t, static_cast<size_t>(i), x[i]);
    return true;
  }
  auto* out = static_cast<uint8_t*>(dst);
  const size_t bb = QuantBlockBytes(t);
  for (int64_t b = 0; b < n / kQuantBlock; ++b) {
    if (t == DType::kQ8_0) {
      QuantizeBlockQ8(x + b * kQuantBlock, out + b * bb);
    } else {
      QuantizeBlockQ4(x + b * kQuantBlock, out + b * bb);
    }
  }
  return true;
}

void QuantizeActivationRow(const float* x, int64_t n, int8_t* q, float* d) {
  for (int64_t b = 0; b < n / kQuantBlock; ++b) {
    const float* xb = x + b * kQuantBlock;
    float amax = 0.f;
    for (int j = 0; j < kQuantBlock; ++j) amax = std::max(amax, std::fabs(xb[j]));
    const float scale = amax / 127.f;
    const float inv = scale != 0.f ? 1.f / scale : 0.f;
    d[b] = scale;
    for (int j = 0; j < kQuantBlock; ++j) {
      float r = std::nearbyint(xb[j] * inv);
      r = r >= -127.f ? (r <= 127.f ? r : 127.f) : -127.f;  // NaN → −127
      q[b * kQuantBlock + j] = static_cast<int8_t>(r);
    }
  }
}

void DequantizeRow(const void* src, DType t, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = LoadAsF32(src, t, static_cast<size_t>(i));
}

}  // namespace sparsed
