#!/usr/bin/python3
"""Integration test of the running daemon with independent, real clients.

Starts `sparsed` on a synthetic model, then checks with Debian's python3-grpcio (stubs generated
here from our .proto and Debian's grpc-proto): health (Check and Watch), reflection, Generate,
GenerateStream, GetModelInfo, Tokenize, error statuses, cancellation and deadlines; the /metrics
text with promtool; a real Prometheus server scraping it; and the SIGTERM drain.

Usage: daemon_test.py --bin BUILD/bin --source REPO [--work DIR]
"""
import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

FAILURES = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        FAILURES.append(what)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gen_stubs(source, out):
    from grpc_tools import protoc
    os.makedirs(out, exist_ok=True)
    # Debian's grpc-proto files are copied to a flat folder: a generated package named `grpc`
    # would shadow the grpc module itself.
    flat = os.path.join(out, "protos")
    os.makedirs(flat, exist_ok=True)
    shutil.copy("/usr/share/grpc-proto/grpc/health/v1/health.proto", os.path.join(flat, "health.proto"))
    shutil.copy("/usr/share/grpc-proto/grpc/reflection/v1alpha/reflection.proto", os.path.join(flat, "reflection.proto"))
    for proto_path, proto in [(os.path.join(source, "proto"), "sparsed/v1/sparsed.proto"),
                              (flat, "health.proto"), (flat, "reflection.proto")]:
        rc = protoc.main(["protoc", f"--proto_path={proto_path}", f"--python_out={out}", f"--grpc_python_out={out}", proto])
        if rc != 0:
            raise RuntimeError(f"protoc failed for {proto}")
    sys.path.insert(0, out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--source", required=True)
    ap.add_argument("--work", default=None)
    a = ap.parse_args()
    work = a.work or tempfile.mkdtemp(prefix="sparsed_it_")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    import grpc
    gen_stubs(a.source, os.path.join(work, "stubs"))
    from sparsed.v1 import sparsed_pb2 as pb, sparsed_pb2_grpc as pbg
    import health_pb2, health_pb2_grpc, reflection_pb2, reflection_pb2_grpc

    model = os.path.join(work, "model")
    subprocess.run([os.path.join(a.bin, "sparsed-make-model"), "--out", model, "--preset", "small",
                    "--activation", "relu2", "--active_ratio", "0.15"], check=True, capture_output=True)
    port, mport = free_port(), free_port()
    log = open(os.path.join(work, "sparsed.log"), "w")
    proc = subprocess.Popen([os.path.join(a.bin, "sparsed"), "--model", model, "--listen", f"127.0.0.1:{port}",
                             "--metrics_listen", f"127.0.0.1:{mport}", "--kv_cache_mb", "64",
                             "--max_waiting_requests", "64", "--shutdown_timeout_s", "10"], stderr=log)
    prom = None
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        grpc.channel_ready_future(channel).result(timeout=60)
        health = health_pb2_grpc.HealthStub(channel)
        for name in ["", "sparsed.v1.Sparsed"]:
            r = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
            check(r.status == health_pb2.HealthCheckResponse.SERVING, f"health Check('{name}') is SERVING")
        watch = health.Watch(health_pb2.HealthCheckRequest(service="sparsed.v1.Sparsed"), timeout=5)
        check(next(watch).status == health_pb2.HealthCheckResponse.SERVING, "health Watch streams SERVING")
        watch.cancel()

        refl = reflection_pb2_grpc.ServerReflectionStub(channel)
        resp = next(refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5))
        services = {s.name for s in resp.list_services_response.service}
        check("sparsed.v1.Sparsed" in services, f"reflection lists sparsed.v1.Sparsed ({sorted(services)})")

        stub = pbg.SparsedStub(channel)
        info = stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=5)
        check(info.activation == "relu2" and info.sparsity_mode == "exact" and info.num_layers == 4,
              f"GetModelInfo: {info.activation}, {info.sparsity_mode}, {info.num_layers} layers")
        toks = stub.Tokenize(pb.TokenizeRequest(text="The quick brown fox", add_bos=True), timeout=5)
        check(len(toks.token_ids) > 2 and toks.token_ids[0] == 1, f"Tokenize: {list(toks.token_ids)[:8]}")

        req = pb.GenerateRequest(prompt="The quick brown fox", add_bos=True,
                                 sampling=pb.SamplingParams(temperature=0.0),
                                 stopping=pb.StoppingParams(max_new_tokens=16, ignore_eos=True),
                                 options=pb.GenerateOptions(include_token_ids=True, logprobs=1, sparsity_stats=True),
                                 request_id="it-1")
        unary = stub.Generate(req, timeout=30)
        check(unary.finish_reason == pb.FINISH_REASON_LENGTH and len(unary.token_ids) == 16,
              f"Generate: {len(unary.token_ids)} tokens, finish {unary.finish_reason}")
        check(unary.usage.generated_tokens == 16 and unary.usage.prompt_tokens == len(toks.token_ids), "usage counts")
        check(len(unary.logprobs) == 16 and all(lp.logprob <= 0 for lp in unary.logprobs), "logprobs per token")
        check(0 < unary.sparsity.mean_active_ratio <= unary.sparsity.mean_union_ratio <= 1,
              f"sparsity stats: active {unary.sparsity.mean_active_ratio:.3f}, union {unary.sparsity.mean_union_ratio:.3f}")
        check(unary.request_id == "it-1", "request_id echoed")

        text, ids, last = "", [], None
        for msg in stub.GenerateStream(req, timeout=30):
            text += msg.text
            ids += list(msg.token_ids)
            last = msg
        check(ids == list(unary.token_ids) and text == unary.text, "GenerateStream equals Generate (greedy)")
        check(last is not None and last.finish_reason == pb.FINISH_REASON_LENGTH, "stream ends with finish_reason")

        # Seeded sampling is reproducible.
        sreq = pb.GenerateRequest(prompt_token_ids=pb.PromptTokenIds(ids=[1, 5, 6, 7]),
                                  sampling=pb.SamplingParams(temperature=1.0, seed=42),
                                  stopping=pb.StoppingParams(max_new_tokens=12, ignore_eos=True),
                                  options=pb.GenerateOptions(include_token_ids=True))
        a1 = stub.Generate(sreq, timeout=30).token_ids
        a2 = stub.Generate(sreq, timeout=30).token_ids
        check(list(a1) == list(a2), "same seed, same tokens")

        # Concurrent requests are batched and each equals its unbatched result.
        results = {}
        def run(i):
            results[i] = stub.Generate(req, timeout=60).token_ids
        threads = [threading.Thread(target=run, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        check(all(list(results[i]) == list(unary.token_ids) for i in range(6)), "6 concurrent requests match alone")

        def code_of(fn):
            try:
                fn()
            except grpc.RpcError as e:
                return e.code(), e.details()
            return grpc.StatusCode.OK, ""
        code, msg = code_of(lambda: stub.Generate(pb.GenerateRequest(prompt="x", sampling=pb.SamplingParams(top_p=2.0)), timeout=5))
        check(code == grpc.StatusCode.INVALID_ARGUMENT and "sampling.top_p" in msg, f"bad top_p: {code} {msg}")
        code, msg = code_of(lambda: stub.Generate(pb.GenerateRequest(), timeout=5))
        check(code == grpc.StatusCode.INVALID_ARGUMENT and "prompt" in msg, f"no prompt: {code} {msg}")
        code, msg = code_of(lambda: stub.Generate(pb.GenerateRequest(prompt_token_ids=pb.PromptTokenIds(ids=[1, 10**6])), timeout=5))
        check(code == grpc.StatusCode.INVALID_ARGUMENT and "prompt_token_ids[1]" in msg, f"bad token id: {code} {msg}")
        code, msg = code_of(lambda: stub.Generate(pb.GenerateRequest(prompt_token_ids=pb.PromptTokenIds(ids=[5] * 5000)), timeout=5))
        check(code == grpc.StatusCode.INVALID_ARGUMENT and "5000" in msg, f"prompt too long: {code} {msg}")
        code, msg = code_of(lambda: stub.Generate(pb.GenerateRequest(prompt="x", stopping=pb.StoppingParams(max_new_tokens=2000, ignore_eos=True)), timeout=0.001))
        check(code == grpc.StatusCode.DEADLINE_EXCEEDED, f"client deadline honoured: {code}")

        # Client cancellation mid-stream frees the sequence; the server keeps serving.
        long_req = pb.GenerateRequest(prompt="x", stopping=pb.StoppingParams(max_new_tokens=2000, ignore_eos=True))
        call = stub.GenerateStream(long_req, timeout=60)
        next(call)
        call.cancel()
        time.sleep(0.5)
        after = stub.Generate(req, timeout=30)
        check(list(after.token_ids) == list(unary.token_ids), "serves normally after a cancelled stream")

        # Metrics: format, content, and a real Prometheus scrape.
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=5).read().decode()
        pt = subprocess.run(["promtool", "check", "metrics"], input=metrics, capture_output=True, text=True)
        check(pt.returncode == 0, "promtool check metrics: " + (pt.stdout + pt.stderr).strip()[:300])
        for name in ["sparsed_requests_total", "sparsed_time_to_first_token_seconds_bucket",
                     "sparsed_inter_token_latency_seconds_bucket", 'sparsed_ffn_active_ratio{layer="0"}',
                     "sparsed_ffn_rows_skipped_total", "sparsed_kv_blocks_used", "sparsed_batch_sequences_bucket"]:
            check(name in metrics, f"/metrics has {name}")
        check('sparsed_requests_total{outcome="rejected"} 4' in metrics, "rejected requests counted")
        pport = free_port()
        cfg = os.path.join(work, "prometheus.yml")
        with open(cfg, "w") as f:
            f.write(f"global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: sparsed\n"
                    f"    static_configs:\n      - targets: ['127.0.0.1:{mport}']\n")
        prom = subprocess.Popen(["prometheus", f"--config.file={cfg}", f"--storage.tsdb.path={work}/tsdb",
                                 f"--web.listen-address=127.0.0.1:{pport}"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        value = None
        for _ in range(60):
            time.sleep(0.5)
            try:
                q = urllib.request.urlopen(f"http://127.0.0.1:{pport}/api/v1/query?query=sparsed_generated_tokens_total",
                                           timeout=2).read()
                res = json.loads(q)["data"]["result"]
                if res:
                    value = float(res[0]["value"][1])
                    break
            except Exception:
                pass
        check(value is not None and value >= 16 * 10, f"Prometheus scraped sparsed_generated_tokens_total = {value}")

        # SIGTERM: NOT_SERVING, in-flight work finishes, exit 0.
        inflight = stub.GenerateStream(pb.GenerateRequest(prompt="x", stopping=pb.StoppingParams(max_new_tokens=64, ignore_eos=True)), timeout=60)
        next(inflight)
        proc.send_signal(signal.SIGTERM)
        got = sum(1 for _ in inflight)
        check(got > 0, f"in-flight stream finished during drain ({got} more messages)")
        rc = proc.wait(timeout=30)
        check(rc == 0, f"exit code after SIGTERM: {rc}")
    finally:
        if prom:
            prom.terminate()
            prom.wait(timeout=10)
        if proc.poll() is None:
            proc.kill()
        log.close()
    if FAILURES:
        print(open(os.path.join(work, "sparsed.log")).read()[-3000:])
        print(f"{len(FAILURES)} failure(s)")
        return 1
    shutil.rmtree(work, ignore_errors=True)
    print("all integration checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
