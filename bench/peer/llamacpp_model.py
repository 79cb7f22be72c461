#!/usr/bin/env python3
"""A random-weight GGUF of the TinyLlama-1.1B shape (llama arch, F16 weights, F32 norms, a
minimal SentencePiece-style vocabulary) for timing llama.cpp beside decode_bench on the same
shape (docs/BENCHMARKS.md, "Against llama.cpp"). Quantize it with llama-quantize --pure."""
import sys
import numpy as np
import gguf

if len(sys.argv) != 2:
    sys.exit("usage: llamacpp_model.py OUT.gguf   (needs the gguf and numpy packages)")
out = sys.argv[1]

N_EMBD, N_FF, N_LAYER, N_HEAD, N_HEAD_KV, N_VOCAB, N_CTX = 2048, 5632, 22, 32, 4, 32000, 2048
HEAD_DIM = N_EMBD // N_HEAD
N_EMBD_KV = HEAD_DIM * N_HEAD_KV
rng = np.random.default_rng(0)

def w(*shape):  # numpy shape = (rows=out, cols=in); gguf stores reversed (ne0 = in)
    return (rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(np.float16)

def norm():
    return np.ones(N_EMBD, dtype=np.float32)

wr = gguf.GGUFWriter(out, "llama")
wr.add_name("tinyllama-1.1b-shape-random")
wr.add_context_length(N_CTX)
wr.add_embedding_length(N_EMBD)
wr.add_block_count(N_LAYER)
wr.add_feed_forward_length(N_FF)
wr.add_head_count(N_HEAD)
wr.add_head_count_kv(N_HEAD_KV)
wr.add_layer_norm_rms_eps(1e-5)
wr.add_rope_freq_base(10000.0)
wr.add_rope_dimension_count(HEAD_DIM)
wr.add_vocab_size(N_VOCAB)
wr.add_file_type(gguf.LlamaFileType.MOSTLY_F16)

# minimal SPM ("llama") vocab: <unk>, <s>, </s>, 256 byte tokens, fillers
T = gguf.TokenType
tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
types = [T.UNKNOWN, T.CONTROL, T.CONTROL] + [T.BYTE] * 256
n_fill = N_VOCAB - len(tokens)
tokens += [f"\u2581tok{i}" for i in range(n_fill)]
types += [T.NORMAL] * n_fill
scores = [0.0] * 259 + [-float(i) for i in range(n_fill)]
wr.add_tokenizer_model("llama")
wr.add_token_list(tokens)
wr.add_token_scores(scores)
wr.add_token_types(types)
wr.add_unk_token_id(0)
wr.add_bos_token_id(1)
wr.add_eos_token_id(2)
wr.add_add_bos_token(True)
wr.add_add_eos_token(False)

wr.add_tensor("token_embd.weight", w(N_VOCAB, N_EMBD))
for i in range(N_LAYER):
    p = f"blk.{i}."
    wr.add_tensor(p + "attn_norm.weight", norm())
    wr.add_tensor(p + "attn_q.weight", w(N_EMBD, N_EMBD))
    wr.add_tensor(p + "attn_k.weight", w(N_EMBD_KV, N_EMBD))
    wr.add_tensor(p + "attn_v.weight", w(N_EMBD_KV, N_EMBD))
    wr.add_tensor(p + "attn_output.weight", w(N_EMBD, N_EMBD))
    wr.add_tensor(p + "ffn_norm.weight", norm())
    wr.add_tensor(p + "ffn_gate.weight", w(N_FF, N_EMBD))
    wr.add_tensor(p + "ffn_up.weight", w(N_FF, N_EMBD))
    wr.add_tensor(p + "ffn_down.weight", w(N_EMBD, N_FF))
wr.add_tensor("output_norm.weight", norm())
wr.add_tensor("output.weight", w(N_VOCAB, N_EMBD))

wr.write_header_to_file()
wr.write_kv_data_to_file()
wr.write_tensors_to_file()
wr.close()
print("wrote", out)
