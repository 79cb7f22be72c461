#!/usr/bin/env python3
"""The daemon as a worker of the smg gateway (PyPI `smg`, the real gateway binary, in the venv
scripts/test-venv.sh makes), with the official `openai` SDK as the client and the gateway's own
published protocol stubs (`smg-grpc-proto`) as an independent client of vLLM's engine protocol.

The protocol itself: health, model and server info, loads, the tokenizer zip and its SHA-256;
Generate streamed and not (the chunks concatenate to the unary output), with logprobs and a
matched stop; every unsupported field refused INVALID_ARGUMENT by name; Abort from another
connection frees the KV blocks.

Through the gateway: its token ids equal the daemon's own tokenizer's on the test corpus
(tests/data/tokenizer_cases.json and models/corpus/heldout.txt); completions and chat
completions, streaming and not, give the greedy text the daemon's own API gives; with three
replicas, cache_aware routing sends a repeated long prefix to the replica holding it (cached
tokens reported); power_of_two reads GetLoads; a replica killed with SIGKILL under load is routed
around and rejoins when restarted; a replica sent SIGTERM drains and gets no new work; a client
that disconnects mid-stream has its request aborted and its KV blocks freed.

Usage: gateway_test.py --bin BUILD/bin --source REPO [--work DIR]   (run with the venv's python)
"""
import atexit
import concurrent.futures
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import zipfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import FAILURES, Daemon, check, free_port, metric, parse_test_args  # noqa: E402

import grpc  # noqa: E402
import openai  # noqa: E402
from smg_grpc_proto.generated import common_pb2 as cpb  # noqa: E402
from smg_grpc_proto.generated import vllm_engine_pb2 as vpb  # noqa: E402
from smg_grpc_proto.generated import vllm_engine_pb2_grpc as vpbg  # noqa: E402

MODEL_NAME = "sparsed-tiny"
PROMPT = "And the king said unto his servants,"
BIN = []  # the build's bin folder, set by main


class Gateway:
    """One `smg launch` in front of `workers` (grpc://HOST:PORT), on free loopback ports; its
    output in WORK/NAME.log. Health is probed every second so that the tests see failover in
    seconds (the gateway's default is a minute)."""

    def __init__(self, work, name, workers, policy):
        self.port, self.mport = free_port(), free_port()
        smg = os.path.join(os.path.dirname(sys.executable), "smg")
        self.cmd = [smg, "launch", "--host", "127.0.0.1", "--port", str(self.port),
                    "--prometheus-host", "127.0.0.1", "--prometheus-port", str(self.mport),
                    "--policy", policy, "--health-check-interval-secs", "1",
                    "--health-failure-threshold", "1", "--health-success-threshold", "1",
                    "--worker-startup-timeout-secs", "60",
                    "--worker-urls"] + [f"grpc://{w}" for w in workers]
        self.log_path = os.path.join(work, f"{name}.log")
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def __enter__(self):
        with open(self.log_path, "w") as log:
            # The gateway writes its temporary tokenizer copies under the working folder's TMPDIR.
            self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT,
                                         cwd=os.path.dirname(self.log_path),
                                         start_new_session=True)
        # The gateway renames its process ("smg::router"): stop it by its group, even when the
        # test dies.
        atexit.register(self.__exit__)
        end = time.time() + 90
        while time.time() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"smg exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                models = json.loads(self.get("/v1/models"))
                if any(m["id"] == MODEL_NAME for m in models.get("data", [])):
                    return self
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"smg did not list {MODEL_NAME} within 90 s:\n{self.tail()}")

    def __exit__(self, *exc):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        if self.proc:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
        return False

    def tail(self, chars=3000):
        with open(self.log_path, errors="replace") as f:
            return f.read()[-chars:]

    def get(self, path):
        with urllib.request.urlopen(self.url + path, timeout=10) as r:
            return r.read().decode()

    def post(self, path, body):
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(),
                                     headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read().decode())

    def client(self):
        return openai.OpenAI(base_url=self.url + "/v1", api_key="unused", max_retries=0,
                             timeout=120)


