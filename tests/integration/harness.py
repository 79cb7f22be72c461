"""Shared pieces of the Python integration tests: check bookkeeping and free loopback ports."""
import socket

FAILURES = []


def check(cond, what):
    """Records and prints one named check."""
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        FAILURES.append(what)


def free_port():
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parse_test_args(prefix):
    """Parses the integration tests' common flags (--bin, --source, --work) and empties the work
    folder (a fresh temporary one when --work is not given). Returns (args, work)."""
    import argparse
    import os
    import shutil
    import tempfile
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--source", required=True)
    ap.add_argument("--work", default=None)
    a = ap.parse_args()
    work = a.work or tempfile.mkdtemp(prefix=prefix)
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    return a, work


def metric(text, name, **labels):
    """The value of the first series `name` in Prometheus text whose labels include `labels`
    (None when there is none)."""
    import re
    for line in text.splitlines():
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            return float(m.group(4))
    return None
