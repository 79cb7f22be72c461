#!/usr/bin/env bash
# The bundled models' recipe: corpus, tokenizer, the three training runs, export.
# Usage: tools/train/recipe.sh WORKDIR [--export]
#   WORKDIR gets corpus/, tokenizer.model and one directory per run (checkpoints, logs).
#   Runs train in parallel, one thread each, and resume from their checkpoints when restarted.
#   --export writes models/sparsed-tiny (the L1-penalised ReLU² model) and models/sparsed-tiny-swiglu,
#   their reference-logits fixtures (tests/data/), the runs' logs and summary (models/training/)
#   and the held-out text (models/corpus/).
# Needs: bible-kjv, wordnet-base, sentencepiece, python3-sentencepiece, python3-torch
# (scripts/install-deps.sh --train installs them).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="${1:?usage: recipe.sh WORKDIR [--export]}"
py=/usr/bin/python3
mkdir -p "$work"

if [ ! -f "$work/corpus/train.txt" ]; then
  "$py" "$here/build_corpus.py" --out "$work/corpus"
fi
if [ ! -f "$work/tokenizer.model" ]; then
  spm_train --input="$work/corpus/train.txt" --model_prefix="$work/tokenizer" \
    --vocab_size=4096 --model_type=bpe --byte_fallback=true --split_digits=true \
    --character_coverage=0.9995 --max_sentence_length=200000 --num_threads=1 \
    --input_sentence_size=0 --minloglevel=2
fi

common=(--corpus "$work/corpus" --tokenizer "$work/tokenizer.model" --threads 1 --seed 1234)
declare -A runs=(
  [swiglu]="--activation silu"
  [relu2]="--activation relu2"
  [relu2-l1]="--activation relu2 --l1 1.5e-3"
)
pids=()
for name in "${!runs[@]}"; do
  # shellcheck disable=SC2086
  "$py" "$here/train.py" "${common[@]}" ${runs[$name]} --out "$work/$name" \
    2> >(sed -u "s/^/[$name] /" >&2) &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done
echo "recipe: all runs finished; summary:" >&2
"$py" "$here/summarize.py" "$work" >&2

if [ "${2:-}" = --export ]; then
  repo="$(cd "$here/../.." && pwd)"
  export_model() {  # run name, model directory name
    "$py" "$here/hf_export.py" --checkpoint "$work/$1/checkpoint.pt" \
      --tokenizer "$work/tokenizer.model" --out "$repo/models/$2"
    "$py" "$here/reference_logits.py" --model "$repo/models/$2" \
      --out "$repo/tests/data/$2-reference"
  }
  export_model relu2-l1 sparsed-tiny
  export_model swiglu sparsed-tiny-swiglu
  for run in relu2-l1 relu2 swiglu; do
    mkdir -p "$repo/models/training/$run"
    cp "$work/$run/run.json" "$work/$run/log.jsonl" "$repo/models/training/$run/"
  done
  "$py" "$here/summarize.py" "$work" --plot "$repo/models/training/curves.png" \
    > "$repo/models/training/summary.md"
  mkdir -p "$repo/models/corpus"
  cp "$work/corpus/heldout.txt" "$work/corpus/corpus.json" "$repo/models/corpus/"
  echo "recipe: exported models/sparsed-tiny, models/sparsed-tiny-swiglu and their fixtures" >&2
fi
