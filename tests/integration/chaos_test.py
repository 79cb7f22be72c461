#!/usr/bin/python3
"""The daemon under hostile clients (loopback only, bounded loops, about a minute).

Each case, then the same checks: the daemon still SERVING; running and waiting sequences and KV
blocks in use back to zero; its thread count and RSS back near where they started; greedy
requests admitted during the case answered bitwise as the same requests alone.

1. garbage bytes and invalid UTF-8 in a string field: INVALID_ARGUMENT naming the message type;
2. overload at 10x the queue bound: RESOURCE_EXHAUSTED at once, admitted requests correct;
3. a cancel storm and a deadline storm (cancelled mid-stream, deadlines before and during);
4. abrupt client death: client processes killed with SIGKILL mid-stream;
5. stalled readers: streams whose clients never read (a small flow-control window) are cancelled
   by the daemon (--stream_max_pending_tokens) and their KV blocks freed while the clients hang on;
6. preemption thrash under a tiny KV cache: outputs unchanged;
7. SIGTERM with streams in flight: they complete, exit 0.

Usage: chaos_test.py --bin BUILD/bin --source REPO [--work DIR]
"""
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import FAILURES, Daemon, check, metric, parse_test_args  # noqa: E402
from daemon_test import gen_stubs  # noqa: E402

import grpc  # noqa: E402


class ChaosDaemon(Daemon):
    """The shared daemon fixture (harness.py), started and serving, with a channel and a stub, and
    the checks each chaos case ends with."""

    def __init__(self, bin_dir, model, work, name, *flags):
        super().__init__(bin_dir, work, name, *flags, model=model)
        self.start()
        self.wait_ready()
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        grpc.channel_ready_future(self.channel).result(timeout=60)
        from sparsed.v1 import sparsed_pb2_grpc as pbg
        self.stub = pbg.SparsedStub(self.channel)

    def sanitized(self):
        """Whether the daemon runs under ASan or TSan, whose allocators keep freed memory (ASan's
        quarantine) and shadow it: RSS then grows further without a leak; leaks are caught by the
        leak checker at exit instead (the daemon must exit 0)."""
        maps = open(f"/proc/{self.proc.pid}/maps").read()
        return "libasan" in maps or "libtsan" in maps

    def proc_status(self):
        fields = {}
        for line in open(f"/proc/{self.proc.pid}/status"):
            k, _, v = line.partition(":")
            fields[k] = v.strip()
        return int(fields["Threads"]), int(fields["VmRSS"].split()[0]) / 1024.0

    def settled(self, what, baseline, timeout=30):
        """Waits until nothing runs or waits and no KV block is held, then checks health, threads
        and RSS against `baseline` (threads, MB)."""
        end = time.time() + timeout
        vals = None
        while time.time() < end:
            m = self.metrics()
            vals = [metric(m, n) for n in ("sparsed_running_sequences", "sparsed_waiting_sequences",
                                           "sparsed_kv_blocks_used")]
            if vals == [0, 0, 0]:
                break
            time.sleep(0.1)
        check(vals == [0, 0, 0], f"{what}: running, waiting and KV blocks back to zero ({vals})")
        import health_pb2
        import health_pb2_grpc
        status = health_pb2_grpc.HealthStub(self.channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=10).status
        check(status == health_pb2.HealthCheckResponse.SERVING, f"{what}: health SERVING")
        threads, rss = self.proc_status()
        for _ in range(50):  # gRPC's threads wind down a moment after their calls
            if threads <= baseline[0] + 8:
                break
            time.sleep(0.1)
            threads, rss = self.proc_status()
        rss_slack = 512 if self.sanitized() else 64
        check(self.proc.poll() is None and threads <= baseline[0] + 8 and rss <= baseline[1] + rss_slack,
              f"{what}: alive, {threads} threads (started with {baseline[0]}), RSS {rss:.0f} MB "
              f"(started with {baseline[1]:.0f} MB; bound +{rss_slack} MB)")


