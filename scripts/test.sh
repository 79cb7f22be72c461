#!/usr/bin/env bash
# Builds sparsed and runs every test. Usage: scripts/test.sh [preset]   (default | asan | tsan)
# Tests labelled `long` (the training recipe against the shipped run's log, ~12 min on 2 cores)
# are left out; run them with `ctest --preset default -L long`. The container test (label
# `container`: builds and runs the CPU image with podman, as root) runs with the default preset
# only: the sanitizer presets would build the same image again. TSan leaves out the daemon's
# integration tests too (see below).
set -euo pipefail
cd "$(dirname "$0")/.."
preset="${1:-default}"
scripts/install-deps.sh
cmake --preset "$preset"
cmake --build --preset "$preset" -j"$(nproc)"
exclude=long
if [ "$preset" != default ]; then exclude="long|container"; fi
# Under TSan, not the tests that run the daemon (label integration): its gRPC callback API hands
# each call between threads inside Debian's libgrpc, which is not instrumented, so TSan reports
# every hand-off in gRPC's own header code (hundreds per run). The server's reactors keep their
# state under std::mutex and mark their own hand-offs (server/tsan_handoff.h); these tests run
# under the default and ASan+UBSan presets.
if [ "$preset" = tsan ]; then exclude="long|container|integration"; fi
ctest --preset "$preset" -j"$(nproc)" --timeout 600 -LE "$exclude"
