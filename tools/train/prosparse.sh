#!/usr/bin/env bash
# ProSparse's three steps at small scale, on the bundled SwiGLU twin (models/sparsed-tiny-swiglu):
#   relu         activation substitution (SiLU -> ReLU) and continued training, no penalty;
#   prosparse    activation substitution and the staged L1 schedule (warm-up stage, then ramps);
#   shift        FATReLU threshold shifting of `prosparse` at inference, for each t of $THRESHOLDS;
#   fatrelu-ft   a short fine-tune of `prosparse` with FATReLU at the chosen $THRESHOLD.
# Usage: tools/train/prosparse.sh WORKDIR                      (up to the shift's measurements)
#        THRESHOLD=t tools/train/prosparse.sh WORKDIR [--export] (then the fine-tune at t)
#   WORKDIR gets corpus/, one directory per run and eval.jsonl (every step measured on the whole
#   held-out text; a label already there is not measured again). Runs one after another, one
#   thread each; each resumes from its checkpoint.
#   --export writes models/sparsed-tiny-prosparse (sparsellama, fatrelu at $THRESHOLD, from
#   fatrelu-ft), its reference fixture (tests/data/) and the runs' logs (models/training/prosparse/).
# Needs what tools/train/recipe.sh needs (scripts/install-deps.sh --train).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
work="${1:?usage: prosparse.sh WORKDIR [--export]}"
py=/usr/bin/python3
THRESHOLDS="${THRESHOLDS:-0.01 0.02 0.05 0.1}"
THRESHOLD="${THRESHOLD:-}"
mkdir -p "$work"
[ -f "$work/corpus/train.txt" ] || "$py" "$here/build_corpus.py" --out "$work/corpus"
tok="$repo/models/sparsed-tiny-swiglu/tokenizer.model"
twin="$repo/models/sparsed-tiny-swiglu"
# Continued training sized for the project's 2-core machine (Debian's PyTorch: ~4 s a step of
# this size on one thread): 200 steps of 4 x 128 tokens (102 k tokens), peak learning rate 1e-3,
# 10 warm-up steps, cosine to 10%; seed 1234, one thread. Held-out evaluation in windows of 256
# tokens and max_position_embeddings 512, as the bundled models.
common=(--corpus "$work/corpus" --tokenizer "$tok" --threads 1 --seed 1234 --steps 200 --batch 4
        --seq 128 --eval-seq 256 --max-positions 512 --lr 1e-3 --warmup 10 --eval-every 100000
        --checkpoint-every 50)
run() {  # name, arguments...
  local name="$1"; shift
  "$py" "$here/train.py" "${common[@]}" "$@" --out "$work/$name" 2> >(sed -u "s/^/[$name] /" >&2)
}
run relu --init-from "$twin" --activation relu
# Warm-up stage at 5e-5 for 40 steps; ramps to 2e-4 and 5e-4 (40 steps each); a constant stage
# at 5e-4 (40 steps); held at 5e-4 for the last 40.
run prosparse --init-from "$twin" --activation relu --l1-warmup 5e-5 --l1-warmup-steps 40 \
  --l1-peaks 2e-4,5e-4,5e-4 --l1-stage-steps 40,40,40

evals="$work/eval.jsonl"
touch "$evals"
measured() { grep -q "\"label\": \"$1\"" "$evals"; }
measure() {  # label, model, evaluate.py arguments...
  local label="$1" model="$2"; shift 2
  measured "$label" && return 0
  "$py" "$here/evaluate.py" --model "$model" --corpus "$work/corpus" --tokenizer "$tok" "$@" |
    "$py" -c "import json,sys; r=json.load(sys.stdin); r['label']=sys.argv[1]; print(json.dumps(r))" \
      "$label" >> "$evals"
}
logged() {  # label, run: the held-out evaluation the run logged at its last step
  measured "$1" && return 0
  "$py" -c "import json,sys; r=[json.loads(l) for l in open(sys.argv[2]) if 'heldout_ppl' in l][-1]
r['label']=sys.argv[1]; print(json.dumps(r))" "$1" "$work/$2/log.jsonl" >> "$evals"
}
measure swiglu "$twin"
logged relu relu
logged prosparse prosparse
for t in $THRESHOLDS; do
  measure "prosparse+fatrelu-$t" "$work/prosparse/checkpoint.pt" --activation fatrelu \
    --act-threshold "$t"
done
measure sparsed-tiny "$repo/models/sparsed-tiny"
if [ -z "$THRESHOLD" ]; then
  cat "$evals"
  echo "prosparse: pick t and run again with THRESHOLD=t for the fine-tune and export" >&2
  exit 0
fi
# FATReLU fine-tune: 40 steps from `prosparse` at peak learning rate 2e-4, the L1 factor held at
# the last peak.
"$py" "$here/train.py" "${common[@]}" --steps 40 --lr 2e-4 --warmup 5 \
  --init-from "$work/prosparse/checkpoint.pt" --activation fatrelu --act-threshold "$THRESHOLD" \
  --l1 5e-4 --l1-start 0 --l1-end 0 --out "$work/fatrelu-ft" 2> >(sed -u "s/^/[fatrelu-ft] /" >&2)
logged "fatrelu-ft-$THRESHOLD" fatrelu-ft
cat "$evals"

if [ "${2:-}" = --export ]; then
  # The shift alone is exported: at this budget the fine-tune after it lost perplexity and
  # sparsity (models/README.md).
  "$py" "$here/hf_export.py" --checkpoint "$work/prosparse/checkpoint.pt" --tokenizer "$tok" \
    --model-type sparsellama --activation fatrelu --act-threshold "$THRESHOLD" \
    --out "$repo/models/sparsed-tiny-prosparse"
  "$py" "$here/reference_logits.py" --model "$repo/models/sparsed-tiny-prosparse" \
    --out "$repo/tests/data/sparsed-tiny-prosparse-reference"
  for run in relu prosparse fatrelu-ft; do
    mkdir -p "$repo/models/training/prosparse/$run"
    cp "$work/$run/run.json" "$work/$run/log.jsonl" "$repo/models/training/prosparse/$run/"
  done
  cp "$evals" "$repo/models/training/prosparse/eval.jsonl"
fi
