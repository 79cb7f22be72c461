#!/usr/bin/env python3
"""Held-out perplexity and FFN activation sparsity of a model, as train.py measures them.

Reads a training checkpoint.pt or a Hugging Face model directory; --activation and
--act-threshold replace its FFN activation first (ProSparse's FATReLU threshold shift at
inference time: --activation fatrelu --act-threshold t on a ReLU model). Prints one JSON object:
held-out loss and perplexity over the whole held-out stream in windows of --seq tokens, and the
share of exact zeros of x1 = act(gate) * up per layer and overall over the same tokens.
"""
import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from llama import LlamaForCausalLM, LlamaShape  # noqa: E402
import corpus_tokens  # noqa: E402
import train  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="checkpoint.pt or Hugging Face directory")
    p.add_argument("--corpus", required=True, help="directory with heldout.txt (and train.txt)")
    p.add_argument("--tokenizer", required=True)
    p.add_argument("--activation", default="", choices=["", "relu2", "relu", "silu", "fatrelu"])
    p.add_argument("--act-threshold", type=float, default=None)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if os.path.isdir(args.model):
        with open(os.path.join(args.model, "config.json")) as f:
            cfg = json.load(f)
        fields = LlamaShape.__dataclass_fields__
        shape = {k: cfg[k] for k in fields if k in cfg}
    else:
        shape = dict(torch.load(args.model, map_location="cpu")["shape"])
    if args.activation:
        shape["hidden_act"] = args.activation
    if args.act_threshold is not None:
        shape["hidden_act_param"] = args.act_threshold
    model = LlamaForCausalLM(LlamaShape(**shape))
    model.load_state_dict(train.load_init(args.model, "cpu"))
    _, heldout, _ = corpus_tokens.load(args.corpus, args.tokenizer)
    result = train.evaluate(model, heldout, args, "cpu")
    result.update({"model": args.model, "hidden_act": shape["hidden_act"],
                   "hidden_act_param": shape.get("hidden_act_param", 0.0)})
    print(json.dumps(result))


if __name__ == "__main__":
    main()
