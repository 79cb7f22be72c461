#!/usr/bin/python3
"""The bundled models served by the daemon, end to end.

1. `sparsed` on models/sparsed-tiny with default flags (what scripts/serve.sh runs): a greedy
   continuation requested over gRPC equals the PyTorch reference's (tests/data fixture).
2. sparsed-calibrate on models/sparsed-tiny-swiglu (CETT 0.2) writes sparsity.json; `sparsed
   --sparsity threshold` serves it: model info says threshold, /metrics exports the CETT target and
   per-layer activation ratios below 1 after a request.
3. The same sparsity.json given for the other model: the daemon refuses to start and names it.
4. `sparsed` on models/sparsed-tiny-prosparse (sparsellama, FATReLU) with default flags: exact
   sparsity, and the greedy continuation of every reference prompt equals PyTorch's.
5. `sparsed --weights q8_0` on models/sparsed-tiny: model info and the start-up log say Q8_0, and
   the greedy continuation starts as PyTorch's bf16 one does; an unknown --weights is refused at
   start-up, naming the flag.

Usage: bundled_test.py --bin BUILD/bin --source REPO [--work DIR]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import FAILURES, Daemon, check  # noqa: E402
from daemon_test import gen_stubs  # noqa: E402


def metric_values(text, name):
    out = []
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            out.append(float(line.rsplit(" ", 1)[1]))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--source", required=True)
    ap.add_argument("--work", required=True)
    a = ap.parse_args()
    shutil.rmtree(a.work, ignore_errors=True)
    os.makedirs(a.work)
    import grpc
    gen_stubs(a.source, os.path.join(a.work, "stubs"))
    from sparsed.v1 import sparsed_pb2 as pb, sparsed_pb2_grpc as pbg

    sparse = os.path.join(a.source, "models/sparsed-tiny")
    swiglu = os.path.join(a.source, "models/sparsed-tiny-swiglu")
    with open(os.path.join(a.source, "tests/data/sparsed-tiny-reference.json")) as f:
        reference = json.load(f)["prompts"][0]

    def daemon(name, *args):
        return Daemon(a.bin, a.work, name, "--kv_cache_mb", "32", *args)

    def greedy(stub, prompt, n):
        """n greedy tokens after `prompt` (BOS added, EOS ignored), with their ids."""
        return stub.Generate(pb.GenerateRequest(
            prompt=prompt, add_bos=True, sampling=pb.SamplingParams(temperature=0.0),
            stopping=pb.StoppingParams(max_new_tokens=n, ignore_eos=True),
            options=pb.GenerateOptions(include_token_ids=True)), timeout=60)

    def stub_for(d):
        d.wait_ready()
        channel = grpc.insecure_channel(f"127.0.0.1:{d.port}")
        grpc.channel_ready_future(channel).result(timeout=60)
        stub = pbg.SparsedStub(channel)
        return stub, stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=5)

    # 1. The default model, default flags.
    with daemon("default", "--model", sparse) as d:
        stub, info = stub_for(d)
        check(info.activation == "relu2" and info.sparsity_mode == "exact",
              f"default model: {info.activation}, mode {info.sparsity_mode}")
        n = len(reference["greedy"])
        r = greedy(stub, reference["prompt"], n)
        check(list(r.token_ids) == reference["greedy"],
              f"served greedy continuation equals PyTorch's: {r.text!r}")

    # 2. Calibrate the SwiGLU twin and serve it in threshold mode.
    prof = os.path.join(a.work, "sparsity.json")
    cal = subprocess.run([os.path.join(a.bin, "sparsed-calibrate"), "--model", swiglu, "--cett",
                          "0.2", "--text", os.path.join(a.source, "models/corpus/heldout.txt"),
                          "--calibration_tokens", "1024", "--eval_tokens", "1024", "--out", prof],
                         capture_output=True, text=True)
    check(cal.returncode == 0 and os.path.exists(prof), f"sparsed-calibrate: {cal.stdout[-300:]}")
    with daemon("threshold", "--model", swiglu, "--sparsity", "threshold", "--sparsity_file", prof) as d:
        stub, info = stub_for(d)
        check(info.activation == "silu" and info.sparsity_mode == "threshold",
              f"SwiGLU twin: {info.activation}, mode {info.sparsity_mode}")
        r = stub.Generate(pb.GenerateRequest(
            prompt="And the king said unto his servants,", add_bos=True,
            sampling=pb.SamplingParams(temperature=0.0),
            stopping=pb.StoppingParams(max_new_tokens=12, ignore_eos=True),
            options=pb.GenerateOptions(sparsity_stats=True)), timeout=60)
        check(len(r.text) > 0 and 0 < r.sparsity.mean_active_ratio < 1,
              f"threshold mode generates ({r.text!r}), active {r.sparsity.mean_active_ratio:.3f}")
        text = d.metrics()
        check(metric_values(text, "sparsed_cett_target") == [0.2], "sparsed_cett_target 0.2")
        ratios = metric_values(text, "sparsed_ffn_active_ratio")
        check(ratios and all(0 < v < 1 for v in ratios),
              f"per-layer activation ratios in threshold mode: {ratios}")

    # 3. A file made for another model is refused at start-up, naming the file.
    with daemon("mismatch", "--model", sparse, "--sparsity", "threshold", "--sparsity_file", prof) as d:
        rc = d.wait(60)
        if rc is None:  # it served: wrong (leaving the block stops it)
            rc = 0
    check(rc != 0 and prof in d.log() and "another model" in d.log(),
          f"mismatched sparsity.json refused (exit {rc})")

    # 4. The ProSparse model (sparsellama, FATReLU): exact mode, PyTorch's greedy continuations.
    prosparse = os.path.join(a.source, "models/sparsed-tiny-prosparse")
    with open(os.path.join(a.source, "tests/data/sparsed-tiny-prosparse-reference.json")) as f:
        prompts = json.load(f)["prompts"]
    with daemon("prosparse", "--model", prosparse) as d:
        stub, info = stub_for(d)
        check(info.activation == "fatrelu" and info.sparsity_mode == "exact",
              f"ProSparse model: {info.activation}, mode {info.sparsity_mode}")
        for p in prompts:
            r = greedy(stub, p["prompt"], len(p["greedy"]))
            check(list(r.token_ids) == p["greedy"],
                  f"ProSparse model: served greedy continuation equals PyTorch's: {r.text!r}")

    # 5. Quantized at load.
    with daemon("q8_0", "--model", sparse, "--weights", "q8_0") as d:
        stub, info = stub_for(d)
        check(info.dtype == "Q8_0" and "weights=Q8_0" in d.log(),
              f"--weights q8_0: model info dtype {info.dtype!r}")
        n = len(reference["greedy"])
        r = greedy(stub, reference["prompt"], n)
        same = 0
        while same < min(n, len(r.token_ids)) and r.token_ids[same] == reference["greedy"][same]:
            same += 1
        check(len(r.token_ids) == n and same >= 8,
              f"q8_0 greedy continuation shares {same} of {n} leading tokens with bf16's: {r.text!r}")
    with daemon("bad_weights", "--model", sparse, "--weights", "q5_1") as d:
        rc = d.wait(60)
        if rc is None:
            rc = 0
    check(rc != 0 and "weights" in d.log() and "q5_1" in d.log(),
          f"--weights q5_1 refused at start-up (exit {rc})")

    print(f"{len(FAILURES)} failure(s)")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
