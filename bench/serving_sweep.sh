#!/usr/bin/env bash
# Rate sweeps with sparsed-bench against the daemon, exact vs off, on the bundled model and on a
# synthetic TinyLlama-1.1B-shape FATReLU model (written once to bench-models/): the knee of the
# throughput curve and goodput at a stated SLO. Markdown on stdout.
# Usage: bench/serving_sweep.sh [BUILD_DIR]   (default build/)
set -euo pipefail
cd "$(dirname "$0")/.."
build="${1:-build}"
big=bench-models/tinyllama-1.1b-fatrelu-a11-skew2-tok
if [ ! -f "$big/tokenizer.model" ]; then
  echo "writing $big (once)..." >&2
  "$build/bin/sparsed-make-model" --out "$big" --preset tinyllama-1.1b --activation fatrelu \
    --active_ratio 0.11 --skew 2 >&2
fi
sweep() {  # model mode rates requests output_len slos
  local port mport pid
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  mport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  "$build/bin/sparsed" --model "$1" --sparsity "$2" --listen "127.0.0.1:$port" \
    --metrics_listen "127.0.0.1:$mport" --kv_cache_mb 1024 --max_waiting_requests 4096 \
    --log_level warn 2>/dev/null &
  pid=$!
  for _ in $(seq 600); do
    "$build/bin/sparsed-cli" --server "127.0.0.1:$port" --timeout_s 1 health 2>/dev/null | grep -q SERVING && break
    sleep 0.2
  done
  echo "### $(basename "$1"), --sparsity $2"
  echo
  tools/bench/sparsed-bench --server "127.0.0.1:$port" --rate_sweep "$3" --requests "$4" --warmup 2 \
    --prompt_len 16:64 --output_len "$5" --goodput "$6" --metrics_url "http://127.0.0.1:$mport/metrics" 2>/dev/null
  echo
  kill "$pid"; wait "$pid" || true
}
echo "## sparsed-bench rate sweeps ($(nproc) CPUs, $(date -u +%Y-%m-%d))"
echo
for mode in exact off; do
  sweep models/sparsed-tiny "$mode" 8,16,32,64,128 64 32 ttft_ms=200,tpot_ms=20
done
for mode in exact off; do
  sweep "$big" "$mode" 0.5,1,2,4 16 32 ttft_ms=3000,tpot_ms=250
done