def daemon_text(d, prompt, max_tokens, add_bos=True):
    """The greedy completion of the daemon's own API (sparsed.v1 through sparsed-cli, which
    prints the prompt and then the completion)."""
    out = subprocess.run([os.path.join(BIN[0], "sparsed-cli"), "--server", f"127.0.0.1:{d.port}",
                          f"--add_bos={'true' if add_bos else 'false'}",
                          "--max_new_tokens", str(max_tokens), "generate", prompt],
                         capture_output=True, text=True, timeout=120)
    if out.returncode != 0 or not out.stdout.startswith(prompt):
        raise RuntimeError(f"sparsed-cli generate: {out.stdout[:200]!r} {out.stderr}")
    return out.stdout[len(prompt):].rstrip("\n")


def daemon_ids(d, text):
    out = subprocess.run([os.path.join(BIN[0], "sparsed-cli"), "--server", f"127.0.0.1:{d.port}",
                          "--add_bos=false", "tokenize", "--prompt", text],
                         capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    return [int(x) for x in out.stdout.split()]


def kv_used(d):
    return metric(d.metrics(), "sparsed_kv_blocks_used")


def wait_until(fn, timeout=30, step=0.1):
    end = time.time() + timeout
    while time.time() < end:
        if fn():
            return True
        time.sleep(step)
    return False


def expect_invalid(stub, req, field, what):
    try:
        list(stub.Generate(req, timeout=30))
        check(False, f"{what}: refused")
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.INVALID_ARGUMENT and field in e.details(),
              f"{what}: INVALID_ARGUMENT naming {field} ({e.code().name}: {e.details()[:120]})")


