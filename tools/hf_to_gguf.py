#!/usr/bin/env python3
"""A Hugging Face llama-family checkpoint (config.json, model.safetensors, tokenizer.model) as a
GGUF file, written the way llama.cpp's own converter writes llama models: q and k rows permuted to
interleaved rotary pairs, the SentencePiece vocabulary with scores and token types, norms in F32.
Quantize the result with llama.cpp's llama-quantize (--pure) for a file llama.cpp and sparsed
both serve (docs/BENCHMARKS.md, "GGUF files").

A ReLU-family model (hidden_act relu / relu2 / fatrelu) gets sparsed's own keys
sparsed.hidden_act and sparsed.hidden_act_param: llama.cpp has no such field and runs every llama
GGUF with SiLU, so only a SiLU model is comparable across the two engines.

usage: hf_to_gguf.py MODEL_DIR OUT.gguf [--outtype f32|f16|q8_0|q4_0]
needs: numpy, gguf, sentencepiece (pip)
"""
import argparse
import json
import os
import struct

import gguf
import numpy as np
import sentencepiece as spm


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, end = e["data_offsets"]
        raw = data[b:end]
        if e["dtype"] == "BF16":
            a = (np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
        elif e["dtype"] == "F16":
            a = np.frombuffer(raw, dtype=np.float16).astype(np.float32)
        elif e["dtype"] == "F32":
            a = np.frombuffer(raw, dtype=np.float32)
        else:
            raise SystemExit(f"{path}: tensor {name} has dtype {e['dtype']}")
        out[name] = a.reshape(e["shape"])
    return out


def permute(w, heads):
    """Hugging Face rotate-half rows → llama.cpp's interleaved rotary pairs, per head."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("out")
    ap.add_argument("--outtype", default="f32", choices=["f32", "f16", "q8_0", "q4_0"])
    a = ap.parse_args()
    cfg = json.load(open(os.path.join(a.model_dir, "config.json")))
    if cfg.get("model_type") not in ("llama", "sparsellama", "mistral"):
        raise SystemExit(f"model_type {cfg.get('model_type')} is not a llama-architecture model")
    t = read_safetensors(os.path.join(a.model_dir, "model.safetensors"))
    d, F, L = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    H = cfg["num_attention_heads"]
    KV = cfg.get("num_key_value_heads", H)
    hd = cfg.get("head_dim", d // H)

    w = gguf.GGUFWriter(a.out, "llama")
    w.add_name(os.path.basename(os.path.normpath(a.model_dir)))
    w.add_context_length(cfg.get("max_position_embeddings", 2048))
    w.add_embedding_length(d)
    w.add_block_count(L)
    w.add_feed_forward_length(F)
    w.add_head_count(H)
    w.add_head_count_kv(KV)
    w.add_rope_dimension_count(hd)
    w.add_rope_freq_base(float(cfg.get("rope_theta", 10000.0)))
    w.add_layer_norm_rms_eps(float(cfg.get("rms_norm_eps", 1e-6)))
    w.add_vocab_size(cfg["vocab_size"])
    act = cfg.get("hidden_act", "silu")
    if act not in ("silu", "swish"):
        w.add_string("sparsed.hidden_act", act)
        w.add_float32("sparsed.hidden_act_param", float(cfg.get("hidden_act_param", 0.0)))
    ftype = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
             "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0, "q4_0": gguf.LlamaFileType.MOSTLY_Q4_0}
    w.add_file_type(ftype[a.outtype])

    sp = spm.SentencePieceProcessor(model_file=os.path.join(a.model_dir, "tokenizer.model"))
    tokens, scores, types = [], [], []
    for i in range(sp.vocab_size()):
        tokens.append(sp.id_to_piece(i).encode("utf-8"))
        scores.append(sp.get_score(i))
        tt = gguf.TokenType.NORMAL
        if sp.is_unknown(i):
            tt = gguf.TokenType.UNKNOWN
        elif sp.is_control(i):
            tt = gguf.TokenType.CONTROL
        elif sp.is_unused(i):
            tt = gguf.TokenType.UNUSED
        elif sp.is_byte(i):
            tt = gguf.TokenType.BYTE
        types.append(tt)
    for i in range(sp.vocab_size(), cfg["vocab_size"]):  # padding rows of the embedding
        tokens.append(f"[PAD{i}]".encode())
        scores.append(-1000.0)
        types.append(gguf.TokenType.UNUSED)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(cfg.get("bos_token_id", 1))
    eos = cfg.get("eos_token_id", 2)
    w.add_eos_token_id(eos[0] if isinstance(eos, list) else eos)
    w.add_unk_token_id(sp.unk_id())
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)

    qtype = {"f32": gguf.GGMLQuantizationType.F32, "f16": gguf.GGMLQuantizationType.F16,
             "q8_0": gguf.GGMLQuantizationType.Q8_0,
             "q4_0": gguf.GGMLQuantizationType.Q4_0}[a.outtype]

    def matrix(name, arr):
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        if qtype == gguf.GGMLQuantizationType.F32:
            w.add_tensor(name, arr)
        elif qtype == gguf.GGMLQuantizationType.F16:
            w.add_tensor(name, arr.astype(np.float16))
        else:
            w.add_tensor(name, gguf.quants.quantize(arr, qtype), raw_dtype=qtype)

    def norm(name, arr):
        w.add_tensor(name, np.ascontiguousarray(arr, dtype=np.float32))

    matrix("token_embd.weight", t["model.embed_tokens.weight"])
    norm("output_norm.weight", t["model.norm.weight"])
    if not cfg.get("tie_word_embeddings", False):
        matrix("output.weight", t["lm_head.weight"])
    for i in range(L):
        p, g = f"model.layers.{i}.", f"blk.{i}."
        norm(g + "attn_norm.weight", t[p + "input_layernorm.weight"])
        norm(g + "ffn_norm.weight", t[p + "post_attention_layernorm.weight"])
        matrix(g + "attn_q.weight", permute(t[p + "self_attn.q_proj.weight"], H))
        matrix(g + "attn_k.weight", permute(t[p + "self_attn.k_proj.weight"], KV))
        matrix(g + "attn_v.weight", t[p + "self_attn.v_proj.weight"])
        matrix(g + "attn_output.weight", t[p + "self_attn.o_proj.weight"])
        if p + "mlp.gate_proj.weight" in t:
            matrix(g + "ffn_gate.weight", t[p + "mlp.gate_proj.weight"])
        matrix(g + "ffn_up.weight", t[p + "mlp.up_proj.weight"])
        matrix(g + "ffn_down.weight", t[p + "mlp.down_proj.weight"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    main()
