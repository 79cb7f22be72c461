"""Shared pieces of the Python integration tests: check bookkeeping, free loopback ports, the
common flags, /metrics parsing and the daemon fixture (`Daemon`) the tests start `sparsed` with."""
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


class Daemon:
    """One `sparsed` process as the integration tests run it: on free loopback ports (`port`,
    `mport`), its stderr (logfmt) in WORK/NAME.log. A context manager: `with` starts it and, on
    leaving, stops it (`returncode` then holds its exit code).

    `wait_ready()` waits for the log line the daemon writes once health says SERVING
    (server/main.cc: msg="serving"). A daemon that must fail (bad flags, a taken port) is started
    the same way and awaited with `wait(timeout)`; `log()` then says why.

    Daemon(bin_dir, work, name, "--kv_cache_mb", "64", model=m): `model` gives --model (None: the
    flags name it, or it is left out); `listen` and `metrics_listen` replace the free ports
    (metrics_listen="" serves no metrics)."""

    READY = 'msg="serving"'

    def __init__(self, bin_dir, work, name, *flags, model=None, listen=None, metrics_listen=None):
        import os
        self.port, self.mport = free_port(), free_port()
        self.listen = listen if listen is not None else f"127.0.0.1:{self.port}"
        metrics_listen = metrics_listen if metrics_listen is not None else f"127.0.0.1:{self.mport}"
        self.cmd = [os.path.join(bin_dir, "sparsed")] + (["--model", model] if model else []) + [
            "--listen", self.listen, "--metrics_listen", metrics_listen] + list(flags)
        self.log_path = os.path.join(work, f"{name}.log")
        self.proc = None
        self.returncode = None

    def start(self):
        import subprocess
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(self.cmd, stderr=log)
        return self

    def __enter__(self):
        return self.start() if self.proc is None else self

    def __exit__(self, *exc):
        self.stop()
        return False

    def log(self):
        """The daemon's stderr so far."""
        with open(self.log_path) as f:
            return f.read()

    def tail(self, chars=3000):
        """The last `chars` characters of the log."""
        return self.log()[-chars:]

    def wait_log(self, needle, timeout=120):
        """Whether `needle` appears in the log within `timeout` seconds (False at once when the
        daemon exits without writing it)."""
        import time
        end = time.time() + timeout
        while time.time() < end:
            if needle in self.log():
                return True
            if self.proc.poll() is not None:
                return needle in self.log()
            time.sleep(0.02)
        return False

    def wait_ready(self, timeout=120):
        """Waits until the daemon serves (health SERVING); raises with the log's tail if it exits
        or does not serve within `timeout` seconds."""
        if not self.wait_log(self.READY, timeout):
            state = f"exited with {self.proc.poll()}" if self.proc.poll() is not None else \
                f"not serving after {timeout} s"
            raise RuntimeError(f"sparsed {state}: {' '.join(self.cmd)}\n--- {self.log_path} ---\n"
                               f"{self.tail()}")
        return self

    def metrics(self):
        """The /metrics text."""
        import urllib.request
        with urllib.request.urlopen(f"http://127.0.0.1:{self.mport}/metrics", timeout=10) as r:
            return r.read().decode()

    def terminate(self):
        """Sends SIGTERM (the daemon drains, then exits) without waiting."""
        import signal
        self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout):
        """The exit code, or None if the daemon still runs after `timeout` seconds."""
        import subprocess
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        return self.returncode

    def stop(self, timeout=60):
        """SIGTERM if it still runs, then its exit code; killed (-9) if it has not exited within
        `timeout` seconds."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.terminate()
            if self.wait(timeout) is None:
                self.proc.kill()
        self.returncode = self.proc.wait()
        return self.returncode