def protocol_cases(d, tokenizer):
    ch = grpc.insecure_channel(f"127.0.0.1:{d.port}")
    stub = vpbg.VllmEngineStub(ch)
    h = stub.HealthCheck(vpb.HealthCheckRequest(), timeout=10)
    check(h.healthy and h.message == "serving", f"HealthCheck: healthy ({h.message})")
    info = stub.GetModelInfo(vpb.GetModelInfoRequest(), timeout=10)
    check(info.served_model_name == MODEL_NAME and info.vocab_size == 4096 and
          info.max_context_length > 0 and list(info.eos_token_ids) == [2] and
          info.bos_token_id == 1 and info.is_generation and info.model_type == "llama",
          f"GetModelInfo: name, vocabulary, context, eos/bos, type ({info.served_model_name}, "
          f"{info.max_context_length})")
    si = stub.GetServerInfo(vpb.GetServerInfoRequest(), timeout=10)
    check(si.data_parallel_size == 1 and si.max_num_seqs > 0 and si.block_size > 0 and
          not si.is_paused, f"GetServerInfo: one rank, window {si.max_num_seqs}, block {si.block_size}")
    loads = stub.GetLoads(vpb.GetLoadsRequest(), timeout=10)
    l0 = loads.loads[0] if loads.loads else None
    check(loads.dp_rank_count == 1 and l0 is not None and l0.max_total_num_tokens > 0 and
          l0.num_total_reqs == 0 and 0.0 <= l0.token_usage <= 1.0,
          f"GetLoads: one rank, idle, KV capacity {l0.max_total_num_tokens if l0 else None}")

    # GetTokenizer: chunks, the last with the SHA-256 of the whole zip.
    chunks = list(stub.GetTokenizer(cpb.GetTokenizerRequest(), timeout=30))
    data = b"".join(c.data for c in chunks)
    check(chunks[-1].sha256 == hashlib.sha256(data).hexdigest() and
          all(c.sha256 == "" for c in chunks[:-1]),
          f"GetTokenizer: {len(chunks)} chunk(s), {len(data)} bytes, SHA-256 on the last")
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    check("tokenizer.json" in names and "tokenizer_config.json" in names and
          "tokenizer.model" not in names, f"GetTokenizer: the zip holds {names}")
    tokenizer.append(zipfile.ZipFile(io.BytesIO(data)).read("tokenizer.json"))

    # Generate: tokenized input, greedy; unary and streamed agree; logprobs; a stop token.
    from tokenizers import Tokenizer
    hf = Tokenizer.from_str(tokenizer[0].decode())
    ids = hf.encode(PROMPT).ids
    sp = vpb.SamplingParams(temperature=0, max_tokens=24, logprobs=2)
    req = vpb.GenerateRequest(request_id="p-unary", tokenized=vpb.TokenizedInput(input_ids=ids),
                              sampling_params=sp, stream=False)
    msgs = list(stub.Generate(req, timeout=60))
    c = msgs[-1].complete if msgs else None
    check(len(msgs) == 1 and msgs[0].WhichOneof("response") == "complete" and
          len(c.output_ids) == 24 and c.finish_reason == "length" and c.prompt_tokens == len(ids) and
          c.completion_tokens == 24 and len(c.output_logprobs.token_ids) == 24 and
          all(len(t.values) == 2 for t in c.output_logprobs.top_logprobs),
          "Generate (not streaming): one complete, 24 tokens, length, logprobs with 2 alternatives")
    text = hf.decode(list(c.output_ids))
    check(text == daemon_text(d, PROMPT, 24).lstrip(" "),
          f"Generate: the ids decode to sparsed.v1's greedy text ({text[:40]!r})")
    req.stream = True
    req.request_id = "p-stream"
    msgs = list(stub.Generate(req, timeout=60))
    kinds = [m.WhichOneof("response") for m in msgs]
    streamed = [t for m in msgs if m.WhichOneof("response") == "chunk" for t in m.chunk.token_ids]
    check(kinds[-1] == "complete" and kinds.count("complete") == 1 and streamed == list(c.output_ids)
          and msgs[-1].complete.finish_reason == "length",
          f"Generate (streaming): {kinds.count('chunk')} chunks concatenate to the unary ids, then "
          "one complete")
    stop_id = c.output_ids[5]
    sreq = vpb.GenerateRequest(request_id="p-stop", tokenized=vpb.TokenizedInput(input_ids=ids),
                               sampling_params=vpb.SamplingParams(temperature=0, max_tokens=24,
                                                                  stop_token_ids=[stop_id]))
    sc = list(stub.Generate(sreq, timeout=60))[-1].complete
    check(sc.finish_reason == "stop" and sc.matched_token_id == stop_id and
          list(sc.output_ids) == list(c.output_ids[:6]),
          f"Generate: a stop token ends it with matched_token_id {sc.matched_token_id}")
    stop_str = hf.decode(list(c.output_ids[:8]))[-4:]
    tc = list(stub.Generate(vpb.GenerateRequest(
        request_id="p-stopstr", text=PROMPT,
        sampling_params=vpb.SamplingParams(temperature=0, max_tokens=24, stop=[stop_str])),
        timeout=60))[-1].complete
    check(tc.finish_reason == "stop" and tc.matched_stop_str == stop_str and
          tc.prompt_tokens == len(ids),
          f"Generate: text input gets BOS; a stop string ends it with matched_stop_str {stop_str!r}")

    # Every unsupported field refused by name.
    base = dict(request_id="bad", tokenized=vpb.TokenizedInput(input_ids=ids))
    expect_invalid(stub, vpb.GenerateRequest(**base, sampling_params=vpb.SamplingParams(n=2)),
                   "sampling_params.n", "n = 2")
    expect_invalid(stub, vpb.GenerateRequest(**base, sampling_params=vpb.SamplingParams(
        logit_bias={5: 1.0})), "logit_bias", "logit_bias")
    expect_invalid(stub, vpb.GenerateRequest(**base, sampling_params=vpb.SamplingParams(
        json_schema='{"type": "object"}')), "json_schema", "a JSON-schema constraint")
    expect_invalid(stub, vpb.GenerateRequest(**base, sampling_params=vpb.SamplingParams(
        min_tokens=3)), "min_tokens", "min_tokens")
    expect_invalid(stub, vpb.GenerateRequest(**base, sampling_params=vpb.SamplingParams(
        prompt_logprobs=1)), "prompt_logprobs", "prompt_logprobs")
    expect_invalid(stub, vpb.GenerateRequest(**base, sampling_params=vpb.SamplingParams(
        max_tokens=10 ** 8)), "max_tokens", "max_tokens beyond the context")
    expect_invalid(stub, vpb.GenerateRequest(
        request_id="bad", tokenized=vpb.TokenizedInput(input_ids=[5, 99999])),
        "input_ids", "a token id outside the vocabulary")
    expect_invalid(stub, vpb.GenerateRequest(**base, mm_inputs=vpb.MultimodalInputs(
        mm_hashes=["x"])), "mm_inputs", "multimodal inputs")
    expect_invalid(stub, vpb.GenerateRequest(**base, kv_transfer_params_json="{}"),
                   "kv_transfer_params", "disaggregated-prefill parameters")

    # Abort from another connection: the stream ends, its KV blocks are freed.
    long_req = vpb.GenerateRequest(
        request_id="p-abort", tokenized=vpb.TokenizedInput(input_ids=ids), stream=True,
        sampling_params=vpb.SamplingParams(temperature=0, max_tokens=400, ignore_eos=True))
    call = stub.Generate(long_req, timeout=120)
    first = next(call)
    check(first.WhichOneof("response") == "chunk" and kv_used(d) > 0,
          "Abort: a long stream runs and holds KV blocks")
    vpbg.VllmEngineStub(grpc.insecure_channel(f"127.0.0.1:{d.port}")).Abort(
        vpb.AbortRequest(request_ids=["p-abort", "never-sent"]), timeout=10)
    rest, code = [], None
    try:
        for m in call:
            rest.append(m)
    except grpc.RpcError as e:
        code = e.code()
    got = sum(len(m.chunk.token_ids) for m in [first] + rest if m.WhichOneof("response") == "chunk")
    check(got < 400 and (code == grpc.StatusCode.CANCELLED or
                         (rest and rest[-1].complete.finish_reason == "abort")),
          f"Abort: the stream ended early ({got} tokens, {code.name if code else 'complete'})")
    check(wait_until(lambda: kv_used(d) == 0), "Abort: its KV blocks are freed")
    ch.close()


