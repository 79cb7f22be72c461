#!/usr/bin/env bash
# Builds sparsed and serves a model on 127.0.0.1:50051 (gRPC) and 127.0.0.1:9464 (/metrics).
# Usage: scripts/serve.sh [--model DIR] [other sparsed flags]
# Without --model it serves the bundled default model, models/sparsed-tiny (models/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh build
cmake --preset default >/dev/null
cmake --build --preset default -j"$(nproc)" --target sparsed sparsed-cli
args=("$@")
if [[ " $* " != *" --model"* ]]; then
  args=(--model models/sparsed-tiny "${args[@]}")
fi
echo "try: build/bin/sparsed-cli stream \"And the king said unto his servants,\"" >&2
exec build/bin/sparsed "${args[@]}"
