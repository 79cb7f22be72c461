#!/usr/bin/env python3
"""Transport security and request caps, with real certificates made by `openssl` here and
Debian's python3-grpcio as the client.

TLS: a client trusting the daemon's CA is served, a plaintext client fails at the handshake
(UNAVAILABLE); a certificate rotated on disk is served to new connections without a restart.
Mutual TLS: a client without a certificate is refused at the handshake, one with a certificate
the client CA signed is served; sparsed-cli connects with --tls_ca (and --tls_cert/--tls_key).
Caps: 129 stop token ids and a 300-byte request id are INVALID_ARGUMENT naming the field; a
gzip-compressed request is refused and the daemon serves on. Bad TLS flags stop the start with
the flag named.

Usage: tls_test.py --bin BUILD/bin --source REPO [--work DIR]
"""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import FAILURES, Daemon, check, parse_test_args  # noqa: E402
from daemon_test import gen_stubs  # noqa: E402


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(d, name):
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
            "-keyout", f"{name}.key", "-out", f"{name}.pem", cwd=d)


def make_leaf(d, name, ca, server):
    ext = os.path.join(d, f"{name}.ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n" if server
                else "extendedKeyUsage=clientAuth\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", f"{name}.key",
            "-out", f"{name}.csr", cwd=d)
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-days", "2", "-extfile", ext, "-out", f"{name}.pem", cwd=d)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def main():
    a, work = parse_test_args("sparsed_tls_")
    import grpc
    gen_stubs(a.source, os.path.join(work, "stubs"))
    from sparsed.v1 import sparsed_pb2 as pb, sparsed_pb2_grpc as pbg
    import health_pb2, health_pb2_grpc

    certs = os.path.join(work, "certs")
    os.makedirs(certs)
    make_ca(certs, "ca1")
    make_ca(certs, "ca2")
    make_leaf(certs, "server1", "ca1", True)
    make_leaf(certs, "server2", "ca2", True)
    make_leaf(certs, "client", "ca1", False)
    c = lambda n: os.path.join(certs, n)  # noqa: E731
    live_cert, live_key = c("live.pem"), c("live.key")
    open(live_cert, "wb").write(read(c("server1.pem")))
    open(live_key, "wb").write(read(c("server1.key")))
    model = os.path.join(a.source, "models", "sparsed-tiny")

    def health(port, root=None, chain=None, key=None, plaintext=False):
        """SERVING, or the gRPC status code name of the failure."""
        target = f"127.0.0.1:{port}"
        if plaintext:
            ch = grpc.insecure_channel(target)
        else:
            ch = grpc.secure_channel(target, grpc.ssl_channel_credentials(
                root_certificates=root, private_key=key, certificate_chain=chain))
        try:
            r = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=10)
            return health_pb2.HealthCheckResponse.ServingStatus.Name(r.status)
        except grpc.RpcError as e:
            return e.code().name
        finally:
            ch.close()

    with Daemon(a.bin, work, "tls", "--kv_cache_mb", "32", "--tls_cert", live_cert, "--tls_key",
                live_key, "--tls_reload_interval_s", "1", model=model) as d:
        d.wait_ready()
        ca1 = read(c("ca1.pem"))
        check(health(d.port, root=ca1) == "SERVING", "TLS: a client trusting the CA is served")
        check(health(d.port, plaintext=True) == "UNAVAILABLE",
              "TLS: a plaintext client fails at the handshake")
        check(health(d.port, root=read(c("ca2.pem"))) == "UNAVAILABLE",
              "TLS: a client trusting another CA fails at the handshake")
        cli = subprocess.run([os.path.join(a.bin, "sparsed-cli"), "--server", f"127.0.0.1:{d.port}",
                              "--tls_ca", c("ca1.pem"), "health"], capture_output=True, text=True)
        check(cli.returncode == 0 and "SERVING" in cli.stdout,
              f"sparsed-cli --tls_ca ({cli.returncode} {cli.stdout!r} {cli.stderr!r})")

        ch = grpc.secure_channel(f"127.0.0.1:{d.port}", grpc.ssl_channel_credentials(ca1))
        stub = pbg.SparsedStub(ch)

        def call(req, **kw):
            try:
                stub.Generate(req, timeout=30, **kw)
                return "OK", ""
            except grpc.RpcError as e:
                return e.code().name, e.details()

        ok = call(pb.GenerateRequest(prompt="Hello", stopping=pb.StoppingParams(
            max_new_tokens=2, stop_token_ids=list(range(3, 131)))))
        check(ok[0] == "OK", f"128 stop token ids are served ({ok})")
        code, msg = call(pb.GenerateRequest(prompt="Hello", stopping=pb.StoppingParams(
            max_new_tokens=2, stop_token_ids=list(range(3, 132)))))
        check(code == "INVALID_ARGUMENT" and "stop_token_ids has 129" in msg,
              f"129 stop token ids refused ({code} {msg!r})")
        code, msg = call(pb.GenerateRequest(prompt="Hello", request_id="r" * 300,
                                            stopping=pb.StoppingParams(max_new_tokens=2)))
        check(code == "INVALID_ARGUMENT" and "request_id has 300 bytes" in msg,
              f"a 300-byte request id refused ({code} {msg!r})")
        code, msg = call(pb.GenerateRequest(prompt="Hello", cache_salt="s" * 300,
                                            stopping=pb.StoppingParams(max_new_tokens=2)))
        check(code == "INVALID_ARGUMENT" and "cache_salt has 300 bytes" in msg,
              f"a 300-byte cache_salt refused ({code} {msg!r})")
        code, msg = call(pb.GenerateRequest(prompt="Hello " * 1000,
                                            stopping=pb.StoppingParams(max_new_tokens=2)),
                         compression=grpc.Compression.Gzip)
        check(code not in ("OK", "UNAVAILABLE"), f"a gzip-compressed request is refused ({code} {msg!r})")
        ok = call(pb.GenerateRequest(prompt="Hello", stopping=pb.StoppingParams(max_new_tokens=2)))
        check(ok[0] == "OK", f"the daemon serves on after it ({ok})")
        ch.close()

        # Rotation: the files are replaced by a certificate of another CA; new connections get it.
        open(live_cert + ".tmp", "wb").write(read(c("server2.pem")))
        open(live_key + ".tmp", "wb").write(read(c("server2.key")))
        os.replace(live_key + ".tmp", live_key)
        os.replace(live_cert + ".tmp", live_cert)
        ca2 = read(c("ca2.pem"))
        end, rotated = time.time() + 30, False
        while time.time() < end and not rotated:
            rotated = health(d.port, root=ca2) == "SERVING"
            time.sleep(0.5)
        check(rotated, "TLS: a rotated certificate is served without a restart")
        check(health(d.port, root=ca1) == "UNAVAILABLE", "TLS: the old CA's clients are refused after it")
        check(d.proc.poll() is None, "the daemon ran through the rotation")

    with Daemon(a.bin, work, "mtls", "--kv_cache_mb", "32", "--tls_cert", c("server1.pem"),
                "--tls_key", c("server1.key"), "--tls_client_ca", c("ca1.pem"), model=model) as d:
        d.wait_ready()
        ca1 = read(c("ca1.pem"))
        check(health(d.port, root=ca1) == "UNAVAILABLE",
              "mTLS: a client without a certificate is refused at the handshake")
        check(health(d.port, root=ca1, chain=read(c("client.pem")), key=read(c("client.key")))
              == "SERVING", "mTLS: a client certificate the CA signed is served")
        check(health(d.port, root=ca1, chain=read(c("server2.pem")), key=read(c("server2.key")))
              == "UNAVAILABLE", "mTLS: a certificate of another CA is refused")
        cli = subprocess.run([os.path.join(a.bin, "sparsed-cli"), "--server", f"127.0.0.1:{d.port}",
                              "--tls_ca", c("ca1.pem"), "--tls_cert", c("client.pem"), "--tls_key",
                              c("client.key"), "health"], capture_output=True, text=True)
        check(cli.returncode == 0 and "SERVING" in cli.stdout,
              f"sparsed-cli with a client certificate ({cli.returncode} {cli.stderr!r})")

    for flags, needle in [(["--tls_cert", c("server1.pem")], "--tls_cert and --tls_key go together"),
                          (["--tls_cert", c("nope.pem"), "--tls_key", c("server1.key")], "cannot read"),
                          (["--tls_cert", c("server1.key"), "--tls_key", c("server1.key")],
                           "holds no PEM CERTIFICATE"),
                          (["--tls_client_ca", c("ca1.pem")], "--tls_client_ca needs --tls_cert")]:
        with Daemon(a.bin, work, "bad", *flags, model=model) as bad:
            rc = bad.wait(60)  # None: it served (wrong; leaving the block stops it)
        check(rc not in (0, None) and needle in bad.log(), f"bad TLS flags {flags[::2]}: {needle}")
    print(f"{len(FAILURES)} failure(s)")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