def tokenizer_cases(gw, d, source):
    with open(os.path.join(source, "tests/data/tokenizer_cases.json"), encoding="utf-8") as f:
        texts = [t for t in json.load(f) if t]
    with open(os.path.join(source, "models/corpus/heldout.txt"), encoding="utf-8") as f:
        texts += [line for line in f.read().split("\n") if line][:20]
    r = gw.post("/v1/tokenize", {"model": MODEL_NAME, "prompt": texts})
    got = r["tokens"]
    bad = []
    for text, ids in zip(texts, got):
        want = daemon_ids(d, text)
        if ids and ids[0] == 1 and want[:1] != [1]:
            ids = ids[1:]  # the gateway's BOS (tokenizer.json's post-processor)
        if ids != want:
            bad.append(text)
    check(len(got) == len(texts) and not bad,
          f"the gateway's token ids equal the daemon's on {len(texts)} texts (differ: {bad[:3]})")


def openai_cases(gw, d):
    """The gateway decodes the output without the prompt as context, so its text lacks the space
    that the first generated piece ("▁Behold") carries in the daemon's own API: the texts are
    compared without that leading space. It tokenizes a completions prompt without special tokens
    (no BOS) and a chat prompt as the template renders it (which begins with BOS)."""
    cl = gw.client()
    want = daemon_text(d, PROMPT, 16, add_bos=False).lstrip(" ")
    r = cl.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=16, temperature=0)
    check(r.choices[0].text == want and r.choices[0].finish_reason == "length" and
          r.usage.completion_tokens == 16,
          f"completions: the daemon's greedy text ({r.choices[0].text[:40]!r})")
    parts = [c.choices[0].text for c in cl.completions.create(
        model=MODEL_NAME, prompt=PROMPT, max_tokens=16, temperature=0, stream=True)]
    check("".join(parts) == want, f"completions, streamed: {len(parts)} pieces make the same text")
    messages = [{"role": "user", "content": "Who made the heaven and the earth?"}]
    rendered = "User: Who made the heaven and the earth?\nAssistant:"
    chat_want = daemon_text(d, rendered, 12).lstrip(" ")
    r = cl.chat.completions.create(model=MODEL_NAME, messages=messages, max_tokens=12,
                                   temperature=0)
    check(r.choices[0].message.content == chat_want,
          f"chat: the chat template's prompt, the daemon's greedy text "
          f"({r.choices[0].message.content[:40]!r})")
    parts = [c.choices[0].delta.content or "" for c in cl.chat.completions.create(
        model=MODEL_NAME, messages=messages, max_tokens=12, temperature=0, stream=True)]
    check("".join(parts) == r.choices[0].message.content,
          f"chat, streamed: {len(parts)} deltas make the same text")
    r = cl.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=30, temperature=0,
                              stop=[want[5:9]])
    check(r.choices[0].finish_reason == "stop" and want[5:9] not in r.choices[0].text,
          f"completions: a stop string ends the text before it ({r.choices[0].text!r})")
    # What the daemon cannot honour reaches the client as a 400 naming it, not as other output.
    try:
        cl.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=4, n=2)
        check(False, "completions: n = 2 refused")
    except openai.BadRequestError as e:
        check("sampling_params.n" in str(e), f"completions: n = 2 refused with 400 naming it")
    try:
        cl.chat.completions.create(model=MODEL_NAME, messages=messages, max_tokens=4,
                                   response_format={"type": "json_object"})
        check(False, "chat: a JSON response format refused")
    except openai.BadRequestError as e:
        check("structured output" in str(e),
              "chat: a JSON response format refused with 400 (structured output unsupported)")


