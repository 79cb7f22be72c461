#include "engine/common/panel.h"

#include <algorithm>
#include <cstring>
#include <memory>

namespace sparsed {

int PanelCode(const void* block, DType t, int j, int k) {
  const uint8_t* codes = static_cast<const uint8_t*>(block) + 16;
  if (t == DType::kQ8_0) return static_cast<int8_t>(codes[32 * (k / 4) + 4 * j + k % 4]);
  const int lo = k % 16;  // codes k and k + 16 share a byte
  const uint8_t byte = codes[32 * (lo / 4) + 4 * j + lo % 4];
  return ((k < 16 ? byte : byte >> 4) & 0x0f) - 8;
}

void PackPanelRow(const void* row, DType t, int64_t cols, int64_t r, void* panels) {
  const int64_t nb = cols / kQuantBlock, p = r / kPanelRows, j = r % kPanelRows;
  const size_t bb = QuantBlockBytes(t), pbb = PanelBlockBytes(t);
  // Q8_0: chunk c holds codes 4c … 4c + 3. Q4_0: a row-major block's byte i already holds codes
  // i and i + 16 as unsigned nibbles, so group g takes its bytes 4g … 4g + 3 as they are.
  const int chunks = t == DType::kQ8_0 ? 8 : 4;
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* src = static_cast<const uint8_t*>(row) + b * bb;
    uint8_t* dst = static_cast<uint8_t*>(panels) + static_cast<size_t>(p * nb + b) * pbb;
    std::memcpy(dst + 2 * j, src, 2);  // the fp16 scale
    for (int c = 0; c < chunks; ++c) std::memcpy(dst + 16 + 32 * c + 4 * j, src + 2 + 4 * c, 4);
  }
}

Matrix ToPanels(const Matrix& m) {
  Matrix out;
  out.dtype = m.dtype;
  out.panels = true;
  out.rows = m.rows;
  out.cols = m.cols;
  auto buf = std::shared_ptr<uint8_t[]>(new uint8_t[std::max<size_t>(out.bytes(), 1)]());
  for (int64_t r = 0; r < m.rows; ++r) PackPanelRow(m.Row(r), m.dtype, m.cols, r, buf.get());
  out.data = buf.get();
  out.owner = std::shared_ptr<const void>(buf, buf.get());
  return out;
}

float MatrixElementAsF32(const Matrix& m, int64_t r, int64_t c) {
  if (!m.panels) return LoadAsF32(m.Row(r), m.dtype, static_cast<size_t>(c));
  const int64_t nb = m.cols / kQuantBlock, p = r / kPanelRows, j = r % kPanelRows;
  const int64_t b = c / kQuantBlock, k = c % kQuantBlock;
  const auto* blk = static_cast<const uint8_t*>(m.data) +
                    static_cast<size_t>(p * nb + b) * PanelBlockBytes(m.dtype);
  uint16_t h;
  std::memcpy(&h, blk + 2 * j, 2);
  return static_cast<float>(PanelCode(blk, m.dtype, static_cast<int>(j), static_cast<int>(k))) *
         F16ToF32(h);
}

}  // namespace sparsed
