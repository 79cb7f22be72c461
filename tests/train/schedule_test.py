#!/usr/bin/env python3
"""The L1 schedules of tools/train/train.py (CTest `train.l1_schedule`).

ProSparse's staged schedule: a constant warm-up stage at lambda_1 > 0, then per stage a sine ramp
eta = (sin(-pi/2 + pi * progress) + 1) / 2 from the previous peak to the stage's peak (constant
when a stage repeats the peak), held at the last peak afterwards. The equal-stage ramp of the
shipped run is unchanged. train.py refuses a staged schedule without a warm-up stage.

Exit 77 (skipped) when python3-torch is missing (train.py imports it).
"""
import math
import os
import subprocess
import sys
from types import SimpleNamespace

HERE = os.path.dirname(os.path.abspath(__file__))
TRAIN_DIR = os.path.join(HERE, "..", "..", "tools", "train")


def main():
    try:
        import torch  # noqa: F401
        import sentencepiece  # noqa: F401
    except ImportError as e:
        print(f"SKIP: {e}")
        return 77
    sys.path.insert(0, TRAIN_DIR)
    import train

    failures = []

    def check(name, got, want, tol=1e-15):
        ok = abs(got - want) <= tol * max(1.0, abs(want))
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {got!r} (want {want!r})")
        if not ok:
            failures.append(name)

    # The ramp's shape.
    check("eta(0)", train.sine_eta(0.0), 0.0)
    check("eta(1/4)", train.sine_eta(0.25), (1 - math.sqrt(0.5)) / 2, 1e-12)
    check("eta(1/2)", train.sine_eta(0.5), 0.5, 1e-12)
    check("eta(1)", train.sine_eta(1.0), 1.0)

    # Warm-up 1e-4 for 10 steps; ramp to 1e-3 over 20; constant stage repeating 1e-3 for 10;
    # ramp to 3e-3 over 40; then held.
    w, ws, peaks, lens = 1e-4, 10, [1e-3, 1e-3, 3e-3], [20, 10, 40]
    lam = [train.staged_l1_factor(s, w, ws, peaks, lens) for s in range(100)]
    for s in range(10):
        check(f"warm-up step {s}", lam[s], 1e-4)
    check("stage 1 starts at the warm-up factor", lam[10], 1e-4)
    check("stage 1 middle", lam[20], 1e-4 + 0.5 * (1e-3 - 1e-4), 1e-12)
    check("stage 1 quarter", lam[15], 1e-4 + (1 - math.sqrt(0.5)) / 2 * (1e-3 - 1e-4), 1e-12)
    for s in range(30, 40):
        check(f"constant stage step {s}", lam[s], 1e-3)
    check("stage 3 middle", lam[60], 2e-3, 1e-12)
    for s in range(80, 100):
        check(f"held after the last stage, step {s}", lam[s], 3e-3)
    rising = all(b >= a for a, b in zip(lam, lam[1:]))
    print(f"{'ok  ' if rising else 'FAIL'} non-decreasing over the run")
    if not rising:
        failures.append("monotone")
    # A stage may also lower the factor (peaks are free): the ramp goes down along eta.
    down = train.staged_l1_factor(15, 1e-3, 10, [0.0], [10])
    check("a falling stage", down, 1e-3 * (1 - 0.5), 1e-12)

    # Through l1_factor, the staged schedule is selected by l1_peaks; the shipped equal-stage
    # ramp (0 until 10% of the run, three stages to 1.5e-3 at 70%, then held) is unchanged.
    staged = SimpleNamespace(l1_peaks=peaks, l1_stage_steps=lens, l1_warmup=w,
                             l1_warmup_steps=ws, l1=0.0)
    check("l1_factor selects the staged schedule", train.l1_factor(60, staged), 2e-3, 1e-12)
    shipped = SimpleNamespace(l1_peaks=[], l1=1.5e-3, l1_start=0.1, l1_end=0.7, l1_stages=3,
                              steps=1000)
    check("shipped ramp before its start", train.l1_factor(99, shipped), 0.0)
    check("shipped ramp, end of stage 1", train.l1_factor(300, shipped), 0.5e-3, 1e-12)
    check("shipped ramp, middle of stage 2", train.l1_factor(400, shipped), 0.75e-3, 1e-12)
    check("shipped ramp held", train.l1_factor(700, shipped), 1.5e-3)

    # train.py refuses a staged schedule without a warm-up stage, and mismatched stage lists.
    for bad in (["--l1-peaks", "1e-3", "--l1-stage-steps", "10"],
                ["--l1-peaks", "1e-3,2e-3", "--l1-stage-steps", "10", "--l1-warmup", "1e-4",
                 "--l1-warmup-steps", "5"]):
        r = subprocess.run([sys.executable, os.path.join(TRAIN_DIR, "train.py"), "--corpus", "x",
                            "--tokenizer", "x", "--out", "x"] + bad, capture_output=True,
                           text=True)
        ok = r.returncode == 2 and "--l1-" in r.stderr
        print(f"{'ok  ' if ok else 'FAIL'} refused {' '.join(bad)}: rc {r.returncode}")
        if not ok:
            print(r.stderr)
            failures.append("refusal")
    print("PASS" if not failures else f"{len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
