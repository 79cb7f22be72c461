#!/usr/bin/env bash
# Makes the test-only Python environment: Triton's KServe v2 client (tritonclient[grpc], from PyPI),
# an independent client of the daemon's Open Inference Protocol service; llama.cpp's GGUF
# writer (gguf, with numpy and sentencepiece), an independent writer of the files the daemon
# loads; the smg gateway (smg, with its published protocol stubs smg-grpc-proto), the OpenAI SDK
# (openai) that clients call it with, and Hugging Face's tokenizers/transformers, which
# tools/make_hf_tokenizer.py and its check use. Idempotent; prints the environment's python. Usage: scripts/test-venv.sh [DIR]   (default .venv-test, ignored by git)
set -euo pipefail
cd "$(dirname "$0")/.."
dir="$(realpath -m "${1:-.venv-test}")"
# Tests run in parallel (ctest -j) and several call this script: one makes the venv, the others
# wait for it instead of removing it under its feet.
exec 9>"$dir.lock"
flock 9
if ! "$dir/bin/python" -c "import tritonclient.grpc, gguf, sentencepiece, openai, smg, smg_grpc_proto, tokenizers, transformers" >/dev/null 2>&1; then
  rm -rf "$dir"
  /usr/bin/python3 -m venv "$dir" >&2
  for attempt in 1 2 3; do  # PyPI over a shared network: retry a failed install
    "$dir/bin/pip" install --quiet --disable-pip-version-check "tritonclient[grpc]" gguf==0.19.0 numpy \
      sentencepiece smg==1.13.0 smg-grpc-proto==0.4.28 "openai>=1.0" "tokenizers>=0.20" \
      "transformers>=4.45" >&2 && break
    [ "$attempt" = 3 ] && exit 1
    sleep 10
  done
fi
echo "$dir/bin/python"
