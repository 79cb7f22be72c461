#!/usr/bin/python3
"""The daemon and the tools as an operator starts and misconfigures them.

1. Every numeric flag of every binary states its range in --help ("[lo, hi]"); the test reads the
   ranges from --help and tries 0, -1, an absurdly large value and both ends of each range: a value
   outside the range exits with status 1 and an error naming the flag and the range, a value inside
   it is not refused as a usage error.
2. One address, one daemon: a second daemon on the same --listen address exits 1 with "address
   already in use"; so does another process binding it with SO_REUSEPORT; a daemon whose
   --metrics_listen port is taken says so.
3. The lines a daemon writes are logfmt, gRPC's own included.
4. Drain moves clients at once: a client balancing round-robin over two daemons sends nothing
   more to the one that got SIGTERM (it sends GOAWAY when the drain starts), while that one's
   stream in flight runs on to its end.

Usage: operator_test.py --bin BUILD/bin --source REPO [--work DIR]
"""
import os
import re
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import FAILURES, Daemon, check, free_port, parse_test_args  # noqa: E402
from daemon_test import gen_stubs  # noqa: E402

USAGE_EXIT = 1
HUGE = "1000000000000"  # 10^12


def help_flags(binary):
    """{flag: (lo, hi) or None} for each numeric flag in the binary's --help."""
    out = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=60)
    text = " ".join((out.stdout + out.stderr).split())
    flags = {}
    for m in re.finditer(r"--(\w+) \((.*?)\); default: (.*?);", text):
        name, help_text, default = m.groups()
        if not re.fullmatch(r"-?[0-9.]+(e[-+]?[0-9]+)?", default):
            continue  # strings and booleans
        r = re.findall(r"\[(-?[0-9.e+-]+), (-?[0-9.e+-]+)\]", help_text)
        flags[name] = (r[-1][0], r[-1][1]) if r else None
    return flags


def in_range(value, lo, hi):
    return float(lo) <= float(value) <= float(hi)


def check_flags(binary, base_args, label):
    flags = help_flags(binary)
    check(len(flags) > 0, f"{label}: --help lists numeric flags ({len(flags)})")
    for name, rng in sorted(flags.items()):
        check(rng is not None, f"{label} --{name}: --help states a range")
        if rng is None:
            continue
        lo, hi = rng
        for value in sorted({"0", "-1", HUGE, lo, hi}):
            r = subprocess.run([binary] + base_args + [f"--{name}={value}"], capture_output=True,
                               text=True, timeout=120)
            err = r.stdout + r.stderr
            m = re.search(rf"--{name}=(\S+) is out of range: it must be in \[(\S+), (\S+)\]", err)
            ours = bool(m) and [float(x) for x in m.groups()] == [float(value), float(lo), float(hi)]
            # Abseil refuses what the flag's type cannot hold (a negative unsigned, an int that
            # overflows) before our check runs, also with status 1 and the flag's name.
            abseil = f"Illegal value '{value}' specified for flag '{name}'" in err
            if in_range(value, lo, hi) and not abseil:
                check("out of range" not in err,
                      f"{label} --{name}={value} (in [{lo}, {hi}]) is accepted")
            else:
                check(r.returncode == USAGE_EXIT and (ours or abseil),
                      f"{label} --{name}={value} (outside [{lo}, {hi}]) is refused with the flag "
                      f"and its range, exit {USAGE_EXIT}: got exit {r.returncode}, "
                      f"{err.strip()[-200:]!r}")


def logfmt_only(text, label):
    lines = [l for l in text.splitlines() if l.strip()]
    bad = [l for l in lines if not l.startswith("ts=")]
    check(lines and not bad, f"{label}: every line is logfmt ({len(lines)} lines; first other: "
                             f"{bad[0][:120] if bad else ''!r})")


def refused_bind(bin_dir, work, name, model, listen, metrics_listen, msg, taken_port, what):
    """Starts a daemon that must fail to bind `taken_port`: exit 1 with `msg`, the address and the
    kernel's reason. Returns its stderr."""
    with Daemon(bin_dir, work, name, "--kv_cache_mb", "16", model=model, listen=listen,
                metrics_listen=metrics_listen) as d:
        rc = d.wait(120)
        err = d.log()
    check(rc == 1 and msg in err and f"listen=127.0.0.1:{taken_port}" in err
          and 'error="address already in use"' in err,
          f"{what}: exit {rc}, {err.strip()[-300:]!r}")
    return err


