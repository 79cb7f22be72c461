#!/usr/bin/env bash
# One-call GPU check: builds the CUDA FFN library, its tests and benchmark from source on the GPU
# host (it has CUDA, CMake and Ninja, none of our Debian libraries), runs every `gpu` test, the
# compute-sanitizer memcheck, and the GPU benchmarks, and writes a summary under $OUT.
# The checks that need the engine (CPU-vs-CUDA whole-model test, end-to-end decode benchmark)
# come prebuilt in .gpu/bundle (tests/gpu/make_bundle.sh) and run when it is present.
# Usage (repository root): OUT=/some/dir tests/gpu/device_check.sh [--quick]
# Environment: E2E_LAYERS (decoder layers of the LLaMA-2-7B-shape decode model, default 8),
# E2E_BATCHES (default 1,2,4,8,16,32,64), E2E_ROUNDS (default 3), E2E_FALLBACK (default
# --fallback; empty drops the cuBLAS-fallback engine), E2E_GRAPHS (default --graphs: an engine
# with step graphs; empty drops it).
set -uo pipefail
OUT="${OUT:-/tmp/sparsed-gpu-out}"
mkdir -p "$OUT"
BUILD=/tmp/sparsed-gpu-build
QUICK="${1:-}"
summary="$OUT/summary.md"
: > "$summary"
log() { echo "$*" | tee -a "$summary"; }
# run_test NAME LIMIT LINES PATTERN COMMAND...: runs COMMAND for at most LIMIT seconds into
# $OUT/NAME.log, logs its exit code (not 0 fails the check) and up to LINES lines of the log
# matching PATTERN.
run_test() {
  local name=$1 limit=$2 lines=$3 pattern=$4
  shift 4
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  local code=$?
  log "exit code: $code"
  [[ $code -eq 0 ]] || rc=1
  grep -E "$pattern" "$OUT/$name.log" | head -"$lines" | tee -a "$summary"
}

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

BUNDLE=.gpu/bundle
if [[ -d "$BUNDLE/lib" ]]; then
  # The bundle's programs load its libraries, and cuBLAS: the toolkit's, else the Python wheel's.
  CUDA_LIBS=$(dirname "$(command -v nvcc)")/../lib64
  WHEEL_LIBS=$(python3 -c 'import nvidia.cublas, os; print(os.path.join(nvidia.cublas.__path__[0], "lib"))' 2>/dev/null || true)
  export LD_LIBRARY_PATH="$PWD/$BUNDLE/lib:$CUDA_LIBS:${WHEEL_LIBS}:${LD_LIBRARY_PATH:-}"
fi
# ffn_gpu_test (GoogleTest) is built on the GPU host only where GoogleTest is installed; else
# the bundle's copy runs.
FFN_TEST="$BUILD/tests/ffn_gpu_test"
[[ -x "$FFN_TEST" ]] || FFN_TEST="$BUNDLE/bin/ffn_gpu_test"
if [[ ! -x "$BUILD/tests/ffn_gpu_test" && -x "$FFN_TEST" ]]; then
  log ""
  log "## CUDA FFN against the reference (ffn_gpu_test, prebuilt)"
  run_test ffn_gpu_test 240 20 "^\[  (PASSED|FAILED) |Failure|device:|SKIPPED" "$FFN_TEST"
fi

if command -v compute-sanitizer >/dev/null 2>&1 && [[ -x "$FFN_TEST" ]]; then
  log ""
  log "## compute-sanitizer memcheck (ffn_gpu_test)"
  timeout 240 compute-sanitizer --tool memcheck --error-exitcode 3 "$FFN_TEST" >"$OUT/memcheck.log" 2>&1
  mc=$?
  log "memcheck exit code: $mc"
  grep -E "ERROR SUMMARY|Invalid|PASSED|FAILED" "$OUT/memcheck.log" | head -10 | tee -a "$summary"
fi

