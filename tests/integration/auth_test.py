#!/usr/bin/env python3
"""API keys and roles (--api_keys_file), with Debian's python3-grpcio as the client.

Health answers without a key; a call without a key, or with an unknown one, is UNAUTHENTICATED;
a generate-role key may generate, tokenize and read the model info but not GetServerLoad
(PERMISSION_DENIED), which an admin key may; Abort from a generate-role key cancels only that
key's requests (another key's request answers NOT_FOUND, as a missing one does), an admin key
cancels any; a --health_listen port answers health and no model call; grpc.reflection.v1 is off (v1alpha is Debian's plugin, which registers itself
and stays: it describes the public proto only); SIGHUP re-reads the file (a removed key is refused, a new one
served); a malformed file stops the start with the file and line named.

Usage: auth_test.py --bin BUILD/bin --source REPO [--work DIR]
"""
import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import FAILURES, Daemon, check, free_port, parse_test_args  # noqa: E402
from daemon_test import gen_stubs  # noqa: E402

ADMIN, ALICE, BOB, CAROL = ("admin-key-0123456789", "alice-key-0123456789", "bob-key-0123456789ab",
                            "carol-key-0123456789")


def main():
    a, work = parse_test_args("sparsed_auth_")
    import grpc
    gen_stubs(a.source, os.path.join(work, "stubs"))
    from sparsed.v1 import sparsed_pb2 as pb, sparsed_pb2_grpc as pbg
    import health_pb2, health_pb2_grpc, reflection_v1_pb2, reflection_v1_pb2_grpc

    keys = os.path.join(work, "keys.txt")
    with open(keys, "w") as f:
        f.write(f"# KEY ROLE NAME\n{ADMIN} admin ops\n{ALICE} generate alice\n{BOB} generate bob\n")
    model = os.path.join(a.source, "models", "sparsed-tiny")

    hport = free_port()
    with Daemon(a.bin, work, "auth", "--kv_cache_mb", "32", "--api_keys_file", keys,
                "--health_listen", f"127.0.0.1:{hport}", model=model) as d:
        d.wait_ready()
        hch = grpc.insecure_channel(f"127.0.0.1:{hport}")
        hh = health_pb2_grpc.HealthStub(hch).Check(health_pb2.HealthCheckRequest(service="sparsed.v1.Sparsed"),
                                                   timeout=10)
        check(hh.status == health_pb2.HealthCheckResponse.SERVING,
              "the --health_listen port answers health, as the main port does")
        try:
            pbg.SparsedStub(hch).Generate(pb.GenerateRequest(prompt="Hi"), timeout=10,
                                          metadata=[("authorization", f"Bearer {ALICE}")])
            hc = "OK"
        except grpc.RpcError as e:
            hc = e.code().name
        check(hc == "UNIMPLEMENTED", f"... and serves no model call ({hc})")
        hch.close()
        ch = grpc.insecure_channel(f"127.0.0.1:{d.port}")
        stub = pbg.SparsedStub(ch)

        def md(key):
            return None if key is None else [("authorization", f"Bearer {key}")]

        def code(fn, req, key):
            try:
                fn(req, timeout=30, metadata=md(key))
                return "OK", ""
            except grpc.RpcError as e:
                return e.code().name, e.details()

        h = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=10)
        check(h.status == health_pb2.HealthCheckResponse.SERVING, "health answers without a key")
        gen = pb.GenerateRequest(prompt="Hello", stopping=pb.StoppingParams(max_new_tokens=2))
        c, msg = code(stub.Generate, gen, None)
        check(c == "UNAUTHENTICATED" and "authorization: Bearer KEY" in msg,
              f"Generate without a key ({c} {msg!r})")
        c, msg = code(stub.Generate, gen, "not-a-key-0123456789")
        check(c == "UNAUTHENTICATED" and "unknown API key" in msg, f"an unknown key ({c} {msg!r})")
        check(code(stub.Generate, gen, ALICE)[0] == "OK", "Generate with a generate-role key")
        check(code(stub.Tokenize, pb.TokenizeRequest(text="hi"), ALICE)[0] == "OK",
              "Tokenize with a generate-role key")
        check(code(stub.GetModelInfo, pb.GetModelInfoRequest(), ALICE)[0] == "OK",
              "GetModelInfo with a generate-role key")
        check(code(stub.GetModelInfo, pb.GetModelInfoRequest(), None)[0] == "UNAUTHENTICATED",
              "GetModelInfo without a key")
        c, msg = code(stub.GetServerLoad, pb.GetServerLoadRequest(), ALICE)
        check(c == "PERMISSION_DENIED" and "admin" in msg, f"GetServerLoad with a generate key ({c} {msg!r})")
        check(code(stub.GetServerLoad, pb.GetServerLoadRequest(), ADMIN)[0] == "OK",
              "GetServerLoad with an admin key")
        import subprocess
        cli = [os.path.join(a.bin, "sparsed-cli"), "--server", f"127.0.0.1:{d.port}"]
        r1 = subprocess.run(cli + ["--max_new_tokens", "2", "generate", "Hi"], capture_output=True, text=True)
        r2 = subprocess.run(cli + ["--api_key", ALICE, "--max_new_tokens", "2", "generate", "Hi"],
                            capture_output=True, text=True)
        check(r1.returncode != 0 and "needs an API key" in r1.stderr and r2.returncode == 0,
              f"sparsed-cli --api_key ({r1.returncode} {r1.stderr.strip()!r}; {r2.returncode} {r2.stderr.strip()!r})")
        try:
            refl = reflection_v1_pb2_grpc.ServerReflectionStub(ch)
            list(refl.ServerReflectionInfo(iter([reflection_v1_pb2.ServerReflectionRequest(list_services="")]),
                                           timeout=10, metadata=md(ADMIN)))
            rc = "OK"
        except grpc.RpcError as e:
            rc = e.code().name
        check(rc == "UNIMPLEMENTED", f"grpc.reflection.v1 is off while keys are on ({rc})")

        # The prefix cache is partitioned per key: a repeated prompt is cached for its own key
        # only, so cached_prompt_tokens tells bob nothing about alice's prompts.
        long_prompt = "And the king said unto his servants, Go ye and search the land " * 3

        def cached(key, salt=""):
            r = stub.Generate(pb.GenerateRequest(prompt=long_prompt, cache_salt=salt,
                                                 stopping=pb.StoppingParams(max_new_tokens=1)),
                              timeout=30, metadata=md(key))
            return r.usage.cached_prompt_tokens

        cached(ALICE)
        check(cached(ALICE) > 0, "a key's repeated prompt comes from the prefix cache")
        check(cached(BOB) == 0, "another key's identical prompt does not")
        check(cached(ALICE, salt="s1") == 0 and cached(ALICE, salt="s1") > 0,
              "a cache_salt is a partition of its own")

        def long_stream(key, rid):
            """A long stream started by `key`; returns (thread, result) — result[0] its end code."""
            result = [None, False]  # end code, whether tokens arrived
            started = threading.Event()

            def run():
                try:
                    for _ in stub.GenerateStream(pb.GenerateRequest(
                            prompt="Once", request_id=rid, stopping=pb.StoppingParams(
                                max_new_tokens=400, ignore_eos=True)), timeout=120, metadata=md(key)):
                        result[1] = True
                        started.set()
                    result[0] = "OK"
                except grpc.RpcError as e:
                    result[0] = e.code().name
                started.set()
            t = threading.Thread(target=run)
            t.start()
            started.wait(60)
            return t, result

        t, res = long_stream(ALICE, "job-1")
        check(res[1] and res[0] is None, f"alice's stream is running ({res})")
        c, msg = code(stub.Abort, pb.AbortRequest(request_id="job-1"), BOB)
        check(c == "NOT_FOUND", f"another key's Abort answers NOT_FOUND ({c} {msg!r})")
        c2, msg2 = code(stub.Abort, pb.AbortRequest(request_id="job-none"), BOB)
        check(c2 == "NOT_FOUND" and msg2.replace("job-none", "job-1") == msg,
              "not yours and not there answer alike")
        check(code(stub.Abort, pb.AbortRequest(request_id="job-1"), ALICE)[0] == "OK",
              "the owner aborts its own request")
        t.join(60)
        check(res[0] == "CANCELLED", f"the aborted stream ends cancelled ({res[0]})")
        t, res = long_stream(ALICE, "job-2")
        check(code(stub.Abort, pb.AbortRequest(request_id="job-2"), ADMIN)[0] == "OK",
              "an admin key aborts anyone's request")
        t.join(60)
        check(res[0] == "CANCELLED", f"... and it ends cancelled ({res[0]})")

        with open(keys, "w") as f:
            f.write(f"{ADMIN} admin ops\n{ALICE} generate alice\n{CAROL} generate carol\n")
        d.proc.send_signal(signal.SIGHUP)
        check(d.wait_log('msg="API keys reloaded"', timeout=30), "SIGHUP re-reads the keys")
        check(code(stub.Generate, gen, BOB)[0] == "UNAUTHENTICATED", "a removed key is refused")
        check(code(stub.Generate, gen, CAROL)[0] == "OK", "a new key is served")
        with open(keys, "w") as f:
            f.write("short admin\n")
        d.proc.send_signal(signal.SIGHUP)
        check(d.wait_log("the previous keys stay", timeout=30), "a bad reload keeps the keys")
        check(code(stub.Generate, gen, CAROL)[0] == "OK", "... and they still serve")
        ch.close()

    with open(keys, "w") as f:
        f.write(f"{ADMIN} admin ops\n{ALICE} superuser alice\n")
    with Daemon(a.bin, work, "badkeys", "--api_keys_file", keys, model=model) as bad:
        rc = bad.wait(60)  # None: it served (wrong; leaving the block stops it)
    check(rc not in (0, None) and "keys.txt:2: role 'superuser'" in bad.log(),
          f"a malformed keys file stops the start ({rc})")
    print(f"{len(FAILURES)} failure(s)")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
