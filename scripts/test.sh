#!/usr/bin/env bash
# Builds sparsed and runs every test. Usage: scripts/test.sh [preset]   (default | asan | tsan)
set -euo pipefail
cd "$(dirname "$0")/.."
preset="${1:-default}"
scripts/install-deps.sh
cmake --preset "$preset"
cmake --build --preset "$preset" -j"$(nproc)"
ctest --preset "$preset" -j"$(nproc)" --timeout 600
