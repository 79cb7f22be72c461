"""Token streams of the corpus: each document becomes <s> pieces </s>, concatenated."""
import os

import sentencepiece
import torch


def encode_file(sp, path):
    ids = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if line:
                ids.append(sp.bos_id())
                ids.extend(sp.encode(line))
                ids.append(sp.eos_id())
    return torch.tensor(ids, dtype=torch.long)


def load(corpus_dir, tokenizer_path):
    """(train ids, held-out ids, vocabulary size)."""
    sp = sentencepiece.SentencePieceProcessor(model_file=tokenizer_path)
    train = encode_file(sp, os.path.join(corpus_dir, "train.txt"))
    heldout = encode_file(sp, os.path.join(corpus_dir, "heldout.txt"))
    return train, heldout, sp.get_piece_size()
