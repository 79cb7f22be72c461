// Kernels compiled for the avx2 instruction set (flags set in engine/CMakeLists.txt).
#define SPARSED_ISA_NS avx2
#define SPARSED_ISA_NAME "avx2"
#include "engine/backend/cpu/kernels_impl.inc"
