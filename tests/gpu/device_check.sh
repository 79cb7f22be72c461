#!/usr/bin/env bash
# One-call GPU check: builds the CUDA FFN library, its tests and benchmark from source on the GPU
# host (it has CUDA, CMake and Ninja, none of our Debian libraries), runs every `gpu` test, the
# compute-sanitizer memcheck, and the GPU benchmarks, and writes a summary under $OUT.
# Usage (repository root): OUT=/some/dir tests/gpu/device_check.sh [--quick]
set -uo pipefail
OUT="${OUT:-/tmp/sparsed-gpu-out}"
mkdir -p "$OUT"
BUILD=/tmp/sparsed-gpu-build
QUICK="${1:-}"
summary="$OUT/summary.md"
: > "$summary"
log() { echo "$*" | tee -a "$summary"; }

log "# sparsed GPU check $(date -u +%FT%TZ)"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv,noheader 2>&1 | sed 's/^/gpu: /' | tee -a "$summary"
nvcc --version | tail -1 | sed 's/^/nvcc: /' | tee -a "$summary"

export PATH=/usr/local/cuda/bin:$PATH
t0=$(date +%s)
if ! cmake -S tests/gpu -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 \
      >"$OUT/build.log" 2>&1 || ! cmake --build "$BUILD" -j16 >>"$OUT/build.log" 2>&1; then
  log "BUILD FAILED (see build.log)"; tail -30 "$OUT/build.log"; exit 1
fi
log "build: $(( $(date +%s) - t0 )) s"

rc=0
log ""
log "## gpu tests"
(cd "$BUILD" && ctest -L gpu --output-on-failure) >"$OUT/gpu_tests.log" 2>&1 || rc=1
tail -4 "$OUT/gpu_tests.log" | tee -a "$summary"
grep -E "FAIL|device:" "$OUT/gpu_tests.log" | head -20 | tee -a "$summary"

if command -v compute-sanitizer >/dev/null 2>&1; then
  log ""
  log "## compute-sanitizer memcheck (ffn_gpu_test)"
  timeout 240 compute-sanitizer --tool memcheck --error-exitcode 3 "$BUILD/ffn_gpu_test" >"$OUT/memcheck.log" 2>&1
  mc=$?
  log "memcheck exit code: $mc"
  grep -E "ERROR SUMMARY|Invalid|PASSED|FAILED" "$OUT/memcheck.log" | head -10 | tee -a "$summary"
fi

log ""
log "## FFN benchmark: union sparse vs dense cuBLAS"
"$BUILD/ffn_gpu_bench" $QUICK --csv "$OUT/ffn_gpu_bench.csv" >"$OUT/ffn_gpu_bench.md" 2>&1 || { rc=1; log "BENCHMARK FAILED (exit $?)"; }
cat "$OUT/ffn_gpu_bench.md" >> "$summary"
cat "$OUT/ffn_gpu_bench.md"
exit $rc
