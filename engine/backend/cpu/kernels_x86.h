// Pieces shared by the x86 vector traits (kernels_avx512.cc, kernels_avx2.cc). Internal linkage
// on purpose: each including file is compiled for its own instruction set, and a shared inline
// symbol could be resolved to the AVX-512 encoding on a CPU without it.
#pragma once

#include <immintrin.h>

namespace sparsed::cpu {
namespace {

// The last steps of every horizontal sum, in a fixed order: 4 lanes → 2 → 1.
inline float HSum4(__m128 s) {
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 0x55));
  return _mm_cvtss_f32(s);
}

struct X86Prefetch {
  static void Prefetch(const void* p) { _mm_prefetch(static_cast<const char*>(p), _MM_HINT_T0); }
};

}  // namespace
}  // namespace sparsed::cpu
