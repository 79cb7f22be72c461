// Portable kernels: GCC vector extensions of 8 floats, compiled for the baseline instruction set
// (the compiler splits them into what the target has). Same tiles as AVX2.
#include <cstring>

#include "engine/backend/cpu/kernels.h"
#include "engine/backend/cpu/kernels_blocked.h"

namespace sparsed::cpu::generic {
namespace {

typedef float vf8 __attribute__((vector_size(32)));
typedef uint32_t vu8 __attribute__((vector_size(32)));
typedef uint16_t vh8 __attribute__((vector_size(16)));

struct V {
  using Reg = vf8;
  static constexpr int kLanes = 8;
  static constexpr int kDotRows = 2, kDotToks = 4;
  static constexpr int kDotRowsNarrow = 4, kDotToksNarrow = 1;
  static constexpr int kAxToks = 4, kAxVecs = 2;

  static Reg Zero() { return vf8{}; }
  static Reg LoadX(const float* p) {
    Reg v;
    std::memcpy(&v, p, sizeof v);
    return v;
  }
  static Reg LoadXPart(const float* p, int n) {
    Reg v{};
    std::memcpy(&v, p, static_cast<size_t>(n) * sizeof(float));
    return v;
  }
  template <DType D>
  static Reg LoadW(const void* base, int64_t k) {
    return LoadWPart<D>(base, k, kLanes);
  }
  template <DType D>
  static Reg LoadWPart(const void* base, int64_t k, int n) {
    if constexpr (IsBlockQuantized(D)) {
      return blocked::DequantPart<V, D>(base, k, n);
    } else if constexpr (D == DType::kF32) {
      return LoadXPart(static_cast<const float*>(base) + k, n);
    } else if constexpr (D == DType::kBF16) {
      vh8 h{};
      std::memcpy(&h, static_cast<const uint16_t*>(base) + k, static_cast<size_t>(n) * 2);
      const vu8 u = __builtin_convertvector(h, vu8) << 16;
      Reg f;
      std::memcpy(&f, &u, sizeof f);
      return f;
    } else {
      Reg f{};
      for (int i = 0; i < n; ++i) f[i] = F16ToF32(static_cast<const uint16_t*>(base)[k + i]);
      return f;
    }
  }
  static float Scale(const uint8_t* block) {
    uint16_t h;
    std::memcpy(&h, block, sizeof h);
    return F16ToF32(h);
  }
  template <DType D>
  static Reg Codes(const uint8_t* block, int j) {
    Reg f{};
    for (int i = 0; i < kLanes; ++i) f[i] = static_cast<float>(BlockCode(block, D, j + i));
    return f;
  }
  static Reg Mul(Reg a, Reg b) { return a * b; }
  // Multiply then add (the baseline instruction set has no fused form; std::fma would be a
  // library call per lane). The order of operations is the same as the SIMD tables'.
  static Reg Fma(Reg a, Reg b, Reg c) { return a * b + c; }
  static Reg Bcast(float f) { return vf8{} + f; }
  static void Store(float* p, Reg r) { std::memcpy(p, &r, sizeof r); }
  static void StorePart(float* p, Reg r, int n) {
    std::memcpy(p, &r, static_cast<size_t>(n) * sizeof(float));
  }
  static float HSum(Reg a) {
    float s4[4];
    for (int i = 0; i < 4; ++i) s4[i] = a[i] + a[i + 4];
    return (s4[0] + s4[2]) + (s4[1] + s4[3]);
  }
  static void Prefetch(const void* p) { __builtin_prefetch(p); }
};

// The quantized dot's traits (kernels_blocked.h): a block's integer dot in one int32, scaled
// and added to one float per (row, token) in block order (multiply then add, as Fma above).
struct Q {
  using Acc = float;
  struct Codes {
    int8_t v[kQuantBlock];
  };
  static constexpr int kRowsNarrow = 4, kRows = 2, kToks = 4;
  static Acc Zero() { return 0.f; }
  static float Scale(const uint8_t* block) { return V::Scale(block); }
  template <DType D>
  static Codes LoadW(const uint8_t* block) {
    Codes c;
    for (int j = 0; j < kQuantBlock; ++j) c.v[j] = static_cast<int8_t>(BlockCode(block, D, j));
    return c;
  }
  static Codes LoadX(const int8_t* p) {
    Codes c;
    std::memcpy(c.v, p, sizeof c.v);
    return c;
  }
  static Codes Abs(Codes x) { return x; }
  static Acc Fma(const Codes& w, const Codes& x, const Codes&, float s, Acc acc) {
    int32_t sum = 0;
    for (int j = 0; j < kQuantBlock; ++j) sum += int32_t{w.v[j]} * x.v[j];
    return static_cast<float>(sum) * s + acc;
  }
  static float HSum(Acc a) { return a; }
};

// The row-panel dot's traits (kernels_blocked.h): each (row, token) block dot as one int32 from
// the panel's bytes (panel.h), multiply then add as Q.
struct P {
  static constexpr int kToks = 4;
  template <DType D, int NT>
  static void Tile(const int8_t* const* xq, const float* const* xd, const int32_t* const*,
                   const uint8_t* panel, int64_t nb, float* const* yr, int nrows) {
    const int64_t pbb = static_cast<int64_t>(PanelBlockBytes(D));
    for (int j = 0; j < nrows; ++j) {
      float acc[NT] = {};
      for (int64_t b = 0; b < nb; ++b) {
        const uint8_t* blk = panel + b * pbb;
        const float dw = V::Scale(blk + 2 * j);
        int8_t w[kQuantBlock];
        for (int k = 0; k < kQuantBlock; ++k) w[k] = static_cast<int8_t>(PanelCode(blk, D, j, k));
        for (int t = 0; t < NT; ++t) {
          const int8_t* x = xq[t] + b * kQuantBlock;
          int32_t sum = 0;
          for (int k = 0; k < kQuantBlock; ++k) sum += int32_t{w[k]} * x[k];
          acc[t] = static_cast<float>(sum) * (dw * xd[t][b]) + acc[t];
        }
      }
      for (int t = 0; t < NT; ++t) yr[t][j] = acc[t];
    }
  }
};

}  // namespace

const KernelTable& Table() {
  static const KernelTable t{"generic", &blocked::DotRowsAny<V>, &blocked::QuantDotRowsAny<Q>,
                             &blocked::PanelDotAny<P>, &blocked::AxpyRowsAny<V>};
  return t;
}

}  // namespace sparsed::cpu::generic
