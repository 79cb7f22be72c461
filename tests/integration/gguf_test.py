#!/usr/bin/env python3
"""GGUF files written by llama.cpp's own writer (the gguf package from PyPI, in the venv
scripts/test-venv.sh makes), through tools/hf_to_gguf.py, then served by sparsed-generate.

The bundled SiLU and ReLU² models as F32 GGUF give exactly the greedy continuation of their
Hugging Face checkpoints (the same values: bf16 widened to fp32; q and k rows permuted by the
writer and restored at load; the ReLU² FFN from sparsed.hidden_act, in exact mode); a Q8_0 and a
Q4_0 file (gguf's quantizer) load and continue the prompt; a truncated file and one with a
tensor type sparsed does not load fail with the file and the tensor named.

Usage: gguf_test.py --bin BUILD/bin --source REPO [--work DIR]   (run with the venv's python)
"""
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import FAILURES, check, parse_test_args  # noqa: E402

PROMPT = "And the king said unto his servants,"


def main():
    a, work = parse_test_args("sparsed_gguf_")
    tool = os.path.join(a.source, "tools", "hf_to_gguf.py")

    def convert(model, outtype):
        out_dir = os.path.join(work, f"{model}-{outtype}")
        os.makedirs(out_dir)
        src = os.path.join(a.source, "models", model)
        out = os.path.join(out_dir, "model.gguf")
        subprocess.run([sys.executable, tool, src, out, "--outtype", outtype], check=True)
        shutil.copy(os.path.join(src, "tokenizer.model"), out_dir)
        return out

    def generate(model, *extra):
        p = subprocess.run([os.path.join(a.bin, "sparsed-generate"), "--model", model,
                            "--device", "cpu", "--prompt", PROMPT, "--max_new_tokens", "24",
                            *extra], capture_output=True, text=True, timeout=300)
        return p.returncode, p.stdout, p.stderr

    for model in ("sparsed-tiny-swiglu", "sparsed-tiny"):
        hf = os.path.join(a.source, "models", model)
        rc_h, out_h, err_h = generate(hf)
        gguf_path = convert(model, "f32")
        rc_g, out_g, err_g = generate(gguf_path)
        check(rc_h == 0 and rc_g == 0, f"{model}: both load ({err_g.strip()[-200:]})")
        check(out_g == out_h and out_h.startswith(PROMPT),
              f"{model}: the F32 GGUF continues as the checkpoint does ({out_g!r} vs {out_h!r})")
        if model == "sparsed-tiny":
            check("sparsity exact" in err_g, f"{model}: ReLU² from GGUF runs exact ({err_g!r})")
    for qt in ("q8_0", "q4_0"):
        path = convert("sparsed-tiny-swiglu", qt)
        rc, out, err = generate(path)
        check(rc == 0 and out.startswith(PROMPT) and len(out) > len(PROMPT) + 8,
              f"{qt} GGUF generates ({out!r} {err.strip()[-200:]!r})")

    # Malformed files: a clear error naming the file, never a crash.
    good = os.path.join(work, "sparsed-tiny-swiglu-q8_0", "model.gguf")
    bad_dir = os.path.join(work, "bad")
    os.makedirs(bad_dir)
    shutil.copy(os.path.join(a.source, "models", "sparsed-tiny-swiglu", "tokenizer.model"), bad_dir)
    data = open(good, "rb").read()
    cut = os.path.join(bad_dir, "cut.gguf")
    open(cut, "wb").write(data[: len(data) - 1000])
    rc, out, err = generate(cut)
    check(rc != 0 and "cut.gguf" in err and "past the end of the file" in err,
          f"a truncated file is refused by name ({rc}, {err.strip()[-300:]!r})")
    # The first tensor's type id (token_embd, Q8_0 = 8) changed to Q4_K (12).
    name = b"token_embd.weight"
    at = data.index(name) - 8  # its length prefix
    n_dims = int.from_bytes(data[at + 8 + len(name):at + 12 + len(name)], "little")
    type_at = at + 8 + len(name) + 4 + 8 * n_dims
    k = bytearray(data)
    k[type_at:type_at + 4] = (12).to_bytes(4, "little")
    kq = os.path.join(bad_dir, "kquant.gguf")
    open(kq, "wb").write(bytes(k))
    rc, out, err = generate(kq)
    check(rc != 0 and "token_embd.weight" in err and "Q4_K" in err,
          f"an unloadable tensor type is refused by name ({rc}, {err.strip()[-300:]!r})")
    print(f"{len(FAILURES)} failure(s)")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
