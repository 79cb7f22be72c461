#!/usr/bin/env python3
"""Exports a training checkpoint to a Hugging Face model directory.

Writes config.json (LlamaForCausalLM; hidden_act as transformers spells it), model.safetensors
(bf16, tensor names of transformers' LlamaForCausalLM; lm_head omitted when tied), and copies
tokenizer.model. --activation fatrelu --act-threshold t exports a checkpoint trained with ReLU (or
FATReLU) as ProSparse's threshold-shifted model: "hidden_act": "fatrelu", "hidden_act_param": t,
and with --model-type sparsellama the SparseLlamaForCausalLM architecture of ProSparse's
published checkpoints. The safetensors file is written here from its specification (an 8-byte
little-endian header length, a JSON header of dtype/shape/data_offsets, then the raw data).
"""
import argparse
import json
import os
import shutil
import struct
import sys

import torch


def write_safetensors(path, tensors, metadata=None):
    """tensors: name -> contiguous CPU tensor (bfloat16, float16 or float32)."""
    names = {torch.bfloat16: "BF16", torch.float16: "F16", torch.float32: "F32"}
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        raw = t.view(torch.int16).numpy().tobytes() if t.dtype == torch.bfloat16 else \
            t.numpy().tobytes()
        header[name] = {"dtype": names[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    if metadata:
        header["__metadata__"] = metadata
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in blobs:
            f.write(raw)


def read_safetensors(path):
    """name -> float32 tensor (bf16/f16/f32 files)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        begin, end = entry["data_offsets"]
        raw = bytearray(data[begin:end])
        if entry["dtype"] == "BF16":
            t = torch.frombuffer(raw, dtype=torch.int16).to(torch.int32) << 16
            t = t.view(torch.float32)
        elif entry["dtype"] == "F16":
            t = torch.frombuffer(raw, dtype=torch.float16).float()
        else:
            t = torch.frombuffer(raw, dtype=torch.float32).clone()
        out[name] = t.reshape(entry["shape"])
    return out


def hf_config(shape, bos_id, eos_id, model_type="llama"):
    cfg = {
        "architectures": ["SparseLlamaForCausalLM" if model_type == "sparsellama"
                          else "LlamaForCausalLM"],
        "model_type": model_type,
        "vocab_size": shape["vocab_size"],
        "hidden_size": shape["hidden_size"],
        "intermediate_size": shape["intermediate_size"],
        "num_hidden_layers": shape["num_hidden_layers"],
        "num_attention_heads": shape["num_attention_heads"],
        "num_key_value_heads": shape["num_key_value_heads"],
        "max_position_embeddings": shape["max_position_embeddings"],
        "rms_norm_eps": shape["rms_norm_eps"],
        "rope_theta": shape["rope_theta"],
        "hidden_act": shape["hidden_act"],
        "hidden_act_param": shape.get("hidden_act_param", 0.0),
        "tie_word_embeddings": shape["tie_word_embeddings"],
        "attention_bias": False,
        "mlp_bias": False,
        "bos_token_id": bos_id,
        "eos_token_id": eos_id,
        "torch_dtype": "bfloat16",
    }
    if cfg["hidden_act"] != "fatrelu":
        del cfg["hidden_act_param"]
    return cfg


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, help="checkpoint.pt of a training run")
    p.add_argument("--tokenizer", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--activation", default="",
                   help="export with this hidden_act instead of the run's (e.g. fatrelu)")
    p.add_argument("--act-threshold", type=float, default=None,
                   help="hidden_act_param (the FATReLU threshold t)")
    p.add_argument("--model-type", default="llama", choices=["llama", "sparsellama"])
    args = p.parse_args()
    import sentencepiece
    sp = sentencepiece.SentencePieceProcessor(model_file=args.tokenizer)
    state = torch.load(args.checkpoint, map_location="cpu")
    shape = dict(state["shape"])
    if args.activation:
        shape["hidden_act"] = args.activation
    if args.act_threshold is not None:
        shape["hidden_act_param"] = args.act_threshold
    if shape["hidden_act"] == "fatrelu" and not shape.get("hidden_act_param", 0) >= 0:
        p.error("fatrelu needs a non-negative --act-threshold")
    tensors = {k: v.to(torch.bfloat16) for k, v in state["model"].items()}
    if shape["tie_word_embeddings"]:
        tensors.pop("lm_head.weight", None)
    os.makedirs(args.out, exist_ok=True)
    write_safetensors(os.path.join(args.out, "model.safetensors"), tensors, {"format": "pt"})
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(hf_config(shape, sp.bos_id(), sp.eos_id(), args.model_type), f, indent=2)
        f.write("\n")
    shutil.copyfile(args.tokenizer, os.path.join(args.out, "tokenizer.model"))
    print(f"export: {args.out} ({len(tensors)} tensors, step {state['step']})", file=sys.stderr)


if __name__ == "__main__":
    main()
