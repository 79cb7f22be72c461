#!/usr/bin/env python3
"""Summarises the recipe's runs: held-out perplexity and FFN sparsity per layer (markdown), and
optionally a plot of the training curves.

Usage: summarize.py WORKDIR [--plot PNG]
Sparsity is the share of exact zeros of x1 = act(gate) * up over the held-out tokens (for SiLU
it is 0: no neuron is exactly inactive; its sparsity is measured by CETT calibration instead).
"""
import argparse
import json
import os


def runs(work):
    out = {}
    for name in sorted(os.listdir(work)):
        log = os.path.join(work, name, "log.jsonl")
        if not os.path.exists(log):
            continue
        with open(log) as f:
            records = [json.loads(line) for line in f]
        with open(os.path.join(work, name, "run.json")) as f:
            meta = json.load(f)
        out[name] = (meta, records)
    return out


def table(all_runs):
    rows = []
    layers = max((m["shape"]["num_hidden_layers"] for m, _ in all_runs.values()), default=0)
    head = ["run", "activation", "L1 factor", "steps", "tokens seen", "held-out ppl",
            "overall sparsity"] + [f"layer {i}" for i in range(layers)]
    rows.append("| " + " | ".join(head) + " |")
    rows.append("|" + "---|" * len(head))
    for name, (meta, records) in all_runs.items():
        evals = [r for r in records if "heldout_ppl" in r]
        steps = [r for r in records if "loss" in r]
        if not evals:
            continue
        ev = evals[-1]
        a = meta["args"]
        cells = [name, a["activation"], f"{a['l1']:g}", str(ev["step"]),
                 f"{steps[-1]['tokens'] / 1e6:.2f} M" if steps else "-",
                 f"{ev['heldout_ppl']:.2f}", f"{100 * ev['sparsity_overall']:.1f}%"]
        cells += [f"{100 * s:.1f}%" for s in ev["sparsity"]]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def plot(all_runs, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, (_, records) in all_runs.items():
        steps = [r for r in records if "loss" in r]
        ax1.plot([r["step"] for r in steps], [r["loss"] for r in steps], label=name, lw=0.8)
        ax2.plot([r["step"] for r in steps], [100 * r["sparsity"] for r in steps], label=name,
                 lw=0.8)
    ax1.set_xlabel("step")
    ax1.set_ylabel("training loss (cross-entropy)")
    ax1.set_ylim(bottom=2)
    ax2.set_xlabel("step")
    ax2.set_ylabel("exact zeros of x1 in the batch (%)")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("work")
    p.add_argument("--plot")
    args = p.parse_args()
    all_runs = runs(args.work)
    print(table(all_runs))
    if args.plot:
        plot(all_runs, args.plot)


if __name__ == "__main__":
    main()
