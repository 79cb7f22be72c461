#!/usr/bin/env python3
"""Trains one small LLaMA of the bundled-model recipe (CPU, or CUDA when present).

Deterministic given --seed and --threads: batches are drawn from a generator seeded by
(seed, step), so a resumed run sees exactly the batches an uninterrupted one would. The run
checkpoints to OUT/checkpoint.pt every --checkpoint-every steps and resumes from it when
restarted; OUT/log.jsonl gets one line per logged step (loss, L1 factor, FFN sparsity) and per
evaluation (held-out loss and perplexity).

The L1 penalty is ProSparse's progressive sparsity regularisation: lambda * mean |x1| summed
over layers, with lambda rising through --l1-stages stages along half-sine curves
(eta = (sin(-pi/2 + pi * progress) + 1) / 2 within a stage) from --l1-start to --l1-end of the
run, then held at --l1 to the end.
"""
import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from llama import LlamaForCausalLM, LlamaShape  # noqa: E402
import corpus_tokens  # noqa: E402


def l1_factor(step, args):
    """ProSparse's staged half-sine schedule of the L1 factor at a step."""
    if args.l1 <= 0:
        return 0.0
    start, end = args.l1_start * args.steps, args.l1_end * args.steps
    if step < start:
        return 0.0
    if step >= end:
        return args.l1
    stage_len = (end - start) / args.l1_stages
    stage = min(int((step - start) // stage_len), args.l1_stages - 1)
    lo = args.l1 * stage / args.l1_stages
    hi = args.l1 * (stage + 1) / args.l1_stages
    progress = (step - start - stage * stage_len) / stage_len
    eta = 0.5 * (math.sin(-math.pi / 2 + math.pi * progress) + 1.0)
    return lo + eta * (hi - lo)


def learning_rate(step, args):
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    progress = (step - args.warmup) / max(1, args.steps - args.warmup)
    return args.lr * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress)))


def batch_at(stream, step, args, device):
    gen = torch.Generator().manual_seed(args.seed * 1_000_003 + step)
    starts = torch.randint(0, stream.numel() - args.seq - 1, (args.batch,), generator=gen)
    rows = torch.stack([stream[s:s + args.seq + 1] for s in starts.tolist()])
    return rows.to(device)


