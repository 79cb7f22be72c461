#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan+UBSan) and runs each for a while on its seed corpus.
# Usage: scripts/fuzz.sh [seconds per target, default 60]
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"
cmake --preset fuzz >/dev/null
cmake --build build-fuzz --target fuzz_safetensors fuzz_gguf fuzz_config fuzz_sparsity fuzz_oip
status=0
for t in safetensors gguf config sparsity oip; do
  work="build-fuzz/corpus-$t"
  mkdir -p "$work"
  echo "fuzzing $t for ${secs}s"
  rc=0
  "build-fuzz/fuzz/fuzz_$t" -max_total_time="$secs" -max_len=4096 -print_final_stats=1 \
    -artifact_prefix="build-fuzz/$t-" "$work" "tests/fuzz/corpus/$t" >"build-fuzz/fuzz-$t.log" 2>&1 || rc=$?
  grep -E "stat::number_of_executed_units|ERROR|SUMMARY" "build-fuzz/fuzz-$t.log" || true
  if [ "$rc" != 0 ]; then
    echo "fuzz_$t failed (exit $rc); see build-fuzz/fuzz-$t.log and build-fuzz/$t-crash-*"
    tail -30 "build-fuzz/fuzz-$t.log"
    status=1
  fi
done
exit $status