def main():
    a, work = parse_test_args("sparsed-gateway-")
    model = os.path.join(a.source, "models", "sparsed-tiny")
    flags = ["--kv_cache_mb", "64", "--model_name", MODEL_NAME]
    BIN.append(a.bin)

    with Daemon(a.bin, work, "single", *flags, model=model) as d:
        d.wait_ready()
        tokenizer = []
        protocol_cases(d, tokenizer)
        with Gateway(work, "gw-single", [f"127.0.0.1:{d.port}"], "round_robin") as gw:
            tokenizer_cases(gw, d, a.source)
            openai_cases(gw, d)

    keyed_cases(a, work, flags, model)
    no_tokenizer_json(a, work, flags, model)

    replicas = [Daemon(a.bin, work, f"replica{i}", *flags, model=model) for i in range(3)]
    for r in replicas:
        r.start()
    try:
        for r in replicas:
            r.wait_ready()
        addrs = [f"127.0.0.1:{r.port}" for r in replicas]
        with Gateway(work, "gw-cache", addrs, "cache_aware") as gw:
            cache_aware_cases(gw, replicas)
        with Gateway(work, "gw-load", addrs, "power_of_two") as gw:
            load_cases(gw, replicas)
            failover_cases(gw, replicas, a.bin, work, flags, model)
    finally:
        for r in replicas:
            r.stop()
    if FAILURES:
        print(f"{len(FAILURES)} check(s) failed", file=sys.stderr)
        sys.exit(1)
    print("all gateway checks passed")


