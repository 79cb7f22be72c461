#!/usr/bin/env bash
# Builds every GPU check on this machine (they link our Debian libraries: Abseil, GoogleTest,
# ...) and collects them for a GPU host that has CUDA but none of those libraries:
#   .gpu/bundle/bin/{ffn_gpu_test,cuda_backend_test,backend_ops_test,ffn_gpu_bench,ops_gpu_bench,
#                    decode_bench}                     stripped executables
#   .gpu/bundle/lib/libsparsed_cuda.so                 the CUDA backend (sm_80 and sm_90 code)
#   .gpu/bundle/lib/sparsed-tokenizer                  the tokenizer process the engine starts
#   .gpu/bundle/lib/*.so*                              every shared library they load that is
#                                                      neither glibc's, libstdc++/libgcc nor CUDA's
# device_check.sh runs them from the bundle and builds nothing (copy `.gpu/bundle` to the GPU host
# with the source tree: it is git-ignored).
# Usage (repository root): tests/gpu/make_bundle.sh [build-dir]
set -euo pipefail
BUILD="${1:-build}"
OUTB=.gpu/bundle
[[ -f "$BUILD/CMakeCache.txt" ]] || cmake --preset default >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target ffn_gpu_test cuda_backend_test backend_ops_test \
  ffn_gpu_bench ops_gpu_bench decode_bench sparsed_cuda sparsed-tokenizer
rm -rf "$OUTB"
mkdir -p "$OUTB/bin" "$OUTB/lib"
strip --strip-debug -o "$OUTB/bin/cuda_backend_test" "$BUILD/tests/cuda_backend_test"
strip --strip-debug -o "$OUTB/bin/ffn_gpu_test" "$BUILD/tests/ffn_gpu_test"
strip --strip-debug -o "$OUTB/bin/backend_ops_test" "$BUILD/tests/backend_ops_test"
strip --strip-debug -o "$OUTB/bin/ffn_gpu_bench" "$BUILD/bench/ffn_gpu_bench"
strip --strip-debug -o "$OUTB/bin/ops_gpu_bench" "$BUILD/bench/ops_gpu_bench"
strip --strip-debug -o "$OUTB/bin/decode_bench" "$BUILD/bench/decode_bench"
strip --strip-debug -o "$OUTB/lib/libsparsed_cuda.so" "$BUILD/lib/libsparsed_cuda.so"
strip --strip-debug -o "$OUTB/lib/sparsed-tokenizer" "$BUILD/lib/sparsed-tokenizer"
for f in "$OUTB"/bin/* "$OUTB/lib/libsparsed_cuda.so" "$OUTB/lib/sparsed-tokenizer"; do
  ldd "$f" | awk '$3 ~ /^\// {print $3}'
done | sort -u | while read -r lib; do
  case "$(basename "$lib")" in
    libc.so*|libm.so*|libdl.so*|libpthread.so*|librt.so*|ld-linux*|libgcc_s.so*|libstdc++.so*) ;;
    libcuda.so*|libcublas*|libcudart*|libnvidia*) ;;
    *) cp -L "$lib" "$OUTB/lib/" ;;
  esac
done
du -sh "$OUTB"
ls "$OUTB/bin"
ls "$OUTB/lib" | wc -l
