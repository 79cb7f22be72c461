// Kernels compiled for the avx512 instruction set (flags set in engine/CMakeLists.txt).
#define SPARSED_ISA_NS avx512
#define SPARSED_ISA_NAME "avx512"
#include "engine/backend/cpu/kernels_impl.inc"