def no_tokenizer_json(a, work, flags, model):
    """A model directory with only the SentencePiece model: GetTokenizer says what to do."""
    import shutil
    bare = os.path.join(work, "bare-model")
    os.makedirs(bare, exist_ok=True)
    for f in ("config.json", "model.safetensors", "tokenizer.model"):
        shutil.copy(os.path.join(model, f), bare)
    with Daemon(a.bin, work, "bare", *flags, model=bare) as d:
        d.wait_ready()
        stub = vpbg.VllmEngineStub(grpc.insecure_channel(f"127.0.0.1:{d.port}"))
        try:
            list(stub.GetTokenizer(cpb.GetTokenizerRequest(), timeout=10))
            check(False, "GetTokenizer without tokenizer.json: refused")
        except grpc.RpcError as e:
            check(e.code() == grpc.StatusCode.FAILED_PRECONDITION and "tokenizer.json" in e.details()
                  and "tools/make_hf_tokenizer.py" in e.details(),
                  f"GetTokenizer without tokenizer.json: FAILED_PRECONDITION naming the file and the "
                  f"tool ({e.details()[:80]}...)")


def keyed_cases(a, work, flags, model):
    """A daemon with API keys: the gateway (which sends gRPC workers no key) connects to
    --gateway_listen; the main port refuses the worker protocol without a key."""
    key = "gw-test-key-0123456789"
    keys = os.path.join(work, "keys.txt")
    with open(keys, "w") as f:
        f.write(f"{key} generate gateway\n")
    gport = free_port()
    with Daemon(a.bin, work, "keyed", *flags, "--api_keys_file", keys,
                "--gateway_listen", f"127.0.0.1:{gport}", model=model) as d:
        d.wait_ready()
        stub = vpbg.VllmEngineStub(grpc.insecure_channel(f"127.0.0.1:{d.port}"))
        try:
            stub.GetModelInfo(vpb.GetModelInfoRequest(), timeout=10)
            check(False, "keys: the main port refuses the worker protocol without a key")
        except grpc.RpcError as e:
            check(e.code() == grpc.StatusCode.UNAUTHENTICATED,
                  f"keys: the main port refuses the worker protocol without a key ({e.code().name})")
        info = stub.GetModelInfo(vpb.GetModelInfoRequest(), timeout=10,
                                 metadata=[("authorization", f"Bearer {key}")])
        check(info.served_model_name == MODEL_NAME, "keys: with a key the main port answers")
        with Gateway(work, "gw-keyed", [f"127.0.0.1:{gport}"], "round_robin") as gw:
            r = gw.client().completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=4,
                                               temperature=0)
            check(r.usage.completion_tokens == 4,
                  "keys: the gateway serves through --gateway_listen, which needs no key")


def cache_aware_cases(gw, replicas):
    cl = gw.client()
    # Long, distinct prefixes: each is routed somewhere the first time and, the second time, to
    # the replica that holds its blocks.
    hits = []
    for k in range(4):
        prefix = f"Chapter {k}. " + " ".join(f"And the {w} went up unto the mountain {k}." for w in
                                             ["king", "people", "priests", "elders", "sons"] * 4)
        cl.completions.create(model=MODEL_NAME, prompt=prefix + " First", max_tokens=2,
                              temperature=0)
        r = cl.completions.create(model=MODEL_NAME, prompt=prefix + " Second", max_tokens=2,
                                  temperature=0)
        hits.append(r.usage.prompt_tokens_details.cached_tokens or 0)
    check(all(h >= 64 for h in hits),
          f"cache_aware: a repeated long prefix reaches the replica holding it (cached {hits})")
    served = [metric(r.metrics(), "sparsed_requests_total", outcome="finished") or 0
              for r in replicas]
    check(sum(1 for s in served if s > 0) >= 2,
          f"cache_aware: distinct prefixes spread over the replicas (finished {served})")


