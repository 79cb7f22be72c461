#!/usr/bin/python3
"""Integration test of the running daemon with independent, real clients.

Starts `sparsed` on a synthetic model, then checks with Debian's python3-grpcio (stubs generated
here from our .proto and Debian's grpc-proto): health (Check and Watch), reflection, Generate,
GenerateStream, GetModelInfo, Tokenize, error statuses, cancellation and deadlines; the /metrics
text with promtool; a real Prometheus server scraping it; and the SIGTERM drain.

Usage: daemon_test.py --bin BUILD/bin --source REPO [--work DIR]
"""
import errno
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import FAILURES, Daemon, check, free_port, metric, parse_test_args  # noqa: E402


def gen_stubs(source, out):
    from grpc_tools import protoc
    os.makedirs(out, exist_ok=True)
    # Debian's grpc-proto files are copied to a flat folder: a generated package named `grpc`
    # would shadow the grpc module itself.
    flat = os.path.join(out, "protos")
    os.makedirs(flat, exist_ok=True)
    shutil.copy("/usr/share/grpc-proto/grpc/health/v1/health.proto", os.path.join(flat, "health.proto"))
    shutil.copy("/usr/share/grpc-proto/grpc/reflection/v1alpha/reflection.proto", os.path.join(flat, "reflection.proto"))
    shutil.copy("/usr/share/grpc-proto/grpc/reflection/v1/reflection.proto", os.path.join(flat, "reflection_v1.proto"))
    for proto_path, proto in [(os.path.join(source, "proto"), "sparsed/v1/sparsed.proto"),
                              (flat, "health.proto"), (flat, "reflection.proto"), (flat, "reflection_v1.proto")]:
        rc = protoc.main(["protoc", f"--proto_path={proto_path}", f"--python_out={out}", f"--grpc_python_out={out}", proto])
        if rc != 0:
            raise RuntimeError(f"protoc failed for {proto}")
    sys.path.insert(0, out)


class LoadGate:
    """Holds the daemon's model load until `release()`, so that a client sees the daemon loading.

    The load's first read is the model's config.json (engine/model/checkpoint.cc), which the daemon
    reaches only after it listens with health NOT_SERVING (server/main.cc). Here config.json is a
    FIFO, whose open for reading blocks until a writer opens it."""

    def __init__(self, model_dir):
        self.path = os.path.join(model_dir, "config.json")
        with open(self.path, "rb") as f:
            self.text = f.read()
        os.remove(self.path)
        os.mkfifo(self.path)
        self.held = True

    def release(self, timeout=60):
        """Lets the load go on. Once the daemon waits on the FIFO, opens it for writing, puts the
        plain file back in its place (for any later read of config.json) and writes the text to
        the daemon. Returns whether the daemon waited on the FIFO within
        `timeout` seconds (the plain file is put back either way; a second call does nothing)."""
        if not self.held:
            return True
        self.held = False
        fd, end = None, time.time() + timeout
        while fd is None and time.time() < end:
            try:  # without a reader, a non-blocking open for writing fails at once (ENXIO)
                fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as e:
                if e.errno != errno.ENXIO:
                    raise
                time.sleep(0.005)
        with open(self.path + ".tmp", "wb") as f:
            f.write(self.text)
        os.replace(self.path + ".tmp", self.path)
        if fd is None:
            return False
        os.set_blocking(fd, True)
        with os.fdopen(fd, "wb") as f:
            f.write(self.text)
        return True


