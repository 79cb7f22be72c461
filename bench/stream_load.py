#!/usr/bin/python3
"""Many concurrent streams against one daemon: its threads and memory, and what ordinary
requests see meanwhile.

Opens --streams GenerateStream calls at once over --channels connections (grpc.aio; each stream
reads every message), while a few ordinary streaming requests with a higher priority run one after
another. Samples the daemon's thread count and RSS every 0.2 s. Reports: peak threads and RSS
against the idle daemon, the streams' completion, and the ordinary requests' inter-token latency
p50/p99 and time to first token.

Usage: bench/stream_load.py --bin build/bin --model models/sparsed-tiny [--streams 2000]
           [--channels 20] [--max_new 64] [--max_num_seqs 256]
"""
import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

import grpc


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_status(pid):
    f = {}
    for line in open(f"/proc/{pid}/status"):
        k, _, v = line.partition(":")
        f[k] = v.strip()
    return int(f["Threads"]), int(f["VmRSS"].split()[0]) / 1024.0


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(p * len(v)))] if v else float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--streams", type=int, default=2000)
    ap.add_argument("--channels", type=int, default=20)
    ap.add_argument("--max_new", type=int, default=64)
    ap.add_argument("--max_num_seqs", type=int, default=256)
    ap.add_argument("--daemon_flags", default="", help="more flags for the daemon, e.g. "
                    "'--priority_preemption=false'")
    a = ap.parse_args()
    source = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    sys.path.insert(0, os.path.join(source, "tests", "integration"))
    from daemon_test import gen_stubs
    work = tempfile.mkdtemp(prefix="sparsed_streams_")
    gen_stubs(source, os.path.join(work, "stubs"))
    from sparsed.v1 import sparsed_pb2 as pb, sparsed_pb2_grpc as pbg

    port, mport = free_port(), free_port()
    log = open(os.path.join(work, "sparsed.log"), "w")
    daemon = subprocess.Popen([os.path.join(a.bin, "sparsed"), "--model", a.model, "--listen", f"127.0.0.1:{port}",
                               "--metrics_listen", f"127.0.0.1:{mport}", "--kv_cache_mb", "512",
                               "--max_num_seqs", str(a.max_num_seqs), "--max_num_batched_tokens", "1024",
                               "--max_waiting_requests", str(a.streams + 64)] + a.daemon_flags.split(),
                              stderr=log)
    try:
        grpc.channel_ready_future(grpc.insecure_channel(f"127.0.0.1:{port}")).result(timeout=60)
        while 'msg="serving"' not in open(os.path.join(work, "sparsed.log")).read():
            time.sleep(0.05)
        time.sleep(0.5)
        idle_threads, idle_rss = proc_status(daemon.pid)
        peak = [idle_threads, idle_rss]
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                t, r = proc_status(daemon.pid)
                peak[0], peak[1] = max(peak[0], t), max(peak[1], r)
                time.sleep(0.2)
        sampler = threading.Thread(target=sample)
        sampler.start()

        async def run():
            channels = [grpc.aio.insecure_channel(f"127.0.0.1:{port}") for _ in range(a.channels)]
            stubs = [pbg.SparsedStub(c) for c in channels]
            done = {"ok": 0, "failed": 0, "tokens": 0}

            async def one_stream(i):
                req = pb.GenerateRequest(prompt_token_ids=pb.PromptTokenIds(ids=[1, 10 + i % 900, 7]),
                                         stopping=pb.StoppingParams(max_new_tokens=a.max_new, ignore_eos=True),
                                         options=pb.GenerateOptions(include_token_ids=True))
                try:
                    async for m in stubs[i % len(stubs)].GenerateStream(req, timeout=600):
                        done["tokens"] += len(m.token_ids)
                    done["ok"] += 1
                except grpc.aio.AioRpcError:
                    done["failed"] += 1

            itl, ttft, server_ttft = [], [], []

            # The ordinary requests run in their own thread on a synchronous channel, made and used
            # once before the flood: what they measure is the daemon's scheduling, not this
            # process's event loop (busy with 2,000 streams) or a connection set up under load.
            ctrl = pbg.SparsedStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
            ctrl.Generate(pb.GenerateRequest(prompt_token_ids=pb.PromptTokenIds(ids=[1, 5]),
                                             stopping=pb.StoppingParams(max_new_tokens=1)))

            def ordinary_thread():
                time.sleep(2.0)  # the load is on
                for k in range(8):
                    req = pb.GenerateRequest(prompt_token_ids=pb.PromptTokenIds(ids=[1, 5, 6, 7 + k]), priority=10,
                                             stopping=pb.StoppingParams(max_new_tokens=32, ignore_eos=True),
                                             options=pb.GenerateOptions(include_token_ids=True))
                    t0 = last = time.time()
                    first = True
                    for m in ctrl.GenerateStream(req, timeout=600):
                        now = time.time()
                        if m.HasField("timings"):  # the last message: the daemon's own view
                            server_ttft.append(m.timings.first_token_seconds)
                        if m.token_ids:
                            if first:
                                ttft.append(now - t0)
                                first = False
                            else:
                                itl.append(now - last)
                            last = now

            async def ordinary():
                await asyncio.get_running_loop().run_in_executor(None, ordinary_thread)

            t0 = time.time()
            streams = [asyncio.ensure_future(one_stream(i)) for i in range(a.streams)]
            await ordinary()
            await asyncio.gather(*streams)
            for c in channels:
                await c.close()
            return done, itl, ttft, server_ttft, time.time() - t0

        done, itl, ttft, server_ttft, secs = asyncio.run(run())
        stop.set()
        sampler.join()
        after_threads, after_rss = proc_status(daemon.pid)
        print(f"{a.streams} concurrent streams over {a.channels} connections, {a.max_new} tokens each, "
              f"--max_num_seqs {a.max_num_seqs} {a.daemon_flags}; model {a.model}; {os.cpu_count()} CPUs\n")
        print("| | value |\n|---|---|")
        print(f"| streams completed / failed | {done['ok']} / {done['failed']} ({done['tokens']} tokens in {secs:.1f} s, "
              f"{done['tokens'] / secs:.0f} tok/s) |")
        print(f"| daemon threads: idle / peak / after | {idle_threads} / {peak[0]} / {after_threads} |")
        print(f"| daemon RSS MB: idle / peak / after | {idle_rss:.0f} / {peak[1]:.0f} / {after_rss:.0f} |")
        print(f"| ordinary requests (priority 10) meanwhile: TTFT p50 / max ms | {1e3 * pct(ttft, .5):.1f} / "
              f"{1e3 * max(ttft):.1f} |")
        print(f"| ordinary requests meanwhile: inter-token p50 / p99 ms | {1e3 * pct(itl, .5):.1f} / "
              f"{1e3 * pct(itl, .99):.1f} |")
        print(f"| ordinary requests: each TTFT ms, client / daemon (submission to first token) | "
              f"{' '.join(f'{1e3 * t:.0f}' for t in ttft)} / {' '.join(f'{1e3 * t:.0f}' for t in server_ttft)} |")
    finally:
        daemon.terminate()
        daemon.wait(timeout=120)


if __name__ == "__main__":
    main()