@torch.no_grad()
def evaluate(model, heldout, args, device):
    """Mean next-token loss over the whole held-out stream in windows of --seq tokens, and the
    share of exact zeros of x1 per layer over the same tokens."""
    model.eval()
    total, count = 0.0, 0
    zeros = [0] * model.shape.num_hidden_layers
    elements = 0
    for start in range(0, heldout.numel() - 1, args.seq):
        window = heldout[start:start + args.seq + 1].to(device)
        if window.numel() < 2:
            break
        ids = window[:-1].unsqueeze(0)
        logits = model(ids)
        total += F.cross_entropy(logits[0].float(), window[1:], reduction="sum").item()
        count += window.numel() - 1
        for i, x1 in enumerate(model.ffn_activations()):
            zeros[i] += (x1 == 0).sum().item()
        elements += ids.numel() * model.shape.intermediate_size
    model.train()
    loss = total / count
    return {"heldout_loss": loss, "heldout_ppl": math.exp(loss), "heldout_tokens": count,
            "sparsity": [z / elements for z in zeros],
            "sparsity_overall": sum(zeros) / (elements * len(zeros))}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", required=True, help="directory with train.txt and heldout.txt")
    p.add_argument("--tokenizer", required=True, help="SentencePiece tokenizer.model")
    p.add_argument("--out", required=True)
    p.add_argument("--activation", default="relu2", choices=["relu2", "relu", "silu"])
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--intermediate", type=int, default=1024)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--kv-heads", type=int, default=2)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=60)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--l1", type=float, default=0.0, help="final L1 factor (0: no penalty)")
    p.add_argument("--l1-stages", type=int, default=3)
    p.add_argument("--l1-start", type=float, default=0.1, help="fraction of the run")
    p.add_argument("--l1-end", type=float, default=0.7, help="fraction of the run")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--eval-every", type=int, default=200)
    p.add_argument("--checkpoint-every", type=int, default=100)
    p.add_argument("--stop-after", type=int, default=0,
                   help="stop (after checkpointing) at this step; for resume tests")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    os.makedirs(args.out, exist_ok=True)

    train, heldout, vocab = corpus_tokens.load(args.corpus, args.tokenizer)
    shape = LlamaShape(vocab_size=vocab, hidden_size=args.hidden,
                       intermediate_size=args.intermediate, num_hidden_layers=args.layers,
                       num_attention_heads=args.heads, num_key_value_heads=args.kv_heads,
                       max_position_embeddings=2 * args.seq, hidden_act=args.activation)
    torch.manual_seed(args.seed)
    model = LlamaForCausalLM(shape).to(device)
    decay = [q for n, q in model.named_parameters() if q.dim() >= 2]
    no_decay = [q for n, q in model.named_parameters() if q.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8)
    ckpt_path = os.path.join(args.out, "checkpoint.pt")
    log_path = os.path.join(args.out, "log.jsonl")
    step = 0
    if os.path.exists(ckpt_path):
        state = torch.load(ckpt_path, map_location=device)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step = state["step"]
        print(f"train: resumed at step {step}", file=sys.stderr)
        # Drop log lines past the checkpoint (written after it was saved): the run rewrites them.
        if os.path.exists(log_path):
            with open(log_path) as f:
                kept = [l for l in f if json.loads(l)["step"] <= step]
            with open(log_path, "w") as f:
                f.writelines(kept)
    else:
        with open(os.path.join(args.out, "run.json"), "w") as f:
            json.dump({"args": vars(args), "shape": shape.to_dict(), "device": device,
                       "train_tokens": train.numel(), "heldout_tokens": heldout.numel(),
                       "parameters": sum(q.numel() for q in model.parameters())}, f, indent=2)
        open(log_path, "w").close()
    print(f"train: {args.activation} {sum(q.numel() for q in model.parameters())} parameters, "
          f"{train.numel()} training tokens, device {device}", file=sys.stderr)

    t0 = time.time()
    log = open(log_path, "a")
    while step < args.steps:
        lam = l1_factor(step, args)
        for group in opt.param_groups:
            group["lr"] = learning_rate(step, args)
        rows = batch_at(train, step, args, device)
        logits = model(rows[:, :-1])
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), rows[:, 1:].reshape(-1))
        acts = model.ffn_activations()
        # L1 norm of x1 per token (summed over neurons), averaged over tokens, summed over layers.
        l1 = sum(x1.abs().sum(-1).mean() for x1 in acts)
        loss = ce + lam * l1 if lam > 0 else ce
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step % args.log_every == 0 or step == args.steps:
            with torch.no_grad():
                sparsity = sum((x1 == 0).float().mean().item() for x1 in acts) / len(acts)
            rec = {"step": step, "loss": ce.item(), "l1": l1.item(), "l1_factor": lam,
                   "lr": learning_rate(step - 1, args), "sparsity": sparsity,
                   "tokens": step * args.batch * args.seq}
            log.write(json.dumps(rec) + "\n")
            log.flush()
            rate = (step * args.batch * args.seq) / max(1e-9, time.time() - t0)
            print(f"train: step {step}/{args.steps} loss {ce.item():.4f} l1 {l1.item():.4f} "
                  f"factor {lam:.4g} sparsity {sparsity:.3f}", file=sys.stderr)
        if step % args.eval_every == 0 or step == args.steps:
            ev = evaluate(model, heldout, args, device)
            ev["step"] = step
            log.write(json.dumps(ev) + "\n")
            log.flush()
            print(f"train: step {step} held-out ppl {ev['heldout_ppl']:.3f} "
                  f"sparsity {ev['sparsity_overall']:.4f}", file=sys.stderr)
        if step % args.checkpoint_every == 0 or step == args.steps or step == args.stop_after:
            tmp = ckpt_path + ".tmp"
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                        "step": step, "shape": shape.to_dict()}, tmp)
            os.replace(tmp, ckpt_path)
        if step == args.stop_after:
            print(f"train: stopped at step {step} as asked", file=sys.stderr)
            return
    log.close()


if __name__ == "__main__":
    main()
