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
