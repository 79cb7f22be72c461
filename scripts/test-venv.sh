#!/usr/bin/env bash
# Makes the test-only Python environment: Triton's KServe v2 client (tritonclient[grpc], from PyPI),
# an independent client of the daemon's Open Inference Protocol service; and llama.cpp's GGUF
# writer (gguf, with numpy and sentencepiece), an independent writer of the files the daemon
# loads. Idempotent; prints the environment's python. Usage: scripts/test-venv.sh [DIR]   (default .venv-test, ignored by git)
set -euo pipefail
cd "$(dirname "$0")/.."
dir="$(realpath -m "${1:-.venv-test}")"
if ! "$dir/bin/python" -c "import tritonclient.grpc, gguf, sentencepiece" >/dev/null 2>&1; then
  rm -rf "$dir"
  /usr/bin/python3 -m venv "$dir" >&2
  for attempt in 1 2 3; do  # PyPI over a shared network: retry a failed install
    "$dir/bin/pip" install --quiet --disable-pip-version-check "tritonclient[grpc]" gguf==0.19.0 numpy \
      sentencepiece >&2 && break
    [ "$attempt" = 3 ] && exit 1
    sleep 10
  done
fi
echo "$dir/bin/python"
