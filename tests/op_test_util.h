// Shared by the op tests (cpu_ops_test.cc, backend_ops_test.cc, gpu/cuda_ops_test.cc): matrices
// owned in a dtype, random inputs, names for (device or ISA, dtype) parameters, and one
// paged-attention schedule.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "engine/backend/backend.h"
#include "engine/common/dtype.h"
#include "engine/common/matrix.h"
#include "engine/common/quantize.h"
#include "engine/model/safetensors_writer.h"

namespace sparsed {

// A weight matrix and the bytes it views.
struct OwnedMatrix {
  std::vector<uint8_t> bytes;
  Matrix m;
};

// `v` ([rows × cols]) stored in `dt` (block types quantized row by row: cols a multiple of 32).
inline OwnedMatrix EncodeMatrix(const std::vector<float>& v, int64_t rows, int64_t cols, DType dt) {
  OwnedMatrix o;
  if (IsBlockQuantized(dt)) {
    const size_t rb = SpanBytes(dt, cols);
    o.bytes.resize(static_cast<size_t>(rows) * rb);
    for (int64_t r = 0; r < rows; ++r) {
      QuantizeRow(v.data() + r * cols, cols, dt, o.bytes.data() + static_cast<size_t>(r) * rb);
    }
  } else {
    o.bytes = EncodeTensor(v, dt);
  }
  o.m = Matrix{o.bytes.data(), dt, rows, cols, nullptr};
  return o;
}

// A weight row length for `dt` near `cols`: cols itself, or for block types the next multiple
// of 32 (rows of block types hold whole blocks).
inline int WeightCols(int cols, DType dt) {
  return IsBlockQuantized(dt) ? (cols + 31) / 32 * 32 : cols;
}

// n draws of N(0, scale²).
inline std::vector<float> RandomVec(size_t n, std::mt19937_64& rng, float scale = 1.f) {
  std::normal_distribution<float> nd(0.f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = nd(rng);
  return v;
}

inline OwnedMatrix RandomMatrix(int64_t rows, int64_t cols, DType dt, std::mt19937_64& rng,
                                float scale = 1.f) {
  return EncodeMatrix(RandomVec(static_cast<size_t>(rows * cols), rng, scale), rows, cols, dt);
}

// "NAME_DTYPE" for a (name, dtype) test parameter, e.g. "avx512_BF16" or "cpu_Q4_0".
inline std::string NameAndDtype(
    const ::testing::TestParamInfo<std::tuple<std::string, DType>>& info) {
  return std::get<0>(info.param) + "_" + std::string(DTypeName(std::get<1>(info.param)));
}

// Two sequences in scattered KV blocks (A: blocks 9, 2, 14; B: 5, 0): one step prefills 7 tokens
// of A and 3 of B, then two steps decode one token of each. The steps point into the schedule,
// so it is not copied.
struct AttentionSchedule {
  struct Step {
    std::vector<int32_t> positions;
    std::vector<const std::vector<int32_t>*> tables;
    int tokens() const { return static_cast<int>(positions.size()); }
    AttentionBatch batch() const { return {tokens(), positions.data(), tables.data()}; }
  };

  AttentionSchedule() {
    Step first;
    for (int p = 0; p < 7; ++p) first.positions.push_back(p), first.tables.push_back(&table_a);
    for (int p = 0; p < 3; ++p) first.positions.push_back(p), first.tables.push_back(&table_b);
    steps.push_back(first);
    steps.push_back({{7, 3}, {&table_a, &table_b}});
    steps.push_back({{8, 4}, {&table_a, &table_b}});
  }
  AttentionSchedule(const AttentionSchedule&) = delete;
  AttentionSchedule& operator=(const AttentionSchedule&) = delete;

  const std::vector<int32_t> table_a = {9, 2, 14}, table_b = {5, 0};
  std::vector<Step> steps;
};

}  // namespace sparsed
