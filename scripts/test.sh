#!/usr/bin/env bash
# Builds sparsed and runs every test. Usage: scripts/test.sh [preset]   (default | asan | tsan)
# Tests labelled `long` (the training recipe against the shipped run's log, ~12 min on 2 cores)
# are left out; run them with `ctest --preset default -L long`. The container test (label
# `container`: builds and runs the CPU image with podman, as root) runs with the default preset
# only: the sanitizer presets would build the same image again.
set -euo pipefail
cd "$(dirname "$0")/.."
preset="${1:-default}"
scripts/install-deps.sh
cmake --preset "$preset"
cmake --build --preset "$preset" -j"$(nproc)"
exclude=long
if [ "$preset" != default ]; then exclude="long|container"; fi
ctest --preset "$preset" -j"$(nproc)" --timeout 600 -LE "$exclude"
