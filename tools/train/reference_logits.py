#!/usr/bin/env python3
"""Writes the reference-logits fixture of an exported model.

The model directory's bf16 weights are read back, widened to float32 and run through this
directory's PyTorch LLaMA (which shares no code with the C++ engine) on fixed English prompts.
Writes FIXTURE.json (prompts, their token ids with <s>, the greedy continuation of each, model
directory name) and
FIXTURE.safetensors (logits.N: float32 [tokens, vocab] for every position of prompt N).
"""
import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hf_export import read_safetensors, write_safetensors  # noqa: E402
from llama import LlamaForCausalLM, LlamaShape  # noqa: E402

GREEDY_TOKENS = 24
PROMPTS = [
    "In the beginning God created the heaven and the earth.",
    "The river was navigable for fifty miles",
    "She opened the door and",
    "And the king said unto his servants,",
]


def load_model(model_dir):
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    fields = LlamaShape.__dataclass_fields__
    shape = LlamaShape(**{k: cfg[k] for k in fields if k in cfg})
    model = LlamaForCausalLM(shape)
    weights = read_safetensors(os.path.join(model_dir, "model.safetensors"))
    if shape.tie_word_embeddings:
        weights["lm_head.weight"] = weights["model.embed_tokens.weight"]
    model.load_state_dict(weights)
    model.eval()
    return model


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--out", required=True, help="fixture path without extension")
    args = p.parse_args()
    import sentencepiece
    torch.set_num_threads(1)
    sp = sentencepiece.SentencePieceProcessor(
        model_file=os.path.join(args.model, "tokenizer.model"))
    model = load_model(args.model)
    entries, tensors = [], {}
    with torch.no_grad():
        for i, prompt in enumerate(PROMPTS):
            ids = [sp.bos_id()] + sp.encode(prompt)
            logits = model(torch.tensor([ids]))[0].float().contiguous()
            tensors[f"logits.{i}"] = logits
            greedy = list(ids)
            for _ in range(GREEDY_TOKENS):
                greedy.append(int(model(torch.tensor([greedy]))[0, -1].argmax()))
            entries.append({"prompt": prompt, "ids": ids, "greedy": greedy[len(ids):],
                            "greedy_text": sp.decode(greedy[len(ids):])})
    write_safetensors(args.out + ".safetensors", tensors)
    with open(args.out + ".json", "w") as f:
        json.dump({"model": os.path.basename(os.path.normpath(args.model)), "prompts": entries},
                  f, indent=1)
        f.write("\n")
    print(f"reference: {len(PROMPTS)} prompts -> {args.out}.{{json,safetensors}}", file=sys.stderr)


if __name__ == "__main__":
    main()
