#!/usr/bin/env python3
"""The CPU container image, built and run for real with podman (Debian's), as users deploy it.

1. A Debian 12 base image made locally from Debian's archive (mmdebstrap; no registry is
   reachable), then the repository's Dockerfile built on it (compile in the build stage; only
   binaries, their libraries, the bundled models and a non-root user in the runtime stage). The
   image's size is reported and bounded.
2. The image run read-only as its non-root user, ports published on loopback: its own HEALTHCHECK
   turns healthy; from the host, gRPC health is SERVING, `sparsed-cli generate` gives the text the
   host-built daemon gives for the same greedy request, /metrics scrapes.
3. The same with a model mounted from the host instead of the bundled one.
4. SIGTERM (`podman stop`) while a stream is in flight: the stream completes, the container exits
   0 within the grace period.
5. The compose file's CPU stack (sparsed and Prometheus, Prometheus built from Debian's package)
   brought up with podman-compose: Prometheus scrapes sparsed through the service name, and the
   alert rules load.
6. The compose file's gateway profile: the smg gateway's image built from deploy/gateway (Debian
   and the hash-pinned PyPI wheel), two replicas behind it; the gateway lists the model and serves
   an OpenAI completion from them. Grafana has no Debian package and its image cannot be pulled here: it is not
   started (its dashboard's queries are checked by tests/deploy/deploy_test.py).

Usage: container_test.py --bin BUILD/bin --source REPO --work DIR   (as root; podman installed by
scripts/install-deps.sh).
"""
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from harness import FAILURES, check, free_port, metric, parse_test_args  # noqa: E402
from daemon_test import gen_stubs  # noqa: E402

BASE = "localhost/debian:12"
IMAGE = "localhost/sparsed:cpu"
PROM_IMAGE = "localhost/sparsed-prometheus:debian12"
GATEWAY_IMAGE = "localhost/sparsed-gateway:debian12"
MAX_IMAGE_MB = 400  # Debian minbase (~120 MB) + runtime libraries + three 10 MB models
PROMPT = "And the king said unto his servants,"
PODMAN = ["podman", "--cgroup-manager=cgroupfs", "--runtime", "runc"]


def run(cmd, timeout=120, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)


def podman(*args, timeout=120):
    return run(PODMAN + list(args), timeout=timeout)


def step(what):
    print(f"--- {what}", flush=True)


def build_logged(args, log, timeout):
    """Runs a podman build, its output to `log`; returns (ok, seconds)."""
    t0 = time.time()
    with open(log, "w") as f:
        r = subprocess.run(PODMAN + ["build"] + args, stdout=f, stderr=subprocess.STDOUT, timeout=timeout)
    if r.returncode != 0:
        print(open(log).read()[-3000:], flush=True)
    return r.returncode == 0, time.time() - t0


def make_base_image(work):
    if podman("image", "exists", BASE).returncode == 0:
        print(f"{BASE} already present", flush=True)
        return True
    tar = os.path.join(work, "debian12.tar")
    t0 = time.time()
    r = run(["mmdebstrap", "--variant=minbase", "bookworm", tar], timeout=900)
    if r.returncode != 0:
        print(r.stdout[-2000:] + r.stderr[-2000:], flush=True)
        return False
    r = podman("import", tar, BASE, timeout=300)
    os.remove(tar)
    print(f"{BASE} made from Debian's archive in {time.time() - t0:.0f} s", flush=True)
    return r.returncode == 0


def cli(bin_dir, port, *args, timeout=60):
    return run([os.path.join(bin_dir, "sparsed-cli"), "--server", f"127.0.0.1:{port}"] + list(args), timeout=timeout)


