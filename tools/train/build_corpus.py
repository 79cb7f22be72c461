#!/usr/bin/env python3
"""Builds the training corpus of the bundled model from freely licensed Debian packages.

Sources (both installed by scripts/install-deps.sh's training set):
  * bible-kjv-text: the King James Version (1611, public domain), read with the `bible` tool of
    bible-kjv; one document per chapter, verse numbers removed.
  * wordnet-base: the example sentences of WordNet 3.0's glosses (WordNet 3.0 licence:
    permission to use, copy, modify and distribute); documents of 40 sentences in file order.

Every 50th document is held out for evaluation. Writes train.txt and heldout.txt (one document
per line) and corpus.json (sources, document and byte counts) into --out.
"""
import argparse
import json
import os
import re
import subprocess
import sys

WORDNET = "/usr/share/wordnet"
HOLDOUT_EVERY = 50


def kjv_chapters():
    text = subprocess.run(["bible", "-l10000", "gen1:1-rev22:21"], check=True,
                          capture_output=True, text=True).stdout
    chapter = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        verse = re.match(r"^(\d+)\s+(.*)$", line)
        if verse:
            chapter.append(verse.group(2).strip())
        elif chapter:  # a heading ("Genesis 2") closes the chapter before it
            yield " ".join(chapter)
            chapter = []
    if chapter:
        yield " ".join(chapter)


def wordnet_examples():
    sentences = []
    for part in ("noun", "verb", "adj", "adv"):
        with open(os.path.join(WORDNET, "data." + part), encoding="latin-1") as f:
            for line in f:
                if line.startswith("  ") or " | " not in line:
                    continue  # licence header
                gloss = line.split(" | ", 1)[1]
                for example in re.findall(r'"([^"]+)"', gloss):
                    example = example.strip()
                    if len(example) < 12:
                        continue
                    example = example[0].upper() + example[1:]
                    if example[-1] not in ".!?":
                        example += "."
                    sentences.append(example)
    for i in range(0, len(sentences), 40):
        yield " ".join(sentences[i:i + 40])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    stats = {}
    train, heldout = [], []
    for name, docs in (("bible-kjv-text", kjv_chapters()), ("wordnet-base", wordnet_examples())):
        count = 0
        for doc in docs:
            (heldout if count % HOLDOUT_EVERY == HOLDOUT_EVERY - 1 else train).append(doc)
            count += 1
        stats[name] = count
        print(f"corpus: {name}: {count} documents", file=sys.stderr)
    # Interleave the sources deterministically so every stretch of training sees both.
    for path, docs in (("train.txt", train), ("heldout.txt", heldout)):
        with open(os.path.join(args.out, path), "w", encoding="utf-8") as f:
            f.writelines(d + "\n" for d in docs)
    summary = {"documents": stats, "train_docs": len(train), "heldout_docs": len(heldout),
               "train_bytes": sum(len(d) + 1 for d in train),
               "heldout_bytes": sum(len(d) + 1 for d in heldout),
               "holdout": f"every {HOLDOUT_EVERY}th document of each source"}
    with open(os.path.join(args.out, "corpus.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print(f"corpus: {summary['train_bytes']} bytes train, {summary['heldout_bytes']} held out",
          file=sys.stderr)


if __name__ == "__main__":
    main()