if [[ -x "$BUNDLE/bin/cuda_backend_test" ]]; then
  export SPARSED_SOURCE_DIR="$PWD" SPARSED_PLUGIN_DIR="$PWD/$BUNDLE/lib"
  log ""
  log "## Every backend op x dtype x device against the reference (backend_ops_test, prebuilt)"
  run_test backend_ops_test 120 40 "^\[  (PASSED|FAILED|SKIPPED) |Failure|Expected|Which is|unavailable" \
    "$BUNDLE/bin/backend_ops_test"
  log ""
  log "## CUDA backend vs CPU backend (cuda_backend_test, prebuilt)"
  run_test cuda_backend_test 300 60 \
    "^\[  (PASSED|FAILED) |relative logit error|Failure|Expected|Which is|error|SKIPPED|device:" \
    "$BUNDLE/bin/cuda_backend_test"
  grep -E "step graphs:" "$OUT/cuda_backend_test.log" | head -4 | tee -a "$summary"
  if grep -qE "^\[  FAILED  \] CudaGraphs" "$OUT/cuda_backend_test.log"; then
    E2E_GRAPHS=""
    log "step graphs failed their test: the decode benchmark runs without them"
  fi
  if command -v compute-sanitizer >/dev/null 2>&1; then
    timeout 240 compute-sanitizer --tool memcheck --error-exitcode 3 "$BUNDLE/bin/cuda_backend_test" \
      --gtest_filter='CudaOps.*:*Batch*' >"$OUT/memcheck_backend.log" 2>&1
    log "memcheck (cuda_backend_test ops + batch invariance) exit code: $?"
    grep -E "ERROR SUMMARY" "$OUT/memcheck_backend.log" | head -3 | tee -a "$summary"
  fi
else
  log ""
  log "(no .gpu/bundle: the CPU-vs-CUDA model test and the decode benchmark were not run)"
fi

log ""
log "## FFN benchmark: union sparse vs dense cuBLAS"
"$BUILD/ffn_gpu_bench" $QUICK --csv "$OUT/ffn_gpu_bench.csv" >"$OUT/ffn_gpu_bench.md" 2>&1 || { rc=1; log "BENCHMARK FAILED (exit $?)"; }
cat "$OUT/ffn_gpu_bench.md" >> "$summary"
cat "$OUT/ffn_gpu_bench.md"

log ""
log "## Dense operations: our kernels vs cuBLAS; paged attention"
"$BUILD/ops_gpu_bench" $QUICK >"$OUT/ops_gpu_bench.md" 2>&1 || { rc=1; log "OPS BENCHMARK FAILED"; }
cat "$OUT/ops_gpu_bench.md" | tee -a "$summary"

if [[ -x "$BUNDLE/bin/decode_bench" ]]; then
  # Roofline bandwidth: the copy bandwidth ffn_gpu_bench measured (read + write bytes).
  bw=$(grep -oE "measured copy bandwidth [0-9.]+" "$OUT/ffn_gpu_bench.md" | grep -oE "[0-9.]+$" || echo 0)
  log ""
  log "## End-to-end decode on CUDA: LLaMA-2-7B shape, ${E2E_LAYERS:-8} layers, fatrelu ~11% active"
  t1=$(date +%s)
  (cd /tmp && timeout 420 "$OLDPWD/$BUNDLE/bin/decode_bench" --device cuda --preset llama2-7b \
      --layers "${E2E_LAYERS:-8}" --batches "${E2E_BATCHES:-1,2,4,8,16,32,64}" \
      --rounds "${E2E_ROUNDS:-3}" --steps 16 --cublas_baseline ${E2E_FALLBACK---fallback} \
      ${E2E_GRAPHS---graphs} --bandwidth_gbs "$bw") \
      >"$OUT/decode_bench.md" 2>"$OUT/decode_bench.log" || { rc=1; log "DECODE BENCHMARK FAILED"; tail -5 "$OUT/decode_bench.log" | tee -a "$summary"; }
  log "decode benchmark: $(( $(date +%s) - t1 )) s including writing the model"
  cat "$OUT/decode_bench.md" | tee -a "$summary"
fi
exit $rc
