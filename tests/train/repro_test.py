#!/usr/bin/env python3
"""The bundled model's training recipe is deterministic and resumable.

Trains the shipped sparse model's configuration (its run.json) for a few steps twice: once
straight through, once stopped half-way and resumed from the checkpoint. The two loss curves
must be bitwise equal, and both must match the first steps of the shipped run's log (exactly on
the machine that trained it; within a small relative tolerance on another CPU, whose BLAS
kernels may round differently).

Exit 77 (skipped) when python3-torch or the corpus sources are missing.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys

STEPS = 20
CROSS_MACHINE_RTOL = 2e-2


def losses(log):
    with open(log) as f:
        return {r["step"]: r["loss"] for r in map(json.loads, f) if "loss" in r}


def train(source, work, run_args, out, stop_after):
    args = [sys.executable, os.path.join(source, "tools/train/train.py"),
            "--corpus", os.path.join(work, "corpus"),
            "--tokenizer", os.path.join(source, "models/sparsed-tiny/tokenizer.model"),
            "--out", out, "--stop-after", str(stop_after)]
    skip = {"corpus", "tokenizer", "out", "stop_after", "device"}
    for key, value in run_args.items():
        if key not in skip:
            args += ["--" + key.replace("_", "-"), str(value)]
    args += ["--device", "cpu", "--eval-every", "100000"]
    subprocess.run(args, check=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--source", required=True)
    p.add_argument("--work", required=True)
    a = p.parse_args()
    try:
        import torch  # noqa: F401
        import sentencepiece  # noqa: F401
    except ImportError as e:
        print(f"SKIP: {e}")
        return 77
    if shutil.which("bible") is None or not os.path.isdir("/usr/share/wordnet"):
        print("SKIP: bible-kjv or wordnet-base not installed")
        return 77
    shipped = os.path.join(a.source, "models/training/relu2-l1")
    with open(os.path.join(shipped, "run.json")) as f:
        run_args = json.load(f)["args"]
    shutil.rmtree(a.work, ignore_errors=True)
    os.makedirs(a.work)
    subprocess.run([sys.executable, os.path.join(a.source, "tools/train/build_corpus.py"),
                    "--out", os.path.join(a.work, "corpus")], check=True)

    straight = os.path.join(a.work, "straight")
    resumed = os.path.join(a.work, "resumed")
    train(a.source, a.work, run_args, straight, STEPS)
    train(a.source, a.work, run_args, resumed, STEPS // 2)
    train(a.source, a.work, run_args, resumed, STEPS)

    one, two = losses(os.path.join(straight, "log.jsonl")), losses(os.path.join(resumed, "log.jsonl"))
    ref = losses(os.path.join(shipped, "log.jsonl"))
    failures = 0
    print("step  straight            resumed             shipped log")
    for step in sorted(one):
        print(f"{step:4d}  {one[step]:.15f}  {two.get(step, float('nan')):.15f}  "
              f"{ref.get(step, float('nan')):.15f}")
        if two.get(step) != one[step]:
            print(f"FAIL: step {step}: resumed run differs from the straight run")
            failures += 1
        if step in ref and abs(ref[step] - one[step]) > CROSS_MACHINE_RTOL * abs(ref[step]):
            print(f"FAIL: step {step}: differs from the shipped log beyond {CROSS_MACHINE_RTOL}")
            failures += 1
    if len(one) < STEPS // 10 or sorted(one) != sorted(two):
        print("FAIL: the runs logged different steps")
        failures += 1
    exact = all(ref.get(s) == one[s] for s in one)
    print("matches the shipped log bitwise" if exact else "matches the shipped log within tolerance")
    print("PASS" if not failures else f"{failures} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
