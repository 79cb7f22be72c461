#!/usr/bin/env bash
# Builds sparsed and runs every test. Usage: scripts/test.sh [preset]   (default | asan | tsan)
# Tests labelled `long` (the training recipe against the shipped run's log, ~12 min on 2 cores)
# are left out; run them with `ctest --preset default -L long`.
set -euo pipefail
cd "$(dirname "$0")/.."
preset="${1:-default}"
scripts/install-deps.sh
cmake --preset "$preset"
cmake --build --preset "$preset" -j"$(nproc)"
ctest --preset "$preset" -j"$(nproc)" --timeout 600 -LE long
