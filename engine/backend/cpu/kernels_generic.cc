// Kernels compiled for the generic instruction set (flags set in engine/CMakeLists.txt).
#define SPARSED_ISA_NS generic
#define SPARSED_ISA_NAME "generic"
#include "engine/backend/cpu/kernels_impl.inc"
