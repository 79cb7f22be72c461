#!/usr/bin/env bash
# Serving through the smg gateway, measured with a load tool people already use (GuideLLM, the
# OpenAI completions API, streaming), beside sparsed-bench straight to one daemon (sparsed.v1):
# throughput, TTFT/ITL/TPOT percentiles, goodput at a stated SLO, and the gateway's added latency
# per request — client-observed mean TTFT and end-to-end minus the daemons' own means over the
# same requests (/metrics before and after each run). Markdown on stdout.
#
# Load tool: GuideLLM from PyPI in its own venv (BENCH_VENV, default .venv-bench; it pulls
# PyTorch, so it is not part of the test venv); the gateway: the test venv's smg.
# Usage: bench/gateway_bench.sh [BUILD_DIR]   (default build/)
#   REPLICAS (2), RATES (4,8,16,32), REQUESTS per rate (64), POLICY (cache_aware),
#   MODEL (models/sparsed-tiny), PROMPT_LEN (32), OUTPUT_LEN (32), SLO (ttft_ms=200,tpot_ms=20)
set -euo pipefail
cd "$(dirname "$0")/.."
build="${1:-build}"
replicas="${REPLICAS:-2}"
rates="${RATES:-4,8,16,32}"
requests="${REQUESTS:-64}"
policy="${POLICY:-cache_aware}"
model="$(realpath "${MODEL:-models/sparsed-tiny}")"
plen="${PROMPT_LEN:-32}"
olen="${OUTPUT_LEN:-32}"
slo="${SLO:-ttft_ms=200,tpot_ms=20}"
venv="$(realpath -m "${BENCH_VENV:-.venv-bench}")"
if ! "$venv/bin/guidellm" --version >/dev/null 2>&1; then
  echo "installing GuideLLM into $venv (once)..." >&2
  /usr/bin/python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check "guidellm==0.8.1" >&2
fi
py=$(scripts/test-venv.sh)
smg="$(dirname "$py")/smg"
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ports=(); mports=(); workers=()
for i in $(seq "$replicas"); do
  p=$(freeport); m=$(freeport)
  "$build/bin/sparsed" --model "$model" --listen "127.0.0.1:$p" --metrics_listen "127.0.0.1:$m" \
    --kv_cache_mb 512 --max_waiting_requests 4096 --log_level warn 2>"$work/d$i.log" &
  pids+=($!); ports+=("$p"); mports+=("$m"); workers+=("grpc://127.0.0.1:$p")
done
for p in "${ports[@]}"; do
  for _ in $(seq 600); do
    "$build/bin/sparsed-cli" --server "127.0.0.1:$p" --timeout_s 1 health 2>/dev/null | grep -q SERVING && break
    sleep 0.2
  done
done
name=$(basename "$model")
gw=$(freeport); gm=$(freeport)
(cd "$work" && exec "$smg" launch --host 127.0.0.1 --port "$gw" --prometheus-host 127.0.0.1 \
  --prometheus-port "$gm" --policy "$policy" --worker-urls "${workers[@]}" >"$work/gateway.log" 2>&1) &
pids+=($!)
for _ in $(seq 300); do
  curl -sf "http://127.0.0.1:$gw/v1/models" 2>/dev/null | grep -q "\"$name\"" && break
  sleep 0.2
done
echo "## Through the smg gateway: $replicas replicas, policy $policy ($(nproc) CPUs, $(date -u +%Y-%m-%d))"
echo
echo "smg $("$py" -c 'import importlib.metadata as m; print(m.version("smg"))'), GuideLLM" \
  "$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("guidellm"))'):" \
  "OpenAI /v1/completions, streaming, Poisson arrivals, $requests requests per rate, synthetic" \
  "prompts of $plen tokens, $olen output tokens; model $name; goodput SLO $slo. Daemon columns:" \
  "mean TTFT / end-to-end as the daemons measured the same requests; gateway added = client" \
  "mean minus daemon mean (HTTP, tokenization, routing, detokenization, the extra hop)."
echo
echo "| load | req/s | out tok/s | TTFT mean / p50 / p90 / p99 ms | ITL p50 / p99 ms | TPOT p50 / p99 ms | E2E p50 / p99 ms | errors | goodput req/s (share) | daemon TTFT / E2E mean ms | gateway added TTFT / E2E ms |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
IFS=, read -ra rate_list <<<"$rates"
for r in "${rate_list[@]}"; do
  before=(); after=()
  for i in "${!mports[@]}"; do
    curl -s "http://127.0.0.1:${mports[$i]}/metrics" >"$work/before$i.txt"; before+=("$work/before$i.txt")
  done
  (cd "$work" && "$venv/bin/guidellm" run \
    --backend "kind=openai_http,target=http://127.0.0.1:$gw,model=$name,request_format=/v1/completions" \
    --profile "kind=poisson,rate=$r" --constraint "kind=max_requests,count=$requests" \
    --data "kind=synthetic_text,prompt_tokens=$plen,output_tokens=$olen" \
    --tokenizer "kind=huggingface_auto,model=$model" \
    --output "kind=json,path=$work/run.json" --disable-console >"$work/guidellm.log" 2>&1)
  for i in "${!mports[@]}"; do
    curl -s "http://127.0.0.1:${mports[$i]}/metrics" >"$work/after$i.txt"; after+=("$work/after$i.txt")
  done
  python3 bench/gateway_report.py "$r" "$work/run.json" "${before[@]}" -- "${after[@]}" --slo "$slo"
done
echo
echo "### sparsed-bench straight to one daemon (sparsed.v1), same load"
echo
tools/bench/sparsed-bench --server "127.0.0.1:${ports[0]}" --rate_sweep "$rates" --requests "$requests" \
  --warmup 2 --prompt_len "$plen" --output_len "$olen" --goodput "$slo" 2>/dev/null
