#!/usr/bin/env python3
"""tools/make_hf_tokenizer.py: remade from each bundled model's tokenizer.model, the tokenizer
files equal the committed ones (so they cannot drift from the SentencePiece model), and the
remade tokenizer.json encodes and decodes the test texts (tests/data/tokenizer_cases.json, the
held-out corpus) exactly as SentencePiece does.

Usage: hf_tokenizer_test.py --source REPO   (run with the venv's python: scripts/test-venv.sh)
"""
import argparse
import filecmp
import os
import shutil
import subprocess
import sys
import tempfile

ap = argparse.ArgumentParser()
ap.add_argument("--source", required=True)
a = ap.parse_args()
tool = os.path.join(a.source, "tools", "make_hf_tokenizer.py")
failures = []
for model in ["sparsed-tiny", "sparsed-tiny-swiglu", "sparsed-tiny-prosparse"]:
    src = os.path.join(a.source, "models", model)
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(os.path.join(src, "tokenizer.model"), tmp)
        for check in ["tests/data/tokenizer_cases.json", "models/corpus/heldout.txt"]:
            r = subprocess.run([sys.executable, tool, tmp, "--check", os.path.join(a.source, check)],
                               capture_output=True, text=True)
            ok = r.returncode == 0
            print(("ok   " if ok else "FAIL ") + f"{model}: {check} encodes and decodes as "
                  f"SentencePiece does {'' if ok else r.stderr[-500:]}")
            if not ok:
                failures.append(model)
        for name in ["tokenizer.json", "tokenizer_config.json"]:
            same = filecmp.cmp(os.path.join(tmp, name), os.path.join(src, name), shallow=False)
            print(("ok   " if same else "FAIL ") + f"{model}/{name} is what the tool makes" +
                  ("" if same else f" (run: {tool} models/{model})"))
            if not same:
                failures.append(f"{model}/{name}")
sys.exit(1 if failures else 0)
