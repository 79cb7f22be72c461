#!/usr/bin/env python3
"""The Open Inference Protocol (KServe v2) service, through Triton's own client (tritonclient[grpc]
from PyPI, in the venv scripts/test-venv.sh makes): an independent implementation of the protocol.

Liveness, readiness and metadata; ModelConfig as Triton answers for a decoupled LLM model;
ModelInfer's text equals sparsed.v1's for the same greedy request (sparsed-cli); ModelStreamInfer
(decoupled) pieces concatenate to the same text, with and without Triton's empty final response,
several requests on one stream; the vLLM backend's inputs (sampling_parameters JSON, stream,
exclude_input_in_output) and TensorRT-LLM's (stop_words, bad_words, end_id) honoured or refused;
ModelStatistics counting exactly the requests made (with API keys on: for a generate key only);
cancelling a unary call and a stream
mid-generation frees their KV blocks; bad tensors, unknown inputs, keys and parameters are
INVALID_ARGUMENT naming them (on a stream: an error response, and the stream serves on); an
unknown model is NOT_FOUND.

Usage: oip_test.py --bin BUILD/bin --source REPO [--work DIR]   (run with the venv's python)
"""
import json
import os
import queue
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import FAILURES, Daemon, check, metric, parse_test_args  # noqa: E402

import numpy as np  # noqa: E402
import tritonclient.grpc as tc  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402

PROMPT = "And the king said unto his servants,"


def text_input(text=PROMPT):
    t = tc.InferInput("text_input", [1], "BYTES")
    t.set_data_from_numpy(np.array([text.encode()], dtype=object))
    return t


def scalar(name, value, datatype, dtype):
    t = tc.InferInput(name, [1], datatype)
    t.set_data_from_numpy(np.array([value], dtype=dtype))
    return t


def byte_input(name, values):
    t = tc.InferInput(name, [len(values)], "BYTES")
    t.set_data_from_numpy(np.array([v.encode() for v in values], dtype=object))
    return t


def sampling_parameters(**params):
    return byte_input("sampling_parameters", [json.dumps(params)])


def refusal(call):
    """(status, message) of a call expected to fail ("OK", "" when it did not)."""
    try:
        call()
        return "OK", ""
    except InferenceServerException as e:
        return str(e.status()), e.message()


def stream_texts(c, requests, timeout=60):
    """Runs (request_id, inputs) on one ModelStreamInfer stream; returns {id: [text pieces]} and
    the errors."""
    q = queue.Queue()
    c.start_stream(callback=lambda result, error: q.put((result, error)))
    for rid, inputs in requests:
        c.async_stream_infer("sparsed-tiny", inputs, request_id=rid)
    pieces, done, errors = {rid: [] for rid, _ in requests}, set(), []
    while len(done) + len(errors) < len(requests):
        res, err = q.get(timeout=timeout)
        if err is not None:
            errors.append(str(err))
            continue
        resp = res.get_response()
        out = res.as_numpy("text_output")
        if out is not None:
            pieces[resp.id].append(out[0].decode())
        if resp.parameters["triton_final_response"].bool_param:
            done.add(resp.id)
    c.stop_stream()
    return pieces, errors


def statistics(c, name="sparsed-tiny"):
    """The model's ModelStatistics as Triton's client reads them (uint64 in JSON are strings;
    zero fields are absent)."""
    st = c.get_inference_statistics(name, as_json=True)["model_stats"]
    assert len(st) == 1, st
    s = st[0]
    inf = s.get("inference_stats", {})
    return {
        "name": s.get("name"), "version": s.get("version"),
        "last_inference": int(s.get("last_inference", 0)),
        "inference_count": int(s.get("inference_count", 0)),
        "execution_count": int(s.get("execution_count", 0)),
        **{f"{k}_{f}": int(inf.get(k, {}).get(f, 0))
           for k in ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output")
           for f in ("count", "ns")},
    }


def tokenize(bin_dir, port, text):
    out = subprocess.run([os.path.join(bin_dir, "sparsed-cli"), "--server", f"127.0.0.1:{port}",
                          "tokenize", text], capture_output=True, text=True, check=True).stdout
    return [int(t) for t in out.split()]


