#!/usr/bin/env bash
# Builds sparsed and serves a model on 127.0.0.1:50051 (gRPC) and 127.0.0.1:9464 (/metrics).
# Usage: scripts/serve.sh [--model DIR] [other sparsed flags]
# Without --model it serves the bundled default model (models/sparsed-tiny). Until that model is
# shipped, a synthetic stand-in (random weights, ReLU², ~15% active neurons) is made under build/.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh build
cmake --preset default >/dev/null
cmake --build --preset default -j"$(nproc)" --target sparsed sparsed-cli sparsed-make-model
args=("$@")
if [[ " $* " != *" --model"* ]]; then
  model=models/sparsed-tiny
  if [ ! -f "$model/config.json" ]; then
    model=build/models/synthetic-small
    if [ ! -f "$model/config.json" ]; then
      echo "the bundled model is not shipped yet: making a synthetic stand-in at $model" >&2
      build/bin/sparsed-make-model --out "$model" --preset small --activation relu2 --active_ratio 0.15 2>/dev/null
    fi
  fi
  args=(--model "$model" "${args[@]}")
fi
echo "try: build/bin/sparsed-cli stream Hello" >&2
exec build/bin/sparsed "${args[@]}"
