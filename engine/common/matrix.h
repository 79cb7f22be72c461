// A read-only row-major weight matrix in its stored dtype.
#pragma once

#include <cstdint>
#include <memory>

#include "engine/common/dtype.h"

namespace sparsed {

struct Matrix {
  const void* data = nullptr;  // rows × cols elements of `dtype`, row-major (rows of blocks for
                               // block-quantized types, dtype.h)
  DType dtype = DType::kF32;
  int64_t rows = 0;
  int64_t cols = 0;
  std::shared_ptr<const void> owner;  // set when the data is not a view into a mapped file
  // Block types only: the rows are stored in row panels of eight (panel.h), read by the dense
  // quantized dot alone; Row() does not apply.
  bool panels = false;

  size_t row_bytes() const { return SpanBytes(dtype, cols); }
  const void* Row(int64_t r) const {
    return static_cast<const char*>(data) + static_cast<size_t>(r) * row_bytes();
  }
  // Panels pad the rows to a multiple of eight.
  size_t bytes() const {
    return static_cast<size_t>(panels ? (rows + 7) / 8 * 8 : rows) * row_bytes();
  }
};

}  // namespace sparsed