def triton_surface(c, a, daemon, expected):
    """ModelConfig, ModelStatistics and the inputs of Triton's vLLM and TensorRT-LLM backends."""
    port = daemon.port
    cfg = c.get_model_config("sparsed-tiny", as_json=True)["config"]
    md = c.get_model_metadata("sparsed-tiny", as_json=True)
    inputs = {i["name"]: i for i in cfg["input"]}
    check(cfg["name"] == "sparsed-tiny" and cfg.get("backend") == "sparsed"
          and cfg.get("max_batch_size", 0) == 0
          and cfg.get("model_transaction_policy", {}).get("decoupled") is True
          and [i["name"] for i in cfg["input"]] == [i["name"] for i in md["inputs"]]
          and inputs["text_input"]["data_type"] == "TYPE_STRING" and not inputs["text_input"].get("optional")
          and inputs["sampling_parameters"]["data_type"] == "TYPE_STRING" and inputs["sampling_parameters"]["optional"]
          and inputs["stop_words"]["dims"] == ["-1"] and inputs["end_id"]["data_type"] == "TYPE_INT32"
          and [(o["name"], o["data_type"]) for o in cfg["output"]] == [("text_output", "TYPE_STRING")],
          f"ModelConfig: decoupled, max_batch_size 0, the metadata's inputs and text_output ({sorted(inputs)})")
    status, msg = refusal(lambda: c.get_model_config("other-model"))
    check("NOT_FOUND" in status and "sparsed-tiny" in msg, f"ModelConfig of an unknown model: {status} {msg!r}")
    status, msg = refusal(lambda: c.get_inference_statistics("other-model"))
    check("NOT_FOUND" in status, f"ModelStatistics of an unknown model: {status} {msg!r}")

    # ModelStatistics counts exactly the requests made: two that succeed, one refused.
    t0 = int(time.time() * 1000)
    before = statistics(c)
    c.infer("sparsed-tiny", [text_input(), scalar("max_tokens", 3, "INT32", np.int32)])
    refusal(lambda: c.infer("sparsed-tiny", [text_input(), scalar("num_beams", 2, "INT32", np.int32)]))
    stream_texts(c, [("st1", [text_input(), scalar("max_tokens", 3, "INT32", np.int32)])])
    after = statistics(c)
    all_models = c.get_inference_statistics("", as_json=True)["model_stats"]
    d = {k: after[k] - before[k] for k in after if isinstance(after[k], int)}
    check(d["success_count"] == 2 and d["fail_count"] == 1 and d["inference_count"] == 2
          and d["execution_count"] == 2 and d["queue_count"] == 2 and d["compute_infer_count"] == 2
          and d["compute_input_count"] == 2 and d["compute_output_count"] == 2
          and d["success_ns"] > 0 and d["compute_infer_ns"] > 0 and d["fail_ns"] > 0
          and d["success_ns"] >= d["compute_infer_ns"] and after["last_inference"] >= t0
          and after["name"] == "sparsed-tiny" and after["version"] == "1"
          and [m["name"] for m in all_models] == ["sparsed-tiny"],
          f"ModelStatistics: 2 successes, 1 failure, durations in ns, last_inference in ms ({d})")

    # The vLLM backend's sampling_parameters: max_tokens 5 is exactly 5 tokens; greedy equals the
    # unary greedy text; values as strings as its examples send them.
    gen = metric(daemon.metrics(), "sparsed_generated_tokens_total")
    r = c.infer("sparsed-tiny", [text_input(), sampling_parameters(max_tokens=5, temperature=0, ignore_eos=True)])
    five = r.as_numpy("text_output")[0].decode()
    gen = metric(daemon.metrics(), "sparsed_generated_tokens_total") - gen
    check(gen == 5 and expected.startswith(five) and len(five) > 0,
          f"sampling_parameters max_tokens 5: exactly {gen:.0f} tokens, the greedy text's start ({five!r})")
    r = c.infer("sparsed-tiny", [text_input(), sampling_parameters(temperature="0", max_tokens="24", top_p="1")])
    check(r.as_numpy("text_output")[0].decode() == expected,
          "sampling_parameters temperature 0 (values as strings): the unary greedy text")
    for what, params, needle in (("unknown key", {"temprature": 0}, "temprature"),
                                 ("logprobs", {"logprobs": 2}, "logprobs"),
                                 ("n 2", {"n": 2}, "'n'")):
        status, msg = refusal(lambda: c.infer("sparsed-tiny", [text_input(), sampling_parameters(**params)]))
        check("INVALID_ARGUMENT" in status and needle in msg, f"sampling_parameters {what}: {status} {msg!r}")

    # exclude_input_in_output: false puts the prompt first; stream false on a stream: one response.
    mt = lambda: scalar("max_tokens", 24, "INT32", np.int32)  # noqa: E731
    greedy = lambda: sampling_parameters(temperature=0)  # noqa: E731
    r = c.infer("sparsed-tiny", [text_input(), mt(), greedy(), scalar("exclude_input_in_output", False, "BOOL", bool)])
    check(r.as_numpy("text_output")[0].decode() == PROMPT + expected,
          "exclude_input_in_output false: text_output is the prompt, then the completion")
    r = c.infer("sparsed-tiny", [text_input(), mt(), greedy(), scalar("exclude_input_in_output", True, "BOOL", bool)])
    check(r.as_numpy("text_output")[0].decode() == expected, "exclude_input_in_output true: the completion only")
    pieces, errors = stream_texts(c, [
        ("one", [text_input(), mt(), greedy(), scalar("stream", False, "BOOL", bool)]),
        ("echo", [text_input(), mt(), greedy(), scalar("exclude_input_in_output", False, "BOOL", bool)]),
        ("many", [text_input(), mt(), greedy(), scalar("stream", True, "BOOL", bool)])])
    check(not errors and pieces["one"] == [expected] and "".join(pieces["echo"]) == PROMPT + expected
          and len(pieces["many"]) > 1 and "".join(pieces["many"]) == expected,
          f"stream false: one response ({len(pieces['one'])}); the prompt first on a stream; stream true: "
          f"{len(pieces['many'])} pieces ({errors})")
    status, msg = refusal(lambda: c.infer("sparsed-tiny", [text_input(), scalar("stream", True, "BOOL", bool),
                                                           scalar("exclude_input_in_output", False, "BOOL", bool)]))
    check("INVALID_ARGUMENT" in status and "exclude_input_in_output" in msg,
          f"exclude_input_in_output false with stream true: {status} {msg!r}")

    # TensorRT-LLM's inputs: stop_words end the text before them; end_id ends it at that token;
    # bad_words are refused (empty ones, its clients' default, are not).
    at = expected.index(" ", 8) + 1
    stop = expected[at:at + 3]
    r = c.infer("sparsed-tiny", [text_input(), mt(), greedy(), byte_input("stop_words", ["", stop])])
    got = r.as_numpy("text_output")[0].decode()
    check(got == expected[:expected.index(stop)], f"stop_words [{stop!r}]: the text before it ({got!r})")
    prompt_ids = tokenize(a.bin, port, PROMPT)
    full_ids = tokenize(a.bin, port, PROMPT + expected)
    generated = full_ids[len(prompt_ids):] if full_ids[:len(prompt_ids)] == prompt_ids else []
    end_id = generated[3] if len(generated) > 3 else -1
    r = c.infer("sparsed-tiny", [text_input(), mt(), greedy(), scalar("end_id", end_id, "INT32", np.int32),
                                 byte_input("bad_words", [""])])
    got = r.as_numpy("text_output")[0].decode()
    check(end_id >= 0 and 0 < len(got) < len(expected) and expected.startswith(got),
          f"end_id {end_id}: generation ends at that token ({got!r})")
    for what, inputs, needle in (
            ("bad_words", [byte_input("bad_words", ["king"])], "bad_words"),
            ("an unknown input", [scalar("num_beams", 2, "INT32", np.int32)], "num_beams"),
            ("vLLM's return_logprobs", [scalar("return_logprobs", True, "BOOL", bool)], "return_logprobs")):
        status, msg = refusal(lambda: c.infer("sparsed-tiny", [text_input()] + inputs))
        check("INVALID_ARGUMENT" in status and needle in msg, f"{what}: {status} {msg!r}")
    status, msg = refusal(lambda: c.infer("sparsed-tiny", [text_input()], parameters={"beam_search": True}))
    check("INVALID_ARGUMENT" in status and "beam_search" in msg, f"an unknown parameter: {status} {msg!r}")


