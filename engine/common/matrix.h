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

  size_t row_bytes() const { return SpanBytes(dtype, cols); }
  const void* Row(int64_t r) const {
    return static_cast<const char*>(data) + static_cast<size_t>(r) * row_bytes();
  }
  size_t bytes() const { return static_cast<size_t>(rows) * row_bytes(); }
};

}  // namespace sparsed
