#!/usr/bin/env bash
# One-call GPU check. The GPU host builds nothing: every program comes prebuilt in .gpu/bundle
# (tests/gpu/make_bundle.sh, run on the build machine; copy .gpu/bundle with the source tree).
# Runs the CUDA FFN test and compute-sanitizer's memcheck, every backend op against the reference,
# the CUDA backend against the CPU backend, the GPU benchmarks and the end-to-end decode
# benchmark, and writes a summary under $OUT.
# Usage (repository root): OUT=/some/dir tests/gpu/device_check.sh [--quick]
# Environment: E2E_LAYERS (decoder layers of the LLaMA-2-7B-shape decode model, default 8),
# E2E_BATCHES (default 1,2,4,8,16,32,64), E2E_ROUNDS (default 3), E2E_FALLBACK (default
# --fallback; empty drops the cuBLAS-fallback engine), E2E_GRAPHS (default --graphs: an engine
# with step graphs; empty drops it).
set -uo pipefail
OUT="${OUT:-/tmp/sparsed-gpu-out}"
QUICK="${1:-}"
BUNDLE=.gpu/bundle
BUNDLE_BINS=(ffn_gpu_test backend_ops_test cuda_backend_test ffn_gpu_bench ops_gpu_bench decode_bench)

missing=()
for b in "${BUNDLE_BINS[@]}"; do
  [[ -x "$BUNDLE/bin/$b" ]] || missing+=("bin/$b")
done
[[ -f "$BUNDLE/lib/libsparsed_cuda.so" ]] || missing+=("lib/libsparsed_cuda.so")
if (( ${#missing[@]} )); then
  echo "error: $BUNDLE is missing or incomplete (no ${missing[*]})." >&2
  echo "Run tests/gpu/make_bundle.sh on the build machine (repository root) and copy .gpu/bundle" >&2
  echo "here with the source tree; the GPU host builds nothing." >&2
  exit 1
fi

mkdir -p "$OUT"
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
  log "exit code: $code$([[ $code -eq 77 ]] && echo " (skipped: no usable CUDA device)")"
  [[ $code -eq 0 ]] || rc=1
  grep -E "$pattern" "$OUT/$name.log" | head -"$lines" | tee -a "$summary"
}

export PATH=/usr/local/cuda/bin:$PATH
log "# sparsed GPU check $(date -u +%FT%TZ)"
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv,noheader 2>&1 | sed 's/^/gpu: /' | tee -a "$summary"
else
  log "gpu: nvidia-smi not found"
fi
if command -v nvcc >/dev/null 2>&1; then
  nvcc --version | tail -1 | sed 's/^/nvcc: /' | tee -a "$summary"
  CUDA_LIBS=$(dirname "$(command -v nvcc)")/../lib64
else
  log "nvcc: not found"
  CUDA_LIBS=/usr/local/cuda/lib64
fi
log "bundle: $(du -sh "$BUNDLE" | cut -f1), built $(date -u -r "$BUNDLE/bin/ffn_gpu_test" +%FT%TZ)"

# The bundle's programs load its libraries, and cuBLAS: the toolkit's, else the Python wheel's.
WHEEL_LIBS=$(python3 -c 'import nvidia.cublas, os; print(os.path.join(nvidia.cublas.__path__[0], "lib"))' 2>/dev/null || true)
export LD_LIBRARY_PATH="$PWD/$BUNDLE/lib:$CUDA_LIBS:${WHEEL_LIBS}:${LD_LIBRARY_PATH:-}"
export SPARSED_SOURCE_DIR="$PWD" SPARSED_PLUGIN_DIR="$PWD/$BUNDLE/lib"

rc=0
log ""
log "## CUDA FFN against the reference (ffn_gpu_test)"
run_test ffn_gpu_test 240 20 "^\[  (PASSED|FAILED) |Failure|device:|SKIPPED" "$BUNDLE/bin/ffn_gpu_test"

if command -v compute-sanitizer >/dev/null 2>&1; then
  log ""
  log "## compute-sanitizer memcheck (ffn_gpu_test)"
  timeout 240 compute-sanitizer --tool memcheck --error-exitcode 3 "$BUNDLE/bin/ffn_gpu_test" >"$OUT/memcheck.log" 2>&1
  mc=$?
  log "memcheck exit code: $mc"
  grep -E "ERROR SUMMARY|Invalid|PASSED|FAILED" "$OUT/memcheck.log" | head -10 | tee -a "$summary"
else
  log ""
  log "(compute-sanitizer not found: memcheck not run)"
fi

log ""
log "## Every backend op x dtype x device against the reference (backend_ops_test)"
run_test backend_ops_test 120 40 "^\[  (PASSED|FAILED|SKIPPED) |Failure|Expected|Which is|unavailable" \
  "$BUNDLE/bin/backend_ops_test"
log ""
log "## CUDA backend vs CPU backend (cuda_backend_test)"
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

log ""
log "## FFN benchmark: union sparse vs dense cuBLAS"
"$BUNDLE/bin/ffn_gpu_bench" $QUICK --csv "$OUT/ffn_gpu_bench.csv" >"$OUT/ffn_gpu_bench.md" 2>&1
code=$?
[[ $code -eq 0 ]] || { rc=1; log "BENCHMARK FAILED (exit $code)"; }
cat "$OUT/ffn_gpu_bench.md" >> "$summary"
cat "$OUT/ffn_gpu_bench.md"

log ""
log "## Dense operations: our kernels vs cuBLAS; paged attention"
"$BUNDLE/bin/ops_gpu_bench" $QUICK >"$OUT/ops_gpu_bench.md" 2>&1
code=$?
[[ $code -eq 0 ]] || { rc=1; log "OPS BENCHMARK FAILED (exit $code)"; }
cat "$OUT/ops_gpu_bench.md" | tee -a "$summary"

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
exit $rc
