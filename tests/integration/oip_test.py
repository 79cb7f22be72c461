#!/usr/bin/env python3
"""The Open Inference Protocol (KServe v2) service, through Triton's own client (tritonclient[grpc]
from PyPI, in the venv scripts/test-venv.sh makes): an independent implementation of the protocol.

Liveness, readiness and metadata; ModelInfer's text equals sparsed.v1's for the same greedy
request (sparsed-cli); ModelStreamInfer (decoupled) pieces concatenate to the same text, with and
without Triton's empty final response, several requests on one stream; cancelling a unary call
and a stream mid-generation frees their KV blocks; bad tensors and parameters are
INVALID_ARGUMENT naming them (on a stream: an error response, and the stream serves on); an
unknown model is NOT_FOUND.

Usage: oip_test.py --bin BUILD/bin --source REPO [--work DIR]   (run with the venv's python)
"""
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
    print(f"{len(FAILURES)} failure(s)")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