def with_api_keys(a, work, model):
    """With --api_keys_file: ModelConfig stays open like the metadata calls; ModelStatistics needs
    a key with the generate role."""
    key = "oip-generate-key-0123456789"
    keys = os.path.join(work, "keys.txt")
    with open(keys, "w") as f:
        f.write(f"{key} generate tester\n")
    with Daemon(a.bin, work, "sparsed_keys", "--kv_cache_mb", "32", "--api_keys_file", keys,
                model=model) as d:
        d.wait_ready()
        c = tc.InferenceServerClient(f"127.0.0.1:{d.port}")
        bearer = {"authorization": f"Bearer {key}"}
        cfg = c.get_model_config("sparsed-tiny", as_json=True)["config"]
        status, msg = refusal(lambda: c.get_inference_statistics("sparsed-tiny"))
        c.infer("sparsed-tiny", [text_input(), scalar("max_tokens", 2, "INT32", np.int32)], headers=bearer)
        st = c.get_inference_statistics("sparsed-tiny", headers=bearer, as_json=True)["model_stats"][0]
        check(cfg["name"] == "sparsed-tiny" and "UNAUTHENTICATED" in status
              and st["inference_stats"]["success"]["count"] == "1",
              f"API keys: ModelConfig open, ModelStatistics without a key {status} {msg!r}, with one: "
              f"{st['inference_stats']['success']}")
        c.close()


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def stalled_stream(daemon, kv_used_settles):
    """A ModelStreamInfer client that writes 1,000 requests and never reads: the daemon runs at
    most 64 of them at once, cancels the stream once 256 responses wait unsent
    (--stream_max_pending_tokens), frees everything, and serves on."""
    import grpc
    from tritonclient.grpc import service_pb2, service_pb2_grpc
    # A receive window too small for the stream (no BDP growth), never read.
    ch = grpc.insecure_channel(f"127.0.0.1:{daemon.port}",
                               options=[("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 1024)])
    stub = service_pb2_grpc.GRPCInferenceServiceStub(ch)

    def requests():
        for i in range(1000):
            r = service_pb2.ModelInferRequest(model_name="sparsed-tiny", id=f"flood-{i}")
            t = r.inputs.add(name="text_input", datatype="BYTES", shape=[1])
            t.contents.bytes_contents.append(PROMPT.encode())
            m = r.inputs.add(name="max_tokens", datatype="INT32", shape=[1])
            m.contents.int_contents.append(200)
            yield r

    def outcomes():
        m = daemon.metrics()
        return {o: metric(m, "sparsed_requests_total", outcome=o) or 0 for o in ("cancelled", "length")}

    before, seen = rss_kb(daemon.proc.pid), outcomes()
    call = stub.ModelStreamInfer(requests(), timeout=120)  # never read
    check(daemon.wait_log('msg="stream cancelled: the client stopped reading"', timeout=60),
          "a stream whose client never reads is cancelled as stalled")
    check(kv_used_settles(), "its requests are cancelled and their KV blocks freed")
    # Each request the stream got admitted ends cancelled (none can reach its 200 tokens before the
    # stall): no more than 64 were ever admitted of the 1,000 sent.
    now = outcomes()
    admitted = now["cancelled"] - seen["cancelled"]
    check(0 < admitted <= 64 and now["length"] == seen["length"],
          f"at most 64 of its requests were admitted ({admitted:.0f} of 1,000 sent)")
    grown = rss_kb(daemon.proc.pid) - before
    check(grown < 200 * 1024, f"RSS grew by {grown // 1024} MiB (bounded)")
    call.cancel()
    ch.close()
    c = tc.InferenceServerClient(f"127.0.0.1:{daemon.port}")
    r = c.infer("sparsed-tiny", [text_input(), scalar("max_tokens", 4, "INT32", np.int32)])
    check(len(r.as_numpy("text_output")[0]) > 0, "the daemon serves on")
    c.close()


def main():
    a, work = parse_test_args("sparsed_oip_")
    model = os.path.join(a.source, "models", "sparsed-tiny")
    daemon = Daemon(a.bin, work, "sparsed", "--kv_cache_mb", "64", "--stream_max_pending_tokens",
                    "256", model=model)

    def kv_used_settles():
        for _ in range(100):
            m = daemon.metrics()
            if metric(m, "sparsed_kv_blocks_used") == 0 and metric(m, "sparsed_running_sequences") == 0:
                return True
            time.sleep(0.05)
        return False

    with daemon:
        daemon.wait_ready()
        port = daemon.port
        c = tc.InferenceServerClient(f"127.0.0.1:{port}")
        check(c.is_server_live() and c.is_server_ready() and c.is_model_ready("sparsed-tiny"),
              "ServerLive, ServerReady and ModelReady say yes")
        md = c.get_model_metadata("sparsed-tiny")
        check(md.name == "sparsed-tiny" and md.inputs[0].name == "text_input" and md.inputs[0].datatype == "BYTES"
              and [o.name for o in md.outputs] == ["text_output"], "ModelMetadata: text_input BYTES -> text_output")
        check(c.get_server_metadata().name == "sparsed", "ServerMetadata names the server")

        # Unary: the same text as sparsed.v1 for the same greedy request.
        ref = subprocess.run([os.path.join(a.bin, "sparsed-cli"), "--server", f"127.0.0.1:{port}",
                              "--max_new_tokens", "24", "generate", PROMPT], capture_output=True, text=True)
        expected = ref.stdout[len(PROMPT):].rstrip("\n")
        r = c.infer("sparsed-tiny", [text_input(), scalar("max_tokens", 24, "INT32", np.int32)],
                    parameters={"temperature": 0.0}, request_id="u1")
        got = r.as_numpy("text_output")[0].decode()
        check(ref.returncode == 0 and got == expected and r.get_response().id == "u1",
              f"ModelInfer equals sparsed.v1 Generate for the same greedy request ({got[-40:]!r})")
        r2 = c.infer("sparsed-tiny", [text_input(), scalar("max_tokens", 24, "INT64", np.int64),
                                      scalar("temperature", 0.0, "FP32", np.float32)])
        check(r2.as_numpy("text_output")[0].decode() == expected, "sampling parameters as input tensors work too")
        triton_surface(c, a, daemon, expected)

        # Streaming (decoupled): two requests on one stream, with and without the empty final response.
        q = queue.Queue()
        c.start_stream(callback=lambda result, error: q.put((result, error)))
        for rid, empty_final in (("s1", False), ("s2", True)):
            c.async_stream_infer("sparsed-tiny", [text_input(), scalar("max_tokens", 24, "INT32", np.int32)],
                                 request_id=rid, parameters={"temperature": 0.0},
                                 enable_empty_final_response=empty_final)
        pieces, finals, errors = {"s1": [], "s2": []}, {}, []
        while len(finals) < 2 and not errors:
            res, err = q.get(timeout=60)
            if err is not None:
                errors.append(str(err))
                break
            resp = res.get_response()
            out = res.as_numpy("text_output")
            if out is not None:
                pieces[resp.id].append(out[0].decode())
            if resp.parameters["triton_final_response"].bool_param:
                finals[resp.id] = out is None
        check(not errors and "".join(pieces["s1"]) == expected and "".join(pieces["s2"]) == expected
              and len(pieces["s1"]) > 1, f"ModelStreamInfer: {len(pieces['s1'])} responses concatenate to the "
              f"same text, for both requests on the stream ({errors})")
        check(finals == {"s1": False, "s2": True},
              f"the last response is marked final; an empty one when asked for ({finals})")
        # A bad request on the stream: an error response, and the stream serves on.
        c.async_stream_infer("sparsed-tiny", [scalar("max_tokens", 4, "INT32", np.int32)], request_id="bad")
        res, err = q.get(timeout=30)
        check(err is not None and "text_input" in str(err), f"a bad request on a stream gets an error response ({err})")
        c.async_stream_infer("sparsed-tiny", [text_input(), scalar("max_tokens", 4, "INT32", np.int32)], request_id="ok")
        seen_final = False
        while not seen_final:
            res, err = q.get(timeout=30)
            seen_final = err is None and res.get_response().parameters["triton_final_response"].bool_param
            if err is not None:
                break
        check(seen_final, "and the stream serves the next request")
        # Cancel a stream mid-generation.
        c.async_stream_infer("sparsed-tiny", [text_input(), scalar("max_tokens", 400, "INT32", np.int32),
                                              scalar("ignore_eos", True, "BOOL", bool)], request_id="long")
        q.get(timeout=30)
        c.stop_stream(cancel_requests=True)
        check(kv_used_settles(), "a stream cancelled mid-generation frees its KV blocks")

        # Cancel a unary call mid-generation.
        done = queue.Queue()
        ctx = c.async_infer("sparsed-tiny", [text_input(), scalar("max_tokens", 400, "INT32", np.int32),
                                             scalar("ignore_eos", True, "BOOL", bool)],
                            callback=lambda result, error: done.put(error))
        time.sleep(0.1)
        ctx.cancel()
        err = done.get(timeout=30)
        check(err is not None and "CANCELLED" in str(err.status()), f"a cancelled ModelInfer ends CANCELLED ({err})")
        check(kv_used_settles(), "and frees its KV blocks")

        # Bad tensors and parameters.
        cases = [
            ("missing text_input", [scalar("max_tokens", 4, "INT32", np.int32)], "text_input"),
            ("text_input as INT32", [scalar("text_input", 3, "INT32", np.int32)], "BYTES"),
            ("two prompts", [tc.InferInput("text_input", [2], "BYTES")], "one element"),
            ("max_tokens 0", [text_input(), scalar("max_tokens", 0, "INT32", np.int32)], "max_tokens"),
            ("max_tokens as BYTES", [text_input(), tc.InferInput("max_tokens", [1], "BYTES")], "max_tokens"),
            ("temperature -1", [text_input(), scalar("temperature", -1.0, "FP32", np.float32)], "temperature"),
        ]
        cases[2][1][0].set_data_from_numpy(np.array([b"a", b"b"], dtype=object))
        cases[4][1][1].set_data_from_numpy(np.array([b"4"], dtype=object))
        for what, inputs, needle in cases:
            try:
                c.infer("sparsed-tiny", inputs)
                status, msg = "OK", ""
            except InferenceServerException as e:
                status, msg = str(e.status()), e.message()
            check("INVALID_ARGUMENT" in status and needle in msg, f"{what}: {status} {msg!r}")
        try:
            c.infer("sparsed-tiny", [text_input(), scalar("max_tokens", 2, "INT32", np.int32)],
                    parameters={"cache_salt": 5})
            status, msg = "OK", ""
        except InferenceServerException as e:
            status, msg = str(e.status()), e.message()
        check("INVALID_ARGUMENT" in status and "cache_salt" in msg, f"cache_salt as a number: {status} {msg!r}")
        r = c.infer("sparsed-tiny", [text_input(), scalar("max_tokens", 2, "INT32", np.int32)],
                    parameters={"cache_salt": "tenant-a"})
        check(len(r.as_numpy("text_output")[0]) > 0, "a string cache_salt is served")
        try:
            c.infer("other-model", [text_input()])
            status, msg = "OK", ""
        except InferenceServerException as e:
            status, msg = str(e.status()), e.message()
        check("NOT_FOUND" in status and "sparsed-tiny" in msg, f"unknown model: {status} {msg!r}")
        check(daemon.proc.poll() is None and kv_used_settles(), "the daemon serves on, nothing held")
        c.close()
        stalled_stream(daemon, kv_used_settles)
    rc = daemon.returncode  # leaving the block sent SIGTERM and waited
    check(rc == 0, f"exit 0 after SIGTERM ({rc})")
    with_api_keys(a, work, model)
    print(f"{len(FAILURES)} failure(s)")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
