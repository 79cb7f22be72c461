// Row panels: the layout of a block-quantized matrix whose rows are always read together — the
// dense products (attention's q, k, v and o, the FFN gate, the LM head). Rows a union gathers
// one by one (up, down) stay row-major (dtype.h).
//
// Rows are taken eight at a time (a panel; the last one padded with zero rows). A panel is
// stored block by block along the reduction dimension; panel block b holds the eight rows'
// block b — the same bytes as eight row-major blocks, rearranged so that one 32-byte vector
// holds four consecutive codes of each of the eight rows:
//   bytes [0, 16): the eight rows' fp16 scales, row j at bytes 2j, 2j + 1;
//   Q8_0: 8 chunks of 32 bytes; chunk c byte 4j + i is row j's code 4c + i (signed);
//   Q4_0: 4 groups of 32 bytes; group g byte 4j + i holds row j's code 4g + i in its low nibble
//         and code 4g + 16 + i in its high nibble, each as the unsigned nibble code + 8.
// A vector of chunk c against token codes 4c … 4c + 3 repeated eight times gives, per 32-bit
// lane, one row's four-term integer dot (kernels.h, dot_panels_q).
#pragma once

#include <cstdint>

#include "engine/common/matrix.h"

namespace sparsed {

constexpr int64_t kPanelRows = 8;

// Panels of a matrix of `rows` rows.
constexpr int64_t PanelCount(int64_t rows) { return (rows + kPanelRows - 1) / kPanelRows; }
// Bytes of one panel block and of one whole panel of `cols` columns (block types only).
constexpr size_t PanelBlockBytes(DType t) { return kPanelRows * QuantBlockBytes(t); }
constexpr size_t PanelBytes(DType t, int64_t cols) {
  return PanelBlockBytes(t) * static_cast<size_t>(cols / kQuantBlock);
}

// Writes row r (`cols` columns of block type t, row-major blocks) into its place in the panels
// at `panels` (PanelCount(rows) panels, zero-filled beforehand for the padding rows). Rows
// write disjoint bytes: several threads may fill one buffer.
void PackPanelRow(const void* row, DType t, int64_t cols, int64_t r, void* panels);

// The panel layout of m (row-major, block-quantized): a new matrix owning its bytes, with
// `panels` set. The values are m's, bit for bit.
Matrix ToPanels(const Matrix& m);

// Code k (< 32) of row j (< 8) of one panel block (at its scales), signed: q for Q8_0,
// nibble − 8 for Q4_0. Out of line (not inline), as BlockCode: the per-ISA kernel files call it.
int PanelCode(const void* block, DType t, int j, int k);

// Element (r, c) of m as fp32, in either layout (the value every kernel reads).
float MatrixElementAsF32(const Matrix& m, int64_t r, int64_t c);

}  // namespace sparsed
