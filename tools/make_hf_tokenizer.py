#!/usr/bin/env python3
"""Writes Hugging Face tokenizer files for a model directory that has a SentencePiece model.

OpenAI-protocol gateways (and every transformers-based tool) tokenize with Hugging Face's
`tokenizer.json`; the daemon tokenizes with `tokenizer.model` (SentencePiece). This tool derives
the first from the second so that both give the same token ids:

  tokenizer.json           the `tokenizers` pipeline that reproduces SentencePiece's encoding of
                           this model: its precompiled normalization (e.g. NFKC), extra-whitespace
                           removal, the "▁" dummy prefix, digit splitting, BPE merges ranked by piece
                           score, byte fallback; a post-processor that prepends BOS (as LLaMA's
                           tokenizers do when special tokens are added); a decoder that undoes it.
  tokenizer_config.json    the special tokens and a chat template (Jinja, transformers' conventions).

One difference is by design: the control pieces (BOS, EOS, unknown) are special tokens of
tokenizer.json, as in every Hugging Face LLaMA tokenizer, so that a chat template's "<s>" becomes
the BOS id; written inside a prompt, "<s>" is therefore BOS for the gateway but three characters
for the daemon's own tokenizer (which never turns text into a control token).

Only what this project's models use is supported (BPE or Unigram, normal/control/unknown/byte
pieces); anything else is refused with a message rather than converted approximately.

Usage: tools/make_hf_tokenizer.py MODEL_DIR [--check TEXT_FILE]
  --check   after writing, encode every line of TEXT_FILE (or every string of a JSON list, when it
            ends in .json) with both tokenizers and fail on the first difference (the proof that the
            two agree).

Needs `tokenizers`, `transformers` (for its SentencePiece protobuf reader) and `sentencepiece` for
--check: scripts/test-venv.sh installs them.
"""

import argparse
import json
import os
import sys

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

# SentencePiece piece types (sentencepiece_model.proto).
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
BPE_TYPE, UNIGRAM_TYPE = 2, 1

# A plain role-prefixed conversation: the bundled models are not chat-tuned, so the template only
# has to be unambiguous and end where the assistant's reply begins.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ message['role'] | capitalize }}: {{ message['content'] | trim }}\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)


def read_spm(path):
    from transformers.utils import sentencepiece_model_pb2_new as spm_pb2

    proto = spm_pb2.ModelProto()
    with open(path, "rb") as f:
        proto.ParseFromString(f.read())
    return proto


def bpe_merges(pieces):
    """Merges in SentencePiece's order: a pair merges into the highest-scoring normal piece."""
    normal = {p.piece: (p.score, i) for i, p in enumerate(pieces) if p.type == NORMAL}
    ranked = []
    for token, (score, index) in normal.items():
        for split in range(1, len(token)):
            left, right = token[:split], token[split:]
            if left in normal and right in normal:
                ranked.append((-score, index, left, right))
    return [(left, right) for _, _, left, right in sorted(ranked)]


def build(proto):
    trainer, norm = proto.trainer_spec, proto.normalizer_spec
    pieces = list(proto.pieces)
    unsupported = sorted({p.type for p in pieces} - {NORMAL, UNKNOWN, CONTROL, BYTE})
    if unsupported:
        raise SystemExit(f"piece types {unsupported} (user-defined/unused) are not supported")
    if trainer.model_type == BPE_TYPE:
        vocab = {p.piece: i for i, p in enumerate(pieces)}
        model = models.BPE(vocab=vocab, merges=bpe_merges(pieces), unk_token=trainer.unk_piece or "<unk>",
                           fuse_unk=True, byte_fallback=trainer.byte_fallback)
    elif trainer.model_type == UNIGRAM_TYPE:
        model = models.Unigram([(p.piece, p.score) for p in pieces], unk_id=trainer.unk_id,
                               byte_fallback=trainer.byte_fallback)
    else:
        raise SystemExit(f"trainer_spec.model_type {trainer.model_type} is neither BPE nor Unigram")
    tok = Tokenizer(model)

    # SentencePiece's normalizer, in its order: the precompiled character map (NFKC for nmt_nfkc),
    # then extra spaces removed (only U+0020: other whitespace is left alone), then spaces escaped.
    steps = []
    if norm.precompiled_charsmap:
        steps.append(normalizers.Precompiled(norm.precompiled_charsmap))
    if norm.remove_extra_whitespaces:
        steps += [normalizers.Replace(Regex(r"\A +| +\z"), ""), normalizers.Replace(Regex(" {2,}"), " ")]
    if norm.escape_whitespaces:
        steps.append(normalizers.Replace(" ", "▁"))
    if norm.add_dummy_prefix:
        # SentencePiece prepends "▁" whatever the text begins with.
        steps.append(normalizers.Prepend("▁"))
    tok.normalizer = normalizers.Sequence(steps)
    if trainer.split_digits:
        tok.pre_tokenizer = pre_tokenizers.Digits(individual_digits=True)

    specials = [p.piece for p in pieces if p.type in (CONTROL, UNKNOWN)]
    tok.add_special_tokens([AddedToken(s, normalized=False, special=True) for s in specials])

    bos = pieces[trainer.bos_id].piece if trainer.bos_id >= 0 else None
    if bos is not None:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos}:0 $A:0", pair=f"{bos}:0 $A:0 {bos}:1 $B:1",
            special_tokens=[(bos, trainer.bos_id)])

    steps = [decoders.Replace("▁", " ")]
    if trainer.byte_fallback:
        steps.append(decoders.ByteFallback())
    steps.append(decoders.Fuse())
    if norm.add_dummy_prefix:
        steps.append(decoders.Strip(content=" ", left=1, right=0))
    tok.decoder = decoders.Sequence(steps)
    return tok


def tokenizer_config(proto):
    trainer = proto.trainer_spec
    piece = lambda i: proto.pieces[i].piece if 0 <= i < len(proto.pieces) else None
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": piece(trainer.bos_id),
        "eos_token": piece(trainer.eos_id),
        "unk_token": piece(trainer.unk_id),
        "pad_token": piece(trainer.pad_id),
        "add_bos_token": True,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": 1 << 30,
        "chat_template": CHAT_TEMPLATE,
    }


def check(model_dir, text_file):
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=os.path.join(model_dir, "tokenizer.model"))
    hf = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    with open(text_file, encoding="utf-8") as f:
        lines = json.load(f) if text_file.endswith(".json") else [l for l in f.read().split("\n") if l]
    for n, line in enumerate(lines, 1):
        want = sp.encode(line)
        got = hf.encode(line, add_special_tokens=False).ids
        if got != want:
            raise SystemExit(f"{text_file}:{n}: tokenizer.json gives {got[:20]}..., SentencePiece {want[:20]}...")
        if hf.decode(got) != sp.decode(want):
            raise SystemExit(f"{text_file}:{n}: decoding differs")
    print(f"{len(lines)} lines of {text_file} encode and decode identically", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model_dir")
    ap.add_argument("--check", metavar="TEXT_FILE")
    args = ap.parse_args()
    spm_path = os.path.join(args.model_dir, "tokenizer.model")
    if not os.path.exists(spm_path):
        raise SystemExit(f"{spm_path}: no SentencePiece model to convert")
    proto = read_spm(spm_path)
    build(proto).save(os.path.join(args.model_dir, "tokenizer.json"), pretty=False)
    with open(os.path.join(args.model_dir, "tokenizer_config.json"), "w") as f:
        json.dump(tokenizer_config(proto), f, indent=2)
        f.write("\n")
    if args.check:
        check(args.model_dir, args.check)


if __name__ == "__main__":
    main()