def host_reference(bin_dir, source, work):
    """The host-built daemon's greedy answer to PROMPT."""
    port, mport = free_port(), free_port()
    log = open(os.path.join(work, "host_daemon.log"), "w")
    p = subprocess.Popen([os.path.join(bin_dir, "sparsed"), "--model", os.path.join(source, "models", "sparsed-tiny"),
                          "--listen", f"127.0.0.1:{port}", "--metrics_listen", f"127.0.0.1:{mport}"],
                         stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(300):
            if cli(bin_dir, port, "health", timeout=5).stdout.strip() == "SERVING":
                break
            time.sleep(0.1)
        r = cli(bin_dir, port, "--max_new_tokens", "24", "generate", PROMPT)
        return r.stdout if r.returncode == 0 else None
    finally:
        p.terminate()
        p.wait(timeout=60)


def wait_healthy(name, timeout_s=180):
    """Runs the image's own HEALTHCHECK (podman has no systemd timer here to run it) until it
    passes; returns the seconds it took, or None."""
    t0 = time.time()
    while time.time() - t0 < timeout_s:
        if podman("healthcheck", "run", name, timeout=30).returncode == 0:
            return time.time() - t0
        state = podman("inspect", "--format", "{{.State.Status}}", name).stdout.strip()
        if state not in ("running", "created", "configured"):
            print(podman("logs", name).stderr[-2000:], flush=True)
            return None
        time.sleep(0.5)
    return None


def run_container(name, port, mport, extra=(), args=()):
    podman("rm", "-f", name)
    return podman("run", "-d", "--name", name, "--read-only", "--tmpfs", "/tmp",
                  "-p", f"127.0.0.1:{port}:50051", "-p", f"127.0.0.1:{mport}:9464", *extra, IMAGE, *args)


def check_serving(bin_dir, name, port, mport, reference, what):
    t0 = time.time()
    started = wait_healthy(name)
    check(started is not None, f"{what}: the image's HEALTHCHECK reports healthy"
          + (f" after {started:.1f} s" if started is not None else ""))
    if started is None:
        return None
    health = podman("inspect", "--format", "{{.State.Health.Status}}", name).stdout.strip()
    check(health == "healthy", f"{what}: podman inspect says {health!r}")
    r = cli(bin_dir, port, "health")
    check(r.stdout.strip() == "SERVING", f"{what}: gRPC health from the host through the published port: {r.stdout.strip()!r}")
    r = cli(bin_dir, port, "--max_new_tokens", "24", "generate", PROMPT)
    check(r.returncode == 0 and r.stdout == reference,
          f"{what}: greedy text equals the host-built daemon's ({r.stdout.strip()[-60:]!r})")
    m = urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=5).read().decode()
    n = metric(m, "sparsed_generated_tokens_total")
    check(n is not None and n >= 1, f"{what}: /metrics scrapes from the host (generated tokens {n})")
    return time.time() - t0