def check_ports(bin_dir, model, work):
    with Daemon(bin_dir, work, "first", "--kv_cache_mb", "16", model=model) as first:
        port, mport = first.port, first.mport
        check(first.wait_log(Daemon.READY), "first daemon serves")
        # A second daemon on the same address.
        err = refused_bind(bin_dir, work, "second", model, f"127.0.0.1:{port}", "", 'msg="cannot listen"',
                           port, "a second daemon on the same address exits 1 naming it")
        check("status=SERVING" not in err, "the second daemon never reports SERVING")
        logfmt_only(err, "second daemon's stderr")
        # Any other process, even one asking for SO_REUSEPORT, cannot share the port.
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            try:
                s.bind(("127.0.0.1", port))
                shared = True
            except OSError:
                shared = False
        check(not shared, "another process cannot bind the daemon's port with SO_REUSEPORT")
        # The metrics port taken.
        refused_bind(bin_dir, work, "metrics_taken", model, f"127.0.0.1:{free_port()}", f"127.0.0.1:{mport}",
                     'msg="cannot serve metrics"', mport, "a taken metrics port is named with its reason")
        check(first.proc.poll() is None, "the first daemon still runs")
        # An idle client connection must not hold the exit (it used to wait a fixed 2 s).
        import grpc
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        grpc.channel_ready_future(channel).result(timeout=30)
    rc = first.returncode  # leaving the block sent SIGTERM and waited
    check(rc == 0, f"first daemon drains and exits 0 (exit {rc})")
    text = first.log()
    logfmt_only(text, "first daemon's stderr")
    m = re.search(r'msg="stopped" .*shutdown_s=([0-9.e-]+)', text)
    check(m is not None and float(m.group(1)) < 1.0,
          f"with an idle connection open, the server stops without a fixed grace: "
          f"shutdown_s={m.group(1) if m else None}")


def check_drain_moves_clients(bin_dir, model, work):
    import grpc
    gen_stubs(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."), os.path.join(work, "stubs"))
    from sparsed.v1 import sparsed_pb2 as pb, sparsed_pb2_grpc as pbg
    a, b = (Daemon(bin_dir, work, f"drain_{name}", "--kv_cache_mb", "64", "--shutdown_timeout_s", "60",
                   model=model) for name in ("a", "b"))
    with a, b:
        ports = [a.port, b.port]
        for d in (a, b):
            check(d.wait_log(Daemon.READY), f"daemon serves ({d.log_path})")
        balanced = grpc.insecure_channel(f"ipv4:127.0.0.1:{ports[0]},127.0.0.1:{ports[1]}",
                                         options=[("grpc.lb_policy_name", "round_robin")])
        rr = pbg.SparsedStub(balanced)
        one = pb.GenerateRequest(prompt="x", stopping=pb.StoppingParams(max_new_tokens=1))
        for _ in range(6):
            rr.Generate(one, timeout=30)
        # A long stream on the first daemon keeps its drain going.
        direct = pbg.SparsedStub(grpc.insecure_channel(f"127.0.0.1:{ports[0]}"))
        stream = direct.GenerateStream(pb.GenerateRequest(
            prompt="x", stopping=pb.StoppingParams(max_new_tokens=500, ignore_eos=True)), timeout=120)
        next(stream)
        a.terminate()
        check(a.wait_log('msg="draining"'), "the first daemon drains")
        # The drain has begun once the first daemon refuses new connections (it shut its listener
        # when it sent GOAWAY); wait for that rather than for a fixed time.
        refused = False
        for _ in range(200):
            probe = grpc.insecure_channel(f"127.0.0.1:{ports[0]}", options=[("grpc.use_local_subchannel_pool", 1)])
            try:
                pbg.SparsedStub(probe).GetServerLoad(pb.GetServerLoadRequest(), timeout=0.5)
            except grpc.RpcError:
                refused = True
            probe.close()
            if refused:
                break
            time.sleep(0.05)
        check(refused, "the draining daemon refuses new connections")
        codes = []
        for _ in range(20):
            try:
                rr.Generate(one, timeout=30)
                codes.append("OK")
            except grpc.RpcError as e:
                codes.append(e.code().name)
        draining = a.proc.poll() is None
        check(draining and codes == ["OK"] * 20,
              f"while one daemon drains (still running: {draining}), round-robin calls all go to the "
              f"other: {sorted(set(codes))}")
        got = sum(1 for _ in stream)
        check(got > 0, f"the draining daemon's stream in flight ran to its end ({got} more messages)")
        rc = a.wait(timeout=90)
        check(rc == 0, f"the drained daemon exits 0 (exit {rc})")


def main():
    a, work = parse_test_args("sparsed_op_")
    b = lambda n: os.path.join(a.bin, n)
    missing = os.path.join(work, "no-such-model")
    # In-range values must get past the checks and then fail on something else, fast.
    check_flags(b("sparsed"), ["--model", missing, "--listen", "127.0.0.1:0", "--metrics_listen", ""],
                "sparsed")
    check_flags(b("sparsed-generate"), ["--model", missing], "sparsed-generate")
    check_flags(b("sparsed-calibrate"), ["--model", missing], "sparsed-calibrate")
    check_flags(b("sparsed-profile"), ["--model", missing], "sparsed-profile")
    check_flags(b("sparsed-make-model"), [], "sparsed-make-model")  # no --out: refused after
    check_flags(b("sparsed-cli"), ["--server", f"127.0.0.1:{free_port()}", "health"], "sparsed-cli")

    model = os.path.join(a.source, "models", "sparsed-tiny")
    check_ports(a.bin, model, work)
    check_drain_moves_clients(a.bin, model, work)
    print(f"{len(FAILURES)} failure(s)")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