def main():
    a, work = parse_test_args("sparsed_it_")
    import grpc
    gen_stubs(a.source, os.path.join(work, "stubs"))
    from sparsed.v1 import sparsed_pb2 as pb, sparsed_pb2_grpc as pbg
    import health_pb2, health_pb2_grpc, reflection_pb2, reflection_pb2_grpc
    import reflection_v1_pb2, reflection_v1_pb2_grpc
    from google.protobuf import descriptor_pb2

    model = os.path.join(work, "model")
    subprocess.run([os.path.join(a.bin, "sparsed-make-model"), "--out", model, "--preset", "small",
                    "--activation", "relu2", "--active_ratio", "0.15", "--hidden", "512", "--intermediate", "1536",
                    "--layers", "6"], check=True, capture_output=True)
    # The daemon listens before it loads the model; the gate holds the load until the health
    # Watch below has seen the daemon loading.
    gate = LoadGate(model)
    d = Daemon(a.bin, work, "sparsed", "--kv_cache_mb", "64", "--max_waiting_requests", "64",
               "--shutdown_timeout_s", "10", model=model).start()
    port, mport = d.port, d.mport
    prom = None
    try:
        check(d.wait_log('msg="listening"', timeout=60) and 'msg="serving"' not in d.log(),
              "the daemon listens while its model load is held")
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        grpc.channel_ready_future(channel).result(timeout=60)
        health = health_pb2_grpc.HealthStub(channel)
        # Across start-up: NOT_SERVING while the model loads, then SERVING. The Watch starts while
        # the load is held, so its first status is the loading one.
        watch = health.Watch(health_pb2.HealthCheckRequest(service="sparsed.v1.Sparsed"), timeout=60)
        seen = [next(watch).status]
        loading = [health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5).status
                   for name in ("", "liveness")]
        check(loading == [health_pb2.HealthCheckResponse.NOT_SERVING, health_pb2.HealthCheckResponse.SERVING],
              f"while the model loads, health Check('') is NOT_SERVING and Check('liveness') SERVING "
              f"({[health_pb2.HealthCheckResponse.ServingStatus.Name(x) for x in loading]})")
        check(gate.release(), "the model load waited on config.json while the Watch started")
        if seen[-1] != health_pb2.HealthCheckResponse.SERVING:
            for r in watch:
                seen.append(r.status)
                if r.status == health_pb2.HealthCheckResponse.SERVING:
                    break
        watch.cancel()
        ok_seq = len(seen) >= 2 and seen[-1] == health_pb2.HealthCheckResponse.SERVING and all(
            x == health_pb2.HealthCheckResponse.NOT_SERVING for x in seen[:-1])
        check(ok_seq, f"health Watch across start-up: {[health_pb2.HealthCheckResponse.ServingStatus.Name(x) for x in seen]}")
        for name in ["", "sparsed.v1.Sparsed", "liveness"]:
            r = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
            check(r.status == health_pb2.HealthCheckResponse.SERVING, f"health Check('{name}') is SERVING")
        watch = health.Watch(health_pb2.HealthCheckRequest(service="sparsed.v1.Sparsed"), timeout=5)
        check(next(watch).status == health_pb2.HealthCheckResponse.SERVING, "health Watch streams SERVING")
        watch.cancel()

        refl = reflection_pb2_grpc.ServerReflectionStub(channel)
        resp = next(refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5))
        services = {s.name for s in resp.list_services_response.service}
        check("sparsed.v1.Sparsed" in services, f"reflection lists sparsed.v1.Sparsed ({sorted(services)})")
        # Reflection v1 (what current grpcurl asks first): services, then the descriptor of a
        # method's file, then an unknown symbol.
        refl1 = reflection_v1_pb2_grpc.ServerReflectionStub(channel)
        R = reflection_v1_pb2.ServerReflectionRequest
        answers = list(refl1.ServerReflectionInfo(iter([
            R(list_services=""), R(file_containing_symbol="sparsed.v1.Sparsed.GenerateStream"),
            R(file_containing_symbol="no.such.Symbol")]), timeout=5))
        services1 = {s.name for s in answers[0].list_services_response.service}
        check({"sparsed.v1.Sparsed", "grpc.reflection.v1.ServerReflection"} <= services1,
              f"reflection v1 lists the services ({sorted(services1)})")
        files = []
        for raw in answers[1].file_descriptor_response.file_descriptor_proto:
            fd = descriptor_pb2.FileDescriptorProto()
            fd.ParseFromString(raw)
            files.append(fd)
        sparsed_file = [f for f in files if f.package == "sparsed.v1"]
        check(sparsed_file and any(s.name == "Sparsed" and any(m.name == "GenerateStream" for m in s.method)
                                   for s in sparsed_file[0].service),
              f"reflection v1 returns the file describing sparsed.v1.Sparsed ({[f.name for f in files]})")
        check(answers[2].error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0],
              f"reflection v1: an unknown symbol is NOT_FOUND ({answers[2].error_response})")

        stub = pbg.SparsedStub(channel)
        info = stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=5)
        check(info.activation == "relu2" and info.sparsity_mode == "exact" and info.num_layers == 6,
              f"GetModelInfo: {info.activation}, {info.sparsity_mode}, {info.num_layers} layers")
        started = d.log()
        check(info.device in ("cpu", "cuda") and f"device={info.device}" in started,
              f"GetModelInfo.device '{info.device}' is the device the start-up log names")
        toks = stub.Tokenize(pb.TokenizeRequest(text="The quick brown fox", add_bos=True), timeout=5)
        check(len(toks.token_ids) > 2 and toks.token_ids[0] == 1, f"Tokenize: {list(toks.token_ids)[:8]}")

        req = pb.GenerateRequest(prompt="The quick brown fox", add_bos=True,
                                 sampling=pb.SamplingParams(temperature=0.0),
                                 stopping=pb.StoppingParams(max_new_tokens=16, ignore_eos=True),
                                 options=pb.GenerateOptions(include_token_ids=True, logprobs=3, sparsity_stats=True),
                                 request_id="it-1")
        unary = stub.Generate(req, timeout=30)
        check(unary.finish_reason == pb.FINISH_REASON_LENGTH and len(unary.token_ids) == 16,
              f"Generate: {len(unary.token_ids)} tokens, finish {unary.finish_reason}")
        check(unary.usage.generated_tokens == 16 and unary.usage.prompt_tokens == len(toks.token_ids), "usage counts")
        check(len(unary.logprobs) == 16 and all(lp.logprob <= 0 for lp in unary.logprobs), "logprobs per token")
        check(all(len(lp.top) == 3 and lp.top[0].logprob >= lp.top[1].logprob >= lp.top[2].logprob and
                  lp.top[0].token_id == lp.token_id and abs(lp.top[0].logprob - lp.logprob) < 1e-6
                  for lp in unary.logprobs), "top-3 alternatives per token, best first (greedy picks the best)")
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

        # Router RPCs: the server's load, and Abort from another connection.
        load = stub.GetServerLoad(pb.GetServerLoadRequest(), timeout=5)
        check(load.model_name == "model" and load.ready and not load.draining and load.engine_healthy
              and load.kv_blocks_capacity > 0 and load.max_waiting_requests > 0,
              f"GetServerLoad: {str(load).strip().replace(chr(10), ', ')}")
        victim = stub.GenerateStream(pb.GenerateRequest(prompt="x", request_id="abort-me", stopping=pb.StoppingParams(
            max_new_tokens=400, ignore_eos=True)), timeout=60)
        next(victim)
        other_channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)])
        other = pbg.SparsedStub(other_channel)
        for _ in range(200):  # the load is the state at the end of the last step
            busy = other.GetServerLoad(pb.GetServerLoadRequest(), timeout=5)
            if busy.running_sequences >= 1 and busy.kv_blocks_used > 0:
                break
            time.sleep(0.005)
        try:
            aborted = other.Abort(pb.AbortRequest(request_id="abort-me"), timeout=5)
        except grpc.RpcError as e:
            aborted = pb.AbortResponse()
            print(f"Abort failed: {e.code().name} {e.details()}", flush=True)
        try:
            for _ in victim:
                pass
            victim_code = grpc.StatusCode.OK
        except grpc.RpcError as e:
            victim_code = e.code()
        check(busy.running_sequences >= 1 and busy.kv_blocks_used > 0 and aborted.aborted == 1
              and victim_code == grpc.StatusCode.CANCELLED,
              f"Abort from another connection ends the request CANCELLED (running {busy.running_sequences}, "
              f"aborted {aborted.aborted}, {victim_code.name})")
        freed = None
        for _ in range(100):
            freed = other.GetServerLoad(pb.GetServerLoadRequest(), timeout=5)
            if freed.kv_blocks_used == 0 and freed.running_sequences == 0:
                break
            time.sleep(0.02)
        check(freed.kv_blocks_used == 0 and freed.running_sequences == 0, "and frees its KV blocks at once")
        for rid, want in (("no-such-request", grpc.StatusCode.NOT_FOUND), ("", grpc.StatusCode.INVALID_ARGUMENT)):
            try:
                other.Abort(pb.AbortRequest(request_id=rid), timeout=5)
                got = grpc.StatusCode.OK
            except grpc.RpcError as e:
                got = e.code()
            check(got == want, f"Abort({rid!r}): {got.name}")
        other_channel.close()

        # Prefix cache: a long prompt twice. The second reuses the first's full KV blocks (all but
        # the last token's block) and gives the same tokens and log-probabilities, to the bit.
        preq = pb.GenerateRequest(prompt="You are a careful assistant. " * 12 + "What is a fox?", add_bos=True,
                                  sampling=pb.SamplingParams(temperature=0.0),
                                  stopping=pb.StoppingParams(max_new_tokens=8, ignore_eos=True),
                                  options=pb.GenerateOptions(include_token_ids=True, logprobs=1))
        p1 = stub.Generate(preq, timeout=30)
        p2 = stub.Generate(preq, timeout=30)
        n = p2.usage.prompt_tokens
        check(n > 32 and p2.usage.cached_prompt_tokens == (n - 1) // 16 * 16,
              f"prefix cache: {p2.usage.cached_prompt_tokens} of {n} prompt tokens reused (first run: "
              f"{p1.usage.cached_prompt_tokens})")
        check(list(p1.token_ids) == list(p2.token_ids) and
              [lp.logprob for lp in p1.logprobs] == [lp.logprob for lp in p2.logprobs],
              "prefix cache: same tokens and log-probabilities as the computed prompt")
        hits = metric(d.metrics(),
                      "sparsed_prefix_cache_hits_total", model_name="model")
        check(hits >= p2.usage.cached_prompt_tokens, f"sparsed_prefix_cache_hits_total counts them ({hits})")

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

        # The C++ client (sparsed-cli) agrees with the Python one.
        cli = os.path.join(a.bin, "sparsed-cli")
        srv = ["--server", f"127.0.0.1:{port}"]
        out = subprocess.run([cli] + srv + ["health"], capture_output=True, text=True)
        check(out.returncode == 0 and out.stdout.strip() == "SERVING", f"sparsed-cli health: {out.stdout.strip()}")
        out = subprocess.run([cli] + srv + ["--max_new_tokens", "16", "generate", "The quick brown fox"],
                             capture_output=True, text=True)
        check(out.returncode == 0 and out.stdout == "The quick brown fox" + unary.text + "\n",
              "sparsed-cli generate prints the same text as the Python client")
        out = subprocess.run([cli] + srv + ["--max_new_tokens", "16", "stream", "The quick brown fox"],
                             capture_output=True, text=True)
        check(out.returncode == 0 and out.stdout == "The quick brown fox" + unary.text + "\n", "sparsed-cli stream")
        out = subprocess.run([cli] + srv + ["tokenize", "The quick brown fox"], capture_output=True, text=True)
        check(out.stdout.split() == [str(t) for t in toks.token_ids], "sparsed-cli tokenize")
        out = subprocess.run([cli] + srv + ["info"], capture_output=True, text=True)
        check(out.returncode == 0 and 'activation: "relu2"' in out.stdout, "sparsed-cli info")
        out = subprocess.run([cli] + srv + ["--max_new_tokens", "1048576", "generate", "x"],
                             capture_output=True, text=True)
        check(out.returncode != 0 and "exceeds the context" in out.stderr and out.stdout == "",
              "sparsed-cli reports the server's refusal on stderr with a non-zero exit")
        out = subprocess.run([cli] + srv + ["--temperature", "-1", "generate", "x"], capture_output=True, text=True)
        check(out.returncode == 1 and "--temperature=-1 is out of range" in out.stderr and out.stdout == "",
              "sparsed-cli refuses a flag out of its range before calling")
        out = subprocess.run([cli, "--server", "127.0.0.1:1", "--timeout_s", "2", "health"], capture_output=True, text=True)
        check(out.returncode != 0 and "error" in out.stderr, "sparsed-cli reports an unreachable server")

        # 32 concurrent streaming clients get what one client gets alone.
        streams = {}
        def stream_one(i):
            streams[i] = "".join(m.text for m in stub.GenerateStream(req, timeout=120))
        threads = [threading.Thread(target=stream_one, args=(i,)) for i in range(32)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        check(len(streams) == 32 and all(v == unary.text for v in streams.values()), "32 concurrent streams match one alone")

        # Time to first token is observed when the first token comes, not when the request ends
        # (nothing else is in flight here: every request above has finished).
        def ttft_count():
            m = d.metrics()
            return metric(m, "sparsed_time_to_first_token_seconds_count", model_name="model")
        before_ttft = ttft_count()
        running = stub.GenerateStream(pb.GenerateRequest(prompt="x", stopping=pb.StoppingParams(
            max_new_tokens=2000, ignore_eos=True)), timeout=60)
        next(running)
        during_ttft = ttft_count()
        running.cancel()
        check(before_ttft is not None and during_ttft == before_ttft + 1,
              f"TTFT observed at the first token, while the stream runs ({before_ttft} -> {during_ttft})")

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
        # Admission before work: a prompt too long for the context whatever it says is refused
        # by its size, without being tokenized (3 MiB would take seconds to tokenize here).
        huge = "The quick brown fox jumps. " * (3 << 15)
        t0 = time.time()
        code, msg = code_of(lambda: stub.Generate(pb.GenerateRequest(prompt=huge), timeout=30))
        took = time.time() - t0
        check(code == grpc.StatusCode.INVALID_ARGUMENT and "prompt has" in msg and "bytes" in msg and took < 2,
              f"a {len(huge)}-byte prompt is refused by its size in {took:.2f} s: {code} {msg[:160]}")
        code, msg = code_of(lambda: stub.Tokenize(pb.TokenizeRequest(text=huge), timeout=30))
        check(code == grpc.StatusCode.INVALID_ARGUMENT and "text has" in msg,
              f"Tokenize caps its text the same way: {code} {msg[:160]}")
        bad_fields = [
            ("sampling.temperature", pb.SamplingParams(temperature=-0.5), None, None),
            ("sampling.top_k", pb.SamplingParams(top_k=-1), None, None),
            ("sampling.top_p", pb.SamplingParams(top_p=0.0), None, None),
            ("sampling.min_p", pb.SamplingParams(min_p=1.5), None, None),
            ("sampling.repetition_penalty", pb.SamplingParams(repetition_penalty=0.0), None, None),
            ("sampling.presence_penalty", pb.SamplingParams(presence_penalty=3.0), None, None),
            ("sampling.frequency_penalty", pb.SamplingParams(frequency_penalty=-3.0), None, None),
            ("options.logprobs", None, None, pb.GenerateOptions(logprobs=21)),
            ("stopping.max_new_tokens", None, pb.StoppingParams(max_new_tokens=2000000), None),
            ("stopping.stop", None, pb.StoppingParams(stop=["s"] * 17), None),
            ("stopping.stop_token_ids", None, pb.StoppingParams(stop_token_ids=[-4]), None),
        ]
        for field, sp, st, op in bad_fields:
            r = pb.GenerateRequest(prompt="x")
            if sp is not None:
                r.sampling.CopyFrom(sp)
            if st is not None:
                r.stopping.CopyFrom(st)
            if op is not None:
                r.options.CopyFrom(op)
            code, msg = code_of(lambda: stub.Generate(r, timeout=5))
            check(code == grpc.StatusCode.INVALID_ARGUMENT and field in msg, f"bad {field}: {code} {msg}")
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
        # A deadline that expires mid-generation (not before the call starts) also frees its blocks.
        code, _ = code_of(lambda: stub.Generate(pb.GenerateRequest(prompt="x", stopping=pb.StoppingParams(max_new_tokens=4000, ignore_eos=True)), timeout=0.3))
        check(code == grpc.StatusCode.DEADLINE_EXCEEDED, f"deadline mid-generation: {code}")
        used = None
        for _ in range(40):
            m = d.metrics()
            used = metric(m, "sparsed_kv_blocks_used", model_name="model")
            if used == 0:
                break
            time.sleep(0.05)
        check(used == 0, f"KV blocks freed after cancel and deadline (sparsed_kv_blocks_used = {used})")

        # Metrics: format, content, and a real Prometheus scrape.
        metrics = d.metrics()
        pt = subprocess.run(["promtool", "check", "metrics"], input=metrics, capture_output=True, text=True)
        check(pt.returncode == 0, "promtool check metrics: " + (pt.stdout + pt.stderr).strip()[:300])
        for name in ["sparsed_requests_total", "sparsed_time_to_first_token_seconds_bucket",
                     "sparsed_inter_token_latency_seconds_bucket", 'sparsed_ffn_active_ratio{model_name="model",layer="0"}',
                     "sparsed_ffn_rows_skipped_total", "sparsed_kv_blocks_used", "sparsed_batch_sequences_bucket"]:
            check(name in metrics, f"/metrics has {name}")
        check(metric(metrics, "sparsed_requests_total", model_name="model", outcome="rejected") == 6 + len(bad_fields),
              "rejected requests counted (the series labelled with the model's name)")
        refused = [l for l in d.log().splitlines() if 'msg="request refused"' in l]
        rejected = 6 + len(bad_fields)
        check(1 <= len(refused) < rejected and all("code=INVALID_ARGUMENT" in l or "code=RESOURCE_EXHAUSTED" in l
                                                   for l in refused),
              f"refused requests are logged, at most one line a second ({len(refused)} lines for {rejected} refusals)")
        deadline = metric(metrics, "sparsed_requests_total", outcome="deadline")
        check(deadline is not None and deadline >= 1,
              f"a client deadline mid-generation is counted as a deadline, not a cancel: {deadline}")
        check('sparsed_model_info{' in metrics and 'sparsed_build_info{' in metrics, "build and model info series")
        check(re.search(r'sparsed_model_info\{[^}]*device="cpu"', metrics) is not None,
              "the serving device is a label of sparsed_model_info")
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
        check(value is not None and value >= 16 * 40, f"Prometheus scraped sparsed_generated_tokens_total = {value}")
        def prom_query(q):
            r = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{pport}/api/v1/query?query=" + urllib.parse.quote(q), timeout=5).read())
            return r["data"]["result"]
        ttft = prom_query("histogram_quantile(0.5, sparsed_time_to_first_token_seconds_bucket)")
        check(ttft and 0 < float(ttft[0]["value"][1]) < 30, f"TTFT p50 from Prometheus: {ttft and ttft[0]['value'][1]}")
        layers = prom_query("sparsed_ffn_active_ratio")
        check(len(layers) == 6 and all(0 < float(x["value"][1]) < 0.6 for x in layers),
              f"per-layer activation ratio series: {[round(float(x['value'][1]), 3) for x in layers]}")
        unions = prom_query("sparsed_ffn_layer_union_ratio")
        check(len(unions) == 6 and all(0 < float(x["value"][1]) <= 1 for x in unions), "per-layer union ratio series")

        # SIGTERM: NOT_SERVING, in-flight work finishes, exit 0.
        inflight = stub.GenerateStream(pb.GenerateRequest(prompt="x", stopping=pb.StoppingParams(max_new_tokens=64, ignore_eos=True)), timeout=60)
        next(inflight)
        drain_watch = health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=30)
        first = next(drain_watch).status
        d.terminate()
        second = next(drain_watch).status
        check(first == health_pb2.HealthCheckResponse.SERVING and second == health_pb2.HealthCheckResponse.NOT_SERVING,
              "health Watch reports NOT_SERVING on SIGTERM")
        got = sum(1 for _ in inflight)
        check(got > 0, f"in-flight stream finished during drain ({got} more messages)")
        rc = d.wait(timeout=30)
        check(rc == 0, f"exit code after SIGTERM: {rc}")
    finally:
        if prom:
            prom.terminate()
            prom.wait(timeout=10)
        gate.release(timeout=5)  # a check above failed before the load was let go: let it go now
        d.stop()
    # --device=cuda without a usable GPU fails at start-up, naming the flag and the reason (on a
    # GPU host the daemon starts instead; it is then stopped).
    with Daemon(a.bin, work, "cuda", "--device", "cuda", "--kv_cache_mb", "64", model=model) as cuda:
        rc = cuda.wait(timeout=30)
        if rc is not None:
            err = cuda.log()
            check(rc != 0 and "--device=cuda" in err, f"--device=cuda without a GPU: exit {rc}, {err.strip()[-200:]}")
    # An unknown KV-cache element type fails at start-up, naming the flag.
    with Daemon(a.bin, work, "fp8", "--kv_cache_dtype", "fp8", "--kv_cache_mb", "64", model=model) as bad:
        rc = bad.wait(timeout=60)
        err = bad.log()
    check(rc is not None and rc != 0 and "kv_cache_dtype" in err,
          f"--kv_cache_dtype=fp8: exit {rc}, {err.strip()[-200:]}")
    if FAILURES:
        print(d.tail())
        print(f"{len(FAILURES)} failure(s)")
        return 1
    shutil.rmtree(work, ignore_errors=True)
    print("all integration checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