def main():
    a, work = parse_test_args("sparsed_container_")
    if os.geteuid() != 0:
        print("SKIPPED: podman runs the image as root here (run the tests as root)", flush=True)
        return 77
    bin_dir, source = os.path.abspath(a.bin), os.path.abspath(a.source)
    os.environ["CONTAINERS_CONF"] = os.path.join(source, "tests", "container", "containers.conf")
    names = ["sparsed-test-bundled", "sparsed-test-mounted"]
    project = "sparsedtest"
    compose_env = None
    try:
        step("base image")
        if not make_base_image(work):
            check(False, f"{BASE} made with mmdebstrap and podman import")
            return 1
        step("build the CPU image (compiles the daemon in the build stage)")
        ok, secs = build_logged(["--network=host", "--format", "docker", "--build-arg", f"BUILD_IMAGE={BASE}",
                                 "--build-arg", f"RUNTIME_IMAGE={BASE}", "-t", IMAGE, source],
                                os.path.join(work, "build.log"), timeout=1800)
        check(ok, f"podman build of the Dockerfile on {BASE} ({secs:.0f} s)")
        if not ok:
            return 1
        size_mb = int(podman("image", "inspect", "--format", "{{.Size}}", IMAGE).stdout.strip()) / 1e6
        check(size_mb <= MAX_IMAGE_MB, f"image size {size_mb:.0f} MB (bound {MAX_IMAGE_MB} MB)")
        user = podman("image", "inspect", "--format", "{{.Config.User}}", IMAGE).stdout.strip()
        check(user == "10001:10001", f"the image runs as the numeric non-root user ({user})")
        listing = podman("run", "--rm", "--entrypoint", "ls", IMAGE, "/opt/sparsed/bin", "/opt/sparsed/lib").stdout
        check("sparsed-cli" in listing and "sparsed-tokenizer" in listing,
              "the runtime stage holds the binaries and the tokenizer program")
        ldd = podman("run", "--rm", "--entrypoint", "sh", IMAGE, "-c",
                     "for f in /opt/sparsed/bin/* /opt/sparsed/lib/sparsed-tokenizer; do ldd $f; done").stdout
        check("=>" in ldd and "not found" not in ldd,
              "every shared library the binaries load resolves inside the image"
              + ("" if "not found" not in ldd else ": " + " ".join(l.strip() for l in ldd.splitlines() if "not found" in l)))
        tools = podman("run", "--rm", "--entrypoint", "sh", IMAGE, "-c", "command -v cmake g++ cc ninja").stdout
        check(tools.strip() == "", f"and no build toolchain ({tools.split()})")

        step("reference answer from the host-built daemon")
        reference = host_reference(bin_dir, source, work)
        check(reference is not None and len(reference) > len(PROMPT), "host daemon answers")

        step("run the image read-only, bundled model")
        port, mport = free_port(), free_port()
        t_run = time.time()
        r = run_container(names[0], port, mport)
        check(r.returncode == 0, "podman run --read-only (tmpfs /tmp) as the image's user" + ("" if r.returncode == 0 else ": " + r.stderr[-500:]))
        if r.returncode != 0:
            return 1
        took = check_serving(bin_dir, names[0], port, mport, reference, "bundled model")
        if took is not None:
            print(f"start-up to healthy: {time.time() - t_run:.1f} s after podman run", flush=True)
        uid = podman("exec", names[0], "id", "-u").stdout.strip()
        check(uid == "10001", f"the daemon runs as uid {uid}")
        w = podman("exec", names[0], "sh", "-c", "touch /opt/sparsed/x 2>&1; echo rc=$?").stdout
        check("rc=0" not in w, "the container's file system is read-only")

        step("SIGTERM with a stream in flight")
        gen_stubs(source, os.path.join(work, "stubs"))
        import grpc
        from sparsed.v1 import sparsed_pb2 as pb, sparsed_pb2_grpc as pbg
        stub = pbg.SparsedStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
        req = pb.GenerateRequest(prompt=PROMPT, add_bos=True, sampling=pb.SamplingParams(temperature=0.0),
                                 stopping=pb.StoppingParams(max_new_tokens=400, ignore_eos=True),
                                 options=pb.GenerateOptions(include_token_ids=True))
        got = {"tokens": 0, "finish": None, "error": None}
        first = threading.Event()

        def stream():
            try:
                for msg in stub.GenerateStream(req, timeout=120):
                    got["tokens"] += len(msg.token_ids)
                    got["finish"] = msg.finish_reason
                    first.set()
            except grpc.RpcError as e:
                got["error"] = f"{e.code()}: {e.details()}"
            first.set()
        t = threading.Thread(target=stream)
        t.start()
        first.wait(60)
        at_stop = got["tokens"]
        t0 = time.time()
        stop = podman("stop", "--time", "45", names[0], timeout=120)
        stopped = time.time() - t0
        t.join(120)
        code = podman("inspect", "--format", "{{.State.ExitCode}}", names[0]).stdout.strip()
        check(at_stop < 400 and got["error"] is None and got["finish"] == pb.FINISH_REASON_LENGTH and got["tokens"] == 400,
              f"the stream in flight at SIGTERM ({at_stop} of 400 tokens) completed: {got}")
        check(stop.returncode == 0 and code == "0" and stopped < 45,
              f"the container exited {code} {stopped:.1f} s after SIGTERM (grace 45 s)")
        logs = podman("logs", names[0]).stderr
        check('msg="draining"' in logs, "the daemon logged its drain")

        step("run the image with a model mounted from the host")
        port2, mport2 = free_port(), free_port()
        model = os.path.join(source, "models", "sparsed-tiny")
        r = run_container(names[1], port2, mport2, extra=["-v", f"{model}:/models/tiny:ro"],
                          args=["--model", "/models/tiny"])
        check(r.returncode == 0, "podman run with -v MODEL:/models/tiny:ro")
        if r.returncode == 0:
            check_serving(bin_dir, names[1], port2, mport2, reference, "mounted model")
            logs = podman("logs", names[1]).stderr
            check("/models/tiny" in logs, "the daemon loaded the mounted model (its start-up log names /models/tiny)")
            podman("stop", "--time", "30", names[1], timeout=90)

        step("compose: sparsed and Prometheus (built from Debian's package)")
        ok, secs = build_logged(["--network=host", "--format", "docker", "--build-arg", f"BASE_IMAGE={BASE}",
                                 "-f", os.path.join(source, "deploy", "prometheus", "Containerfile"), "-t", PROM_IMAGE,
                                 os.path.join(source, "deploy", "prometheus")],
                                os.path.join(work, "prometheus_build.log"), timeout=900)
        check(ok, f"Prometheus image from Debian's prometheus package ({secs:.0f} s)")
        if not ok:
            return 1
        gport, mport3, pport = free_port(), free_port(), free_port()
        compose_env = dict(os.environ, SPARSED_IMAGE=IMAGE, PROMETHEUS_IMAGE=PROM_IMAGE,
                           SPARSED_GRPC_PORT=str(gport), SPARSED_METRICS_PORT=str(mport3),
                           PROMETHEUS_PORT=str(pport))
        compose = ["podman-compose", "--podman-args", "--cgroup-manager=cgroupfs --runtime runc",
                   "-p", project, "-f", os.path.join(source, "deploy", "compose.yaml")]
        r = run(compose + ["up", "-d", "sparsed", "prometheus"], timeout=300, env=compose_env)
        check(r.returncode == 0, "podman-compose up sparsed prometheus" + ("" if r.returncode == 0 else ": " + (r.stdout + r.stderr)[-1500:]))
        targets, rules = [], 0
        for _ in range(240):
            try:
                doc = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{pport}/api/v1/targets", timeout=5).read())
                targets = doc["data"]["activeTargets"]
                if any(x["health"] == "up" for x in targets):
                    break
            except Exception:
                pass
            time.sleep(0.5)
        up = [x for x in targets if x["health"] == "up"]
        check(bool(up) and up[0]["scrapeUrl"] == "http://sparsed:9464/metrics",
              f"Prometheus scrapes sparsed through the service name: {[(x['scrapeUrl'], x['health'], x.get('lastError')) for x in targets]}")
        try:
            groups = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{pport}/api/v1/rules", timeout=5).read())["data"]["groups"]
            rules = sum(len(g["rules"]) for g in groups)
        except Exception as e:
            print(f"rules: {e}", flush=True)
        check(rules > 0, f"the alert rules load in the compose Prometheus ({rules} rules)")
        r = cli(bin_dir, gport, "health")
        check(r.stdout.strip() == "SERVING", f"the compose sparsed serves on the published port ({r.stdout.strip()!r})")

        step("compose: the gateway profile (smg before two replicas)")
        # This machine reaches PyPI through a TLS-inspecting proxy whose CA only the host trusts.
        ca = ["--secret", "id=pip_ca,src=/etc/ssl/certs/ca-certificates.crt"] \
            if os.path.exists("/etc/ssl/certs/ca-certificates.crt") else []
        ok, secs = build_logged(["--network=host", "--format", "docker", "--build-arg", f"BASE_IMAGE={BASE}"] + ca +
                                ["-f", os.path.join(source, "deploy", "gateway", "Containerfile"),
                                 "-t", GATEWAY_IMAGE, os.path.join(source, "deploy", "gateway")],
                                os.path.join(work, "gateway_build.log"), timeout=900)
        check(ok, f"gateway image from Debian and the pinned smg wheel ({secs:.0f} s)")
        if not ok:
            return 1
        http_port = free_port()
        compose_env["GATEWAY_IMAGE"] = GATEWAY_IMAGE
        compose_env["GATEWAY_PORT"] = str(http_port)
        r = run(compose + ["up", "-d", "replica-a", "replica-b", "gateway"], timeout=300, env=compose_env)
        check(r.returncode == 0, "podman-compose up replica-a replica-b gateway" +
              ("" if r.returncode == 0 else ": " + (r.stdout + r.stderr)[-1500:]))
        listed = False
        for _ in range(360):
            try:
                models = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{http_port}/v1/models", timeout=5).read())
                if any(m["id"] == "sparsed-tiny" for m in models.get("data", [])):
                    listed = True
                    break
            except Exception:
                pass
            time.sleep(0.5)
        check(listed, "the gateway lists the replicas' model")
        body = json.dumps({"model": "sparsed-tiny", "prompt": PROMPT, "max_tokens": 8, "temperature": 0}).encode()
        try:
            req = urllib.request.Request(f"http://127.0.0.1:{http_port}/v1/completions", data=body,
                                         headers={"content-type": "application/json"})
            done = json.loads(urllib.request.urlopen(req, timeout=60).read())
            choice = done["choices"][0]
            check(choice["finish_reason"] == "length" and done["usage"]["completion_tokens"] == 8 and choice["text"],
                  f"an OpenAI completion through the gateway ({choice['text']!r})")
        except Exception as e:
            logs = podman("logs", "--tail", "30", f"{project}_gateway_1").stdout
            check(False, f"an OpenAI completion through the gateway: {e}\n{logs[-1500:]}")
    finally:
        if compose_env is not None:
            run(["podman-compose", "--podman-args", "--cgroup-manager=cgroupfs --runtime runc", "-p", project,
                 "-f", os.path.join(source, "deploy", "compose.yaml"), "down"], timeout=300, env=compose_env)
        for n in names:
            podman("rm", "-f", n)
    if FAILURES:
        print(f"{len(FAILURES)} container checks failed", flush=True)
        return 1
    print("all container checks passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