def main():
    a, work = parse_test_args("sparsed_chaos_")
    gen_stubs(a.source, os.path.join(work, "stubs"))
    from sparsed.v1 import sparsed_pb2 as pb
    model = os.path.join(a.source, "models", "sparsed-tiny")

    def greedy(i, n=12):
        return pb.GenerateRequest(prompt_token_ids=pb.PromptTokenIds(ids=[1, 100 + i, 200 + 3 * i, 7]),
                                  sampling=pb.SamplingParams(temperature=0.0),
                                  stopping=pb.StoppingParams(max_new_tokens=n, ignore_eos=True),
                                  options=pb.GenerateOptions(include_token_ids=True))

    d = ChaosDaemon(a.bin, model, work, "chaos", "--kv_cache_mb", "64", "--max_waiting_requests", "32",
                    "--stream_max_pending_tokens", "32", "--stream_write_timeout_s", "2")
    try:
        alone = {i: list(d.stub.Generate(greedy(i), timeout=60).token_ids) for i in range(16)}
        time.sleep(0.5)
        baseline = d.proc_status()

        def admitted_ok(what, results):
            bad = [i for i, ids in results.items() if ids is not None and ids != alone[i % 16]]
            check(not bad and any(ids is not None for ids in results.values()),
                  f"{what}: admitted greedy requests equal the same requests alone "
                  f"({sum(ids is not None for ids in results.values())} admitted, {len(bad)} differ)")

        # 1. Bytes that are not a request.
        raw = d.channel.unary_unary("/sparsed.v1.Sparsed/Generate", request_serializer=None,
                                    response_deserializer=None)
        for what, payload in [("random bytes", bytes(range(256)) * 4),
                              ("invalid UTF-8 in the prompt", b"\x0a\x02\xc3\x28"),
                              ("a truncated field", b"\x0a\x10abc")]:
            try:
                raw(payload, timeout=10)
                code, details = grpc.StatusCode.OK, ""
            except grpc.RpcError as e:
                code, details = e.code(), e.details()
            check(code == grpc.StatusCode.INVALID_ARGUMENT and "sparsed.v1.GenerateRequest" in details,
                  f"{what}: {code.name} {details!r}")
        raw_stream = d.channel.unary_stream("/sparsed.v1.Sparsed/GenerateStream", request_serializer=None,
                                            response_deserializer=None)
        try:
            list(raw_stream(b"\xff\xff\xff", timeout=10))
            code = grpc.StatusCode.OK
        except grpc.RpcError as e:
            code = e.code()
        check(code == grpc.StatusCode.INVALID_ARGUMENT, f"garbage on GenerateStream: {code.name}")
        log = d.log()
        check("[libprotobuf" not in log and all(l.startswith("ts=") for l in log.splitlines() if l),
              "malformed requests leave only logfmt lines in the log")
        d.settled("garbage", baseline)

        # 2. Overload: 10x the queue bound at once.
        results, codes = {}, []
        lock = threading.Lock()

        def one(i, req=None, timeout=120):
            try:
                ids = list(d.stub.Generate(req or greedy(i % 16), timeout=timeout).token_ids)
                with lock:
                    results[i] = ids
            except grpc.RpcError as e:
                with lock:
                    results[i] = None
                    codes.append(e.code())
        threads = [threading.Thread(target=one, args=(i,)) for i in range(320)]
        t0 = time.time()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        refused = sum(c == grpc.StatusCode.RESOURCE_EXHAUSTED for c in codes)
        check(refused > 0 and set(codes) <= {grpc.StatusCode.RESOURCE_EXHAUSTED},
              f"overload: {refused} of 320 refused with RESOURCE_EXHAUSTED, no other error "
              f"({time.time() - t0:.1f} s)")
        admitted_ok("overload", results)
        d.settled("overload", baseline)

        # 3. Cancel storm and deadline storm.
        calls = [d.stub.GenerateStream(greedy(i, 200), timeout=60) for i in range(24)]
        for c in calls:
            try:
                next(c)
            except (grpc.RpcError, StopIteration):
                pass
        for c in calls:
            c.cancel()
        results.clear()
        codes.clear()
        threads = [threading.Thread(target=one, args=(i, greedy(i, 200), 0.001 * (i % 40) + 0.001))
                   for i in range(40)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        check(set(codes) <= {grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED},
              f"deadline storm ends in deadlines: {sorted({c.name for c in codes})}")
        d.settled("cancel and deadline storms", baseline)
        results.clear()
        one(0)
        admitted_ok("after the storms", results)

        # 4. Abrupt client death: client processes killed mid-stream.
        client = (
            "import grpc, sys, time\n"
            f"sys.path.insert(0, {os.path.join(work, 'stubs')!r})\n"
            "from sparsed.v1 import sparsed_pb2 as pb, sparsed_pb2_grpc as pbg\n"
            f"s = pbg.SparsedStub(grpc.insecure_channel('127.0.0.1:{d.port}'))\n"
            "it = s.GenerateStream(pb.GenerateRequest(prompt='x', stopping=pb.StoppingParams(max_new_tokens=400, ignore_eos=True)))\n"
            "next(it); print('streaming', flush=True); time.sleep(60)\n")
        procs = [subprocess.Popen(["/usr/bin/python3", "-c", client], stdout=subprocess.PIPE, text=True)
                 for _ in range(6)]
        for p in procs:
            p.stdout.readline()
        for p in procs:
            p.kill()
            p.wait()
        d.settled("killed clients", baseline)

        # 5. Stalled readers: a client window too small for the stream, never read.
        stalled_channel = grpc.insecure_channel(
            f"127.0.0.1:{d.port}", options=[("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 1024)])
        from sparsed.v1 import sparsed_pb2_grpc as pbg
        stalled_stub = pbg.SparsedStub(stalled_channel)
        big = pb.GenerateRequest(prompt="x", stopping=pb.StoppingParams(max_new_tokens=480, ignore_eos=True),
                                 options=pb.GenerateOptions(logprobs=20, include_token_ids=True))
        stalled = [stalled_stub.GenerateStream(big, timeout=120) for _ in range(3)]
        end = time.time() + 30
        while time.time() < end and 'client stopped reading' not in d.log():
            time.sleep(0.2)
        check('msg="stream cancelled: the client stopped reading"' in d.log(),
              "stalled readers are cancelled by the daemon (logged)")
        d.settled("stalled readers (their clients still connected)", baseline)
        for s in stalled:
            s.cancel()
        stalled_channel.close()

        # 6 and 7 (preemption thrash, SIGTERM with streams in flight) use a daemon with a tiny cache.
    finally:
        rc = d.stop()
    check(rc == 0, f"chaos daemon exits 0 after SIGTERM ({rc})")

    t = ChaosDaemon(a.bin, model, work, "thrash", "--kv_cache_mb", "1", "--kv_block_size", "16", "--max_num_seqs", "16")
    try:
        base = t.proc_status()
        results.clear()
        codes.clear()

        def one_t(i):
            try:
                results[i] = list(t.stub.Generate(greedy(i % 16, 40), timeout=120).token_ids)
            except grpc.RpcError as e:
                results[i] = None
                codes.append(e.code())
        threads = [threading.Thread(target=one_t, args=(i,)) for i in range(32)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        pre = metric(t.metrics(), "sparsed_preemptions_total")
        ref = {i: list(t.stub.Generate(greedy(i, 40), timeout=60).token_ids) for i in range(16)}
        bad = [i for i, ids in results.items() if ids != ref[i % 16]]
        check(pre and pre > 0 and not codes and not bad,
              f"preemption thrash ({pre:.0f} preemptions): all 32 answered, equal to alone ({len(bad)} differ)")
        t.settled("preemption thrash", base)
        # SIGTERM with streams in flight: they complete.
        streams = [t.stub.GenerateStream(greedy(i, 60), timeout=120) for i in range(8)]
        for s in streams:
            next(s)
        t.terminate()
        ends = []
        for s in streams:
            last = None
            try:
                for m in s:
                    last = m
                ends.append(last.finish_reason if last else None)
            except grpc.RpcError as e:
                ends.append(e.code().name)
        check(ends == [pb.FINISH_REASON_LENGTH] * 8, f"SIGTERM: the 8 streams in flight complete ({ends})")
        rc = t.wait(timeout=60)
        check(rc == 0, f"and the daemon exits 0 ({rc})")
    finally:
        t.stop()
    print(f"{len(FAILURES)} failure(s)")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