def load_cases(gw, replicas):
    # A long request on the gateway; the gateway's view of the loads shows it on one replica.
    cl = gw.client()
    done = threading.Event()

    def long_one():
        try:
            cl.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=300, temperature=0,
                                  extra_body={"ignore_eos": True})
        finally:
            done.set()
    t = threading.Thread(target=long_one)
    t.start()
    running = []

    def seen():
        running.clear()
        for r in replicas:
            ch = grpc.insecure_channel(f"127.0.0.1:{r.port}")
            loads = vpbg.VllmEngineStub(ch).GetLoads(vpb.GetLoadsRequest(), timeout=5)
            running.append(loads.loads[0].num_running_reqs)
            ch.close()
        return sum(running) == 1
    check(wait_until(seen, 30), f"GetLoads: the running request shows on one replica ({running})")
    try:
        body = gw.get("/get_loads")
        check("num_running_reqs" in body or "running" in body,
              f"power_of_two: the gateway reads the workers' loads ({body[:160]!r})")
    except OSError as e:
        check(False, f"power_of_two: the gateway's /get_loads answers ({e})")
    t.join(timeout=120)
    check(done.is_set(), "the long request through the gateway finished")


def failover_cases(gw, replicas, bin_dir, work, flags, model):
    cl = gw.client()

    def one(i):
        try:
            r = cl.completions.create(model=MODEL_NAME, prompt=f"{PROMPT} {i}", max_tokens=8,
                                      temperature=0)
            return r.choices[0].finish_reason
        except Exception as e:  # noqa: BLE001 - the outcome is what is counted
            return f"error: {type(e).__name__}"

    # SIGKILL one replica while requests run.
    victim = replicas[0]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        futs = [pool.submit(one, i) for i in range(8)]
        time.sleep(0.3)
        victim.proc.kill()
        victim.proc.wait()
        during = [f.result() for f in futs]
    time.sleep(2.5)  # the gateway's health probe (every second) marks it unhealthy
    after = [one(100 + i) for i in range(12)]
    check(all(x == "length" for x in after),
          f"SIGKILL: new requests go to the live replicas ({after.count('length')}/12 served; "
          f"during the kill {during.count('length')}/8)")
    # Restart it on the same port: the gateway's probe sees it healthy again and routes to it.
    revived = Daemon(bin_dir, work, "replica0-revived", *flags, model=model,
                     listen=victim.listen, metrics_listen=f"127.0.0.1:{victim.mport}")
    revived.port, revived.mport = victim.port, victim.mport
    revived.start().wait_ready()
    replicas[0] = revived
    served = 0

    def revived_serves():
        nonlocal served
        one(200)
        served = metric(revived.metrics(), "sparsed_requests_total", outcome="finished") or 0
        return served > 0
    check(wait_until(revived_serves, 40, 0.5),
          f"SIGKILL: the restarted replica rejoins and serves ({served} requests)")

    # SIGTERM one replica: it drains, and the gateway sends it nothing new.
    drained = replicas[1]
    before = metric(drained.metrics(), "sparsed_requests_total", outcome="finished") or 0
    drained.terminate()
    time.sleep(0.5)
    after = [one(300 + i) for i in range(8)]
    check(all(x == "length" for x in after),
          f"SIGTERM: new requests are served by the others ({after.count('length')}/8)")
    check(drained.wait(60) == 0, f"SIGTERM: the replica drained and exited 0 (served {before})")

    # A client that disconnects mid-stream: the gateway aborts the request, KV blocks freed.
    live = [r for r in replicas if r is not drained]
    stream = cl.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=400,
                                   temperature=0, stream=True, extra_body={"ignore_eos": True})
    got = 0
    for _ in stream:
        got += 1
        if got >= 5:
            break
    holding = [kv_used(r) for r in live]
    stream.close()
    check(any(h > 0 for h in holding), f"disconnect: the stream held KV blocks ({holding})")
    check(wait_until(lambda: all(kv_used(r) == 0 for r in live), 30),
          "disconnect: the gateway aborts the request and its KV blocks are freed")
    cancelled = sum(metric(r.metrics(), "sparsed_requests_total", outcome="cancelled") or 0
                    for r in live)
    check(cancelled >= 1, f"disconnect: the daemon counts it cancelled ({cancelled})")


if __name__ == "__main__":
    main()
