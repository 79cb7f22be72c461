#include "engine/backend/cpu/kernels.h"

#include <cpuid.h>

namespace sparsed::cpu {

const KernelTable& SelectKernels(absl::string_view force) {
  __builtin_cpu_init();
  const bool has512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl");
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  const bool f16c = __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & bit_F16C);
  const bool has2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c;
  if (force == "generic") return generic::Table();
  if (force == "avx2" && has2) return avx2::Table();
  if (force == "avx512" && has512) return avx512::Table();
  if (has512) return avx512::Table();
  if (has2) return avx2::Table();
  return generic::Table();
}

}  // namespace sparsed::cpu
