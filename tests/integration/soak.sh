#!/usr/bin/env bash
# Soak: runs the chaos suite (tests/integration/chaos_test.py) again and again for a given time
# and reports how many rounds passed; the first failing round's output is kept. Not in CI.
# Usage: tests/integration/soak.sh SECONDS [BUILD_DIR]   (default build/)
set -uo pipefail
cd "$(dirname "$0")/../.."
duration="${1:?usage: soak.sh SECONDS [BUILD_DIR]}"
build="${2:-build}"
end=$(( $(date +%s) + duration ))
work="$(mktemp -d /tmp/sparsed_soak_XXXXXX)"
rounds=0 passed=0
while [ "$(date +%s)" -lt "$end" ]; do
  rounds=$((rounds + 1))
  if /usr/bin/python3 tests/integration/chaos_test.py --bin "$build/bin" --source . \
       --work "$work/round" > "$work/last.log" 2>&1; then
    passed=$((passed + 1))
  else
    cp "$work/last.log" "$work/failed_round_$rounds.log"
    echo "round $rounds failed: $work/failed_round_$rounds.log"
  fi
  echo "soak: $passed of $rounds rounds passed ($(( end - $(date +%s) )) s left)"
done
[ "$passed" -eq "$rounds" ]
