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

ProSparse's three steps, as options of the same recipe:
  * activation substitution: --init-from starts from a trained model (a Hugging Face directory
    such as models/sparsed-tiny-swiglu, or a training checkpoint.pt) with the FFN activation
    replaced by --activation (e.g. relu for a SwiGLU model's SiLU); the optimiser starts afresh;
  * the staged L1 schedule (ProSparse's Algorithm 1), selected by --l1-peaks: a warm-up stage of
    --l1-warmup-steps steps holding lambda at --l1-warmup (> 0), then one stage per entry of
    --l1-peaks / --l1-stage-steps in which lambda moves from the previous peak (the warm-up
    factor for the first) to the stage's peak along eta; a stage repeating the previous peak is
    constant; after the last stage lambda holds at the last peak;
  * FATReLU threshold shifting: --activation fatrelu --act-threshold t (x where x >= t and x > 0,
    else 0, as the engine computes it), for a short fine-tune after the shift; the shift alone,
    without training, is measured by tools/train/evaluate.py and exported by hf_export.py.
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


def sine_eta(progress):
    """ProSparse's ramp within a stage: 0 at progress 0, 1 at progress 1, sine-shaped."""
    return 0.5 * (math.sin(-math.pi / 2 + math.pi * progress) + 1.0)


def staged_l1_factor(step, warmup_factor, warmup_steps, peaks, stage_steps):
    """ProSparse's Algorithm 1 schedule: lambda = warmup_factor for the first warmup_steps steps,
    then in stage i (stage_steps[i] steps) lambda = prev + eta(progress) * (peaks[i] - prev), prev
    being the previous stage's peak (warmup_factor before the first); held at the last peak after
    the last stage."""
    if step < warmup_steps:
        return warmup_factor
    prev, begin = warmup_factor, warmup_steps
    for peak, length in zip(peaks, stage_steps):
        if step < begin + length:
            return prev + sine_eta((step - begin) / length) * (peak - prev)
        prev, begin = peak, begin + length
    return prev


def l1_factor(step, args):
    """The L1 factor at a step: the staged schedule when --l1-peaks is given, otherwise the
    equal-stage half-sine ramp from 0 to --l1."""
    if args.l1_peaks:
        return staged_l1_factor(step, args.l1_warmup, args.l1_warmup_steps, args.l1_peaks,
                                args.l1_stage_steps)
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


def float_list(text):
    return [float(v) for v in text.split(",")] if text else []


def int_list(text):
    return [int(v) for v in text.split(",")] if text else []


def load_init(path, device):
    """State dict of a Hugging Face model directory (bf16/f32 safetensors, tied head restored) or
    of a training checkpoint.pt."""
    if os.path.isdir(path):
        from hf_export import read_safetensors
        with open(os.path.join(path, "config.json")) as f:
            tied = json.load(f).get("tie_word_embeddings", False)
        weights = read_safetensors(os.path.join(path, "model.safetensors"))
        if tied:
            weights["lm_head.weight"] = weights["model.embed_tokens.weight"]
        return {k: v.to(device) for k, v in weights.items()}
    return torch.load(path, map_location=device)["model"]


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
    """Mean next-token loss over the whole held-out stream in windows of --eval-seq tokens (--seq
    when unset), and the share of exact zeros of x1 per layer over the same tokens."""
    model.eval()
    total, count = 0.0, 0
    zeros = [0] * model.shape.num_hidden_layers
    elements = 0
    seq = getattr(args, "eval_seq", 0) or args.seq
    for start in range(0, heldout.numel() - 1, seq):
        window = heldout[start:start + seq + 1].to(device)
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
    p.add_argument("--activation", default="relu2", choices=["relu2", "relu", "silu", "fatrelu"])
    p.add_argument("--act-threshold", type=float, default=0.0,
                   help="FATReLU threshold t (hidden_act_param) with --activation fatrelu")
    p.add_argument("--init-from", default="",
                   help="start from this model (HF directory or checkpoint.pt) instead of a random "
                        "initialisation; --activation replaces its FFN activation")
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--intermediate", type=int, default=1024)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--kv-heads", type=int, default=2)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--eval-seq", type=int, default=0,
                   help="held-out evaluation window (0: --seq)")
    p.add_argument("--max-positions", type=int, default=0,
                   help="max_position_embeddings (0: twice --seq)")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=60)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--l1", type=float, default=0.0, help="final L1 factor (0: no penalty)")
    p.add_argument("--l1-stages", type=int, default=3)
    p.add_argument("--l1-start", type=float, default=0.1, help="fraction of the run")
    p.add_argument("--l1-end", type=float, default=0.7, help="fraction of the run")
    p.add_argument("--l1-warmup", type=float, default=0.0,
                   help="staged schedule: the warm-up stage's constant L1 factor (> 0)")
    p.add_argument("--l1-warmup-steps", type=int, default=0,
                   help="staged schedule: length of the warm-up stage in steps")
    p.add_argument("--l1-peaks", type=float_list, default=[],
                   help="staged schedule: comma-separated peak L1 factor of each stage after the "
                        "warm-up (selects the staged schedule over --l1)")
    p.add_argument("--l1-stage-steps", type=int_list, default=[],
                   help="staged schedule: comma-separated length in steps of each stage")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--eval-every", type=int, default=200)
    p.add_argument("--checkpoint-every", type=int, default=100)
    p.add_argument("--stop-after", type=int, default=0,
                   help="stop (after checkpointing) at this step; for resume tests")
    args = p.parse_args()
    if args.l1_peaks:
        if len(args.l1_peaks) != len(args.l1_stage_steps):
            p.error("--l1-peaks and --l1-stage-steps need one entry per stage each")
        if args.l1_warmup <= 0 or args.l1_warmup_steps <= 0:
            p.error("the staged schedule needs a warm-up stage: --l1-warmup > 0, "
                    "--l1-warmup-steps > 0")
        if min(args.l1_stage_steps) <= 0 or min(args.l1_peaks) < 0:
            p.error("stages need positive lengths and non-negative peaks")
    if args.activation != "fatrelu" and args.act_threshold != 0:
        p.error("--act-threshold applies to --activation fatrelu only")

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
                       max_position_embeddings=args.max_positions or 2 * args.seq,
                       hidden_act=args.activation,
                       hidden_act_param=args.act_threshold)
    torch.manual_seed(args.seed)
    model = LlamaForCausalLM(shape).to(device)
    if args.init_from:
        # Weights only: the FFN activation is this run's (activation substitution).
        model.load_state_dict(load_init(args.init_from, device))
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
