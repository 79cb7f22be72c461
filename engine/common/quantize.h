// Row conversion between fp32 and the weight types of dtype.h, block-quantized ones included.
//
// Quantization rounds to nearest, as GGUF's reference quantizers do for these types:
//   Q8_0: d = max|x| / 127, q = round(x / d) (half away from zero), d stored as fp16.
//   Q4_0: m = the value of largest magnitude (sign kept), d = m / −8,
//         code = min(15, ⌊x / d + 8.5⌋), d stored as fp16.
// A block of zeros has d = 0 and dequantizes to zeros. Dequantization is exact in fp32
// (dtype.h), so a quantized weight has one fp32 value on every path that reads it.
#pragma once

#include <cstdint>

#include "engine/common/dtype.h"

namespace sparsed {

// dst (a row of type t) ← x[0, n). Block types need n to be a multiple of kQuantBlock.
// Returns false, writing nothing meaningful, when x holds a NaN or an infinity.
bool QuantizeRow(const float* x, int64_t n, DType t, void* dst);

// Activations for the quantized dot (KernelTable::dot_rows_q): x[0, n) (n a multiple of
// kQuantBlock) as int8 codes q[0, n) and one fp32 scale per block d[0, n/32] — d = max|x| / 127,
// q = x / d rounded to nearest even, so |q| ≤ 127. A token's codes depend on that token alone.
// Non-finite values give codes clamped to ±127 (never undefined behaviour).
void QuantizeActivationRow(const float* x, int64_t n, int8_t* q, float* d);

// out[0, n) ← the row src of type t as fp32 (n a multiple of kQuantBlock for block types).
void DequantizeRow(const void* src, DType t, int64_t n, float* out);

}  // namespace sparsed
