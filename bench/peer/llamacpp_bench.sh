#!/usr/bin/env bash
# llama.cpp on the CPU, timed beside decode_bench (docs/BENCHMARKS.md, "Against llama.cpp"):
# a TinyLlama-1.1B-shaped random-weight llama (bench/peer/llamacpp_model.py), F16 / Q8_0 / Q4_0.
# Usage: PEER=DIR bench/peer/llamacpp_bench.sh   (DIR holds llama.cpp/build/bin and models/)
# Knobs (env):  THREADS=2 REPS=3 NTG=32 NPL=1,4,16,64 NICE=19 OUTDIR=$PEER/results/<timestamp>
# Raw tool outputs are kept in $OUTDIR. Takes ~5-10 min on 2 (shared) cores.
set -euo pipefail

PEER=${PEER:?set PEER to the folder holding llama.cpp/build/bin and models/}
BIN=${BIN:-$PEER/llama.cpp/build/bin}
MODELS=${MODELS:-$PEER/models}
THREADS=${THREADS:-2}
REPS=${REPS:-3}          # llama-bench repetitions (plus 1 warmup run, llama-bench default)
NPP=${NPP:-8}            # batched-bench prompt tokens per sequence
NTG=${NTG:-32}           # batched-bench generated tokens per sequence
NPL=${NPL:-1,4,16,64}    # batched-bench parallel sequences
CTX=${CTX:-8192}
NICE=${NICE:-19}
OUTDIR=${OUTDIR:-$PEER/results/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUTDIR"

TYPES=(f16 q8_0 q4_0)
declare -A FILE=(
  [f16]=$MODELS/tinyllama-shape-f16.gguf
  [q8_0]=$MODELS/tinyllama-shape-q8_0-pure.gguf
  [q4_0]=$MODELS/tinyllama-shape-q4_0-pure.gguf
)
for t in "${TYPES[@]}"; do [ -f "${FILE[$t]}" ] || { echo "missing model ${FILE[$t]}" >&2; exit 1; }; done
for b in llama-bench llama-batched-bench; do [ -x "$BIN/$b" ] || { echo "missing $BIN/$b" >&2; exit 1; }; done

PY=$(command -v python3)
[ -x "$PEER/venv/bin/python" ] && PY=$PEER/venv/bin/python

t0=$(date +%s)
CMDS=()
for t in "${TYPES[@]}"; do
  m=${FILE[$t]}
  c1=(nice -n "$NICE" "$BIN/llama-bench" -m "$m" -t "$THREADS" -p 512 -n 64 -r "$REPS" -o json)
  c2=(nice -n "$NICE" "$BIN/llama-batched-bench" -m "$m" -t "$THREADS" -c "$CTX" -npp "$NPP" -ntg "$NTG" -npl "$NPL" --output-format jsonl)
  CMDS+=("${c1[*]}" "${c2[*]}")
  echo "[$(date +%T)] $t: llama-bench" >&2
  "${c1[@]}" > "$OUTDIR/bench_$t.json" 2> "$OUTDIR/bench_$t.log"
  echo "[$(date +%T)] $t: llama-batched-bench" >&2
  "${c2[@]}" > "$OUTDIR/batched_$t.jsonl" 2> "$OUTDIR/batched_$t.log"
done
t1=$(date +%s)

{
echo "## llama.cpp CPU benchmark — TinyLlama-1.1B-shaped random llama, $THREADS threads"
echo
echo "- llama.cpp: $("$BIN/llama-bench" --version 2>&1 | head -1)"
echo "- host: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); load avg at end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "- date: $(date -Is); wall time: $((t1 - t0)) s; raw outputs: $OUTDIR"
echo
"$PY" - "$OUTDIR" "$NPL" "$NTG" "${TYPES[@]}" <<'EOF'
import json, sys
outdir, npl, ntg, types = sys.argv[1], [int(x) for x in sys.argv[2].split(",")], sys.argv[3], sys.argv[4:]
res = {}
for t in types:
    r = {}
    for row in json.load(open(f"{outdir}/bench_{t}.json")):
        key = "pp" if row["n_prompt"] > 0 and row["n_gen"] == 0 else "tg"
        r[key] = (row["avg_ts"], row["stddev_ts"])
    for line in open(f"{outdir}/batched_{t}.jsonl"):
        line = line.strip()
        if line.startswith("{"):
            d = json.loads(line)
            r[("B", d["pl"])] = d["speed_tg"]
    res[t] = r
hdr = ["metric (tok/s)"] + [t.upper() for t in types]
print("| " + " | ".join(hdr) + " |")
print("|" + "|".join(["---"] + ["---:"] * len(types)) + "|")
for b in npl:
    print(f"| decode B={b} (batched-bench S_TG, tg{ntg}) | " +
          " | ".join(f"{res[t].get(('B', b), float('nan')):.2f}" for t in types) + " |")
print("| decode B=1 (llama-bench tg64) | " +
      " | ".join("%.2f ± %.2f" % res[t]["tg"] for t in types) + " |")
print("| prefill 512 (llama-bench pp512) | " +
      " | ".join("%.2f ± %.2f" % res[t]["pp"] for t in types) + " |")
EOF
echo
echo "Commands:"
echo '```'
printf '%s\n' "${CMDS[@]}"
echo '```'
} | tee "$OUTDIR/report.md"
