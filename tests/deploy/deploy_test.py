#!/usr/bin/python3
"""Checks the deployment files with the real tools and a running daemon.

1. promtool check config / check rules / test rules on deploy/prometheus.
2. deploy/compose.yaml and every Kubernetes manifest parse and are consistent: kinds, API
   versions, ports and probes that match the daemon's flags, selectors that match labels.
3. Every metric the dashboard and the alert rules use exists in a running daemon's /metrics.
4. A real Prometheus with the shipped scrape config (rewritten only for loopback ports) scrapes
   the daemon under traffic; every dashboard panel's query returns data; the rules load.
5. The Dockerfile's build stage installs its packages with scripts/install-deps.sh (one list).
No Docker engine runs here: the image itself is not built by this test.

Usage: deploy_test.py --bin BUILD/bin --source REPO [--work DIR]
"""
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request

import yaml

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from harness import FAILURES, check, free_port, parse_test_args  # noqa: E402


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def flag_value(args, name):
    for i, a in enumerate(args):
        if a == name and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return None


def subset(a, b):
    return all(b.get(k) == v for k, v in (a or {}).items())


def check_prometheus(deploy):
    prom = os.path.join(deploy, "prometheus")
    for args in (["check", "config", "prometheus.yml"], ["check", "config", "prometheus-gateway.yml"],
                 ["check", "rules", "alerts.yml"], ["test", "rules", "alerts_test.yml"]):
        r = run(["promtool"] + args, cwd=prom)
        check(r.returncode == 0, "promtool " + " ".join(args) + ("" if r.returncode == 0 else ": " + r.stdout + r.stderr))
    rules = yaml.safe_load(open(os.path.join(prom, "alerts.yml")))["groups"][0]["rules"]
    tested = open(os.path.join(prom, "alerts_test.yml")).read()
    for r in rules:
        check(f"alertname: {r['alert']}" in tested, f"alert {r['alert']} has a unit test")
    return rules


def check_compose(deploy, dockerfile_ports):
    c = yaml.safe_load(open(os.path.join(deploy, "compose.yaml")))
    sv = c["services"]
    check({"sparsed", "sparsed-gpu", "prometheus", "grafana"} <= set(sv), f"compose services: {sorted(sv)}")
    check(sv["sparsed"]["profiles"] == ["cpu"] and sv["sparsed-gpu"]["profiles"] == ["gpu"], "cpu and gpu profiles")
    devices = sv["sparsed-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    check(devices[0]["capabilities"] == ["gpu"], "GPU reservation in the gpu profile")
    for name in ("sparsed", "sparsed-gpu"):
        ports = {p.rsplit(":", 1)[1] for p in sv[name]["ports"]}
        check(ports == dockerfile_ports, f"{name} publishes the daemon's ports {sorted(ports)}")
        check("health" in sv[name]["healthcheck"]["test"], f"{name} health check calls the gRPC health service")
        check(sv[name].get("read_only") is True and sv[name].get("cap_drop") == ["ALL"]
              and "no-new-privileges:true" in sv[name].get("security_opt", []),
              f"{name}: read-only root, no capabilities, no privilege gain")
    for vol in sv["prometheus"]["volumes"] + sv["grafana"]["volumes"]:
        src = re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", vol).split(":")[0]  # ${VAR:-default}
        check(os.path.exists(os.path.join(deploy, src)), f"compose volume {src} exists")
    scrape = yaml.safe_load(open(os.path.join(deploy, "prometheus", "prometheus.yml")))
    target = scrape["scrape_configs"][0]["static_configs"][0]["targets"][0]
    check(target == "sparsed:9464", f"Prometheus scrapes the compose service's metrics port ({target})")
    check("sparsed" in sv["sparsed-gpu"]["networks"]["default"]["aliases"], "gpu service answers as 'sparsed' too")
    check_compose_gateway(deploy, sv)


def check_compose_gateway(deploy, sv):
    """The gateway profile: two replicas reachable only through the smg gateway, which lists
    them as gRPC workers; Prometheus scrapes all three."""
    replicas = [n for n, v in sv.items() if v.get("profiles") == ["gateway"] and n != "gateway"]
    check(len(replicas) >= 2 and all(sv[n].get("ports") == [] for n in replicas),
          f"gateway profile: replicas {replicas} without host ports")
    gw = sv["gateway"]
    cmd = gw["command"]
    workers = cmd[cmd.index("--worker-urls") + 1:]
    check(cmd[0] == "launch" and sorted(workers) == sorted(f"grpc://{n}:50051" for n in replicas),
          f"the gateway's workers are the replicas over gRPC ({workers})")
    check(gw["build"]["context"] == "./gateway" and
          os.path.exists(os.path.join(deploy, "gateway", gw["build"]["dockerfile"])),
          "the gateway image is built from deploy/gateway")
    check(gw.get("read_only") is True and gw.get("cap_drop") == ["ALL"], "gateway: read-only, no capabilities")
    req = open(os.path.join(deploy, "gateway", "requirements.txt")).read()
    check(re.search(r"^smg==[\d.]+ --hash=sha256:[0-9a-f]{64}$", req, re.M) is not None,
          "the gateway wheel is pinned by version and hash")
    for prof in ("prometheus", "grafana"):
        check("gateway" in sv[prof]["profiles"], f"{prof} runs in the gateway profile")
    scrape = yaml.safe_load(open(os.path.join(deploy, "prometheus", "prometheus-gateway.yml")))
    targets = {t for c in scrape["scrape_configs"] for sc in c["static_configs"] for t in sc["targets"]}
    port = cmd[cmd.index("--prometheus-port") + 1]
    check(targets == {f"{n}:9464" for n in replicas} | {f"gateway:{port}"},
          f"the gateway profile's Prometheus scrapes the replicas and the gateway ({sorted(targets)})")


def load_kustomize(path):
    k = yaml.safe_load(open(os.path.join(path, "kustomization.yaml")))
    docs = []
    for res in k.get("resources", []) + k.get("components", []):
        p = os.path.join(path, res)
        if os.path.isdir(p):
            docs += load_kustomize(p)[0]
        else:
            docs += [d for d in yaml.safe_load_all(open(p)) if d]
    return docs, k


def check_k8s(deploy, dockerfile_ports):
    known = {"Deployment": "apps/v1", "Service": "v1", "ServiceMonitor": "monitoring.coreos.com/v1",
             "HorizontalPodAutoscaler": "autoscaling/v2", "PodDisruptionBudget": "policy/v1",
             "PrometheusRule": "monitoring.coreos.com/v1", "ConfigMap": "v1",
             "NetworkPolicy": "networking.k8s.io/v1"}
    base, _ = load_kustomize(os.path.join(deploy, "k8s", "base"))
    for d in base:
        check(known.get(d["kind"]) == d["apiVersion"], f"{d['kind']} {d['metadata']['name']}: apiVersion {d['apiVersion']}")
    by = {}
    for d in base:
        by.setdefault(d["kind"], []).append(d)
    dep = by["Deployment"][0]
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    check(subset(dep["spec"]["selector"]["matchLabels"], pod_labels), "Deployment selector matches its pod labels")
    c = dep["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    check({str(v) for v in ports.values()} == dockerfile_ports, f"container ports {ports} match the image's listen flags")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        check(c[probe]["grpc"]["port"] == ports["grpc"], f"{probe} is a gRPC health probe on the gRPC port")
    check(c["livenessProbe"]["grpc"].get("service") == "liveness" and "service" not in c["readinessProbe"]["grpc"],
          "liveness asks the daemon's 'liveness' health name (up while loading and draining), readiness the default")
    shutdown = float(flag_value(c["args"], "--shutdown_timeout_s"))
    pre = c["lifecycle"]["preStop"]["sleep"]["seconds"]
    grace = dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    check(grace > shutdown + pre, f"termination grace {grace}s > drain {shutdown}s + preStop {pre}s")
    check("requests" in c["resources"], "resource requests set")
    pod = dep["spec"]["template"]["spec"]
    psc, csc = pod.get("securityContext", {}), c.get("securityContext", {})
    check(psc.get("runAsNonRoot") is True and psc.get("runAsUser") == 10001
          and psc.get("seccompProfile", {}).get("type") == "RuntimeDefault"
          and csc.get("allowPrivilegeEscalation") is False and csc.get("readOnlyRootFilesystem") is True
          and csc.get("capabilities", {}).get("drop") == ["ALL"]
          and pod.get("automountServiceAccountToken") is False,
          "Pod Security 'restricted': non-root 10001 (the image's USER), RuntimeDefault seccomp, no escalation, "
          "no capabilities, read-only root, no service-account token")
    check("replicas" not in dep["spec"], "no replicas beside the HPA (an apply would reset its count)")
    ru = dep["spec"].get("strategy", {}).get("rollingUpdate", {})
    check(ru.get("maxUnavailable") == 0 and ru.get("maxSurge", 0) >= 1, "rollouts surge before removing a pod")
    check(any(t.get("topologyKey") == "kubernetes.io/hostname" for t in pod.get("topologySpreadConstraints", [])),
          "replicas spread across nodes")
    services = by["Service"]
    for s in services:
        check(subset(s["spec"]["selector"], pod_labels), f"Service {s['metadata']['name']} selects the pods")
        for p in s["spec"]["ports"]:
            check(p["targetPort"] in ports, f"Service {s['metadata']['name']} port {p['name']} targets a container port")
    check(any(s["spec"].get("clusterIP") == "None" for s in services), "a headless Service for client-side balancing")
    sm = by["ServiceMonitor"][0]
    svc = next(s for s in services if subset(sm["spec"]["selector"]["matchLabels"], s["metadata"]["labels"]))
    check(any(p["name"] == sm["spec"]["endpoints"][0]["port"] for p in svc["spec"]["ports"]),
          "ServiceMonitor scrapes a named Service port")
    hpa = by["HorizontalPodAutoscaler"][0]
    check(hpa["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"] and hpa["spec"]["scaleTargetRef"]["kind"] == "Deployment",
          "HPA targets the Deployment")
    hpa_metric = hpa["spec"]["metrics"][0]["pods"]["metric"]["name"]
    pdb = by["PodDisruptionBudget"][0]
    check(subset(pdb["spec"]["selector"]["matchLabels"], pod_labels), "PDB selects the pods")
    check(pdb["spec"].get("maxUnavailable") == 1 and "minAvailable" not in pdb["spec"],
          "PDB lets one pod go at a time (maxUnavailable 1)")
    netpol = by["NetworkPolicy"][0]
    check(subset(netpol["spec"]["podSelector"]["matchLabels"], pod_labels) and netpol["spec"]["policyTypes"] == ["Ingress"],
          "the NetworkPolicy selects the pods' ingress")
    rules = {r["ports"][0]["port"]: r["from"][0] for r in netpol["spec"]["ingress"]}
    check(set(rules) == {"grpc", "metrics"} and all(p in ports for p in rules),
          "ingress only to the named gRPC and metrics ports")
    check("podSelector" in rules["grpc"] and "namespaceSelector" not in rules["grpc"]
          and rules["metrics"].get("namespaceSelector", {}).get("matchLabels", {}).get("kubernetes.io/metadata.name") == "monitoring",
          "gRPC from labelled client pods of the namespace, metrics from the monitoring namespace only")
    overlay = yaml.safe_load(open(os.path.join(deploy, "k8s", "overlays", "gpu", "kustomization.yaml")))
    patch = yaml.safe_load(open(os.path.join(deploy, "k8s", "overlays", "gpu", overlay["patches"][0]["path"])))
    check(patch["metadata"]["name"] == dep["metadata"]["name"], "GPU overlay patches the Deployment")
    pc = patch["spec"]["template"]["spec"]["containers"][0]
    check(pc["name"] == c["name"] and pc["resources"]["limits"].get("nvidia.com/gpu") == 1, "GPU overlay asks for one GPU")
    gp = patch["spec"]["template"]["spec"]
    check(gp.get("runtimeClassName") == "nvidia" and gp.get("nodeSelector", {}).get("nvidia.com/gpu.present") == "true"
          and any(t.get("key") == "nvidia.com/gpu" for t in gp.get("tolerations", [])),
          "GPU overlay selects GPU nodes, tolerates their taint and runs with the NVIDIA runtime class")
    check_monitoring(deploy, by, hpa_metric)
    check_model_volume(deploy, c)
    check_k8s_gateway(deploy, pod_labels, netpol, ports)
    if shutil.which("kubectl"):
        for kdir in ("base", "overlays/gpu", "overlays/model-volume", "overlays/gateway"):
            r = run(["kubectl", "kustomize", os.path.join(deploy, "k8s", kdir)])
            check(r.returncode == 0, f"kubectl kustomize {kdir} renders")
    return hpa_metric


def check_monitoring(deploy, by, hpa_metric):
    """The monitoring component: the alert rules, the dashboard and the HPA's adapter rule."""
    alerts = yaml.safe_load(open(os.path.join(deploy, "prometheus", "alerts.yml")))
    rule = by["PrometheusRule"][0]
    check(rule["spec"]["groups"] == alerts["groups"], "PrometheusRule carries exactly deploy/prometheus/alerts.yml's rules")
    sm = by["ServiceMonitor"][0]
    release = sm["metadata"].get("labels", {}).get("release")
    check(release is not None and rule["metadata"]["labels"].get("release") == release,
          f"ServiceMonitor and PrometheusRule carry the Prometheus selector label (release={release})")
    comp_dir = os.path.join(deploy, "monitoring")
    comp = yaml.safe_load(open(os.path.join(comp_dir, "kustomization.yaml")))
    check(comp["kind"] == "Component", "deploy/monitoring is a kustomize Component")
    gen = comp["configMapGenerator"][0]
    check(gen["files"] == ["dashboards/sparsed.json"] and gen["options"]["labels"].get("grafana_dashboard") == "1",
          "the dashboard ConfigMap is generated from the one dashboard file, labelled for the Grafana sidecar")
    compose = yaml.safe_load(open(os.path.join(deploy, "compose.yaml")))
    check("./monitoring/dashboards:/var/lib/grafana/dashboards:ro" in compose["services"]["grafana"]["volumes"],
          "compose provisions the same dashboard file")
    adapter = next(d for d in by["ConfigMap"] if d["metadata"]["name"] == "sparsed-adapter-rules")
    rules = yaml.safe_load(adapter["data"]["config.yaml"])["rules"]
    check(any(hpa_metric in r["seriesQuery"] and r["name"]["as"] == hpa_metric for r in rules),
          f"the adapter rule exposes the HPA's metric {hpa_metric}")


def check_model_volume(deploy, base_container):
    """The model-volume overlay: a read-only claim at /models, --model under it, a memory limit for
    the mapped weights."""
    odir = os.path.join(deploy, "k8s", "overlays", "model-volume")
    docs, k = load_kustomize(odir)
    pvc = next(d for d in docs if d["kind"] == "PersistentVolumeClaim")
    check(pvc["spec"]["accessModes"] == ["ReadOnlyMany"], "model claim is ReadOnlyMany (every replica reads it)")
    patch = yaml.safe_load(open(os.path.join(odir, k["patches"][0]["path"])))
    pod = patch["spec"]["template"]["spec"]
    vol = next(v for v in pod["volumes"] if "persistentVolumeClaim" in v)
    c = pod["containers"][0]
    mount = next(m for m in c["volumeMounts"] if m["name"] == vol["name"])
    check(vol["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"] and vol["persistentVolumeClaim"]["readOnly"]
          and mount["readOnly"], "the claim is mounted read-only")
    model = flag_value(c["args"], "--model")
    check(c["name"] == base_container["name"] and model.startswith(mount["mountPath"] + "/"),
          f"--model {model} is under the mount {mount['mountPath']}")
    check(flag_value(c["args"], "--shutdown_timeout_s") == flag_value(base_container["args"], "--shutdown_timeout_s"),
          "the overlay keeps the base's drain timeout (the grace period is sized for it)")
    gib = float(c["resources"]["limits"]["memory"].rstrip("Gi"))
    check(gib >= 13.5 + float(flag_value(c["args"], "--kv_cache_mb")) / 1024,
          f"memory limit {gib} GiB covers a 7B model's mapped bf16 weights and the KV cache")


def check_k8s_gateway(deploy, sparsed_labels, sparsed_netpol, sparsed_ports):
    """The gateway overlay: the base plus the smg gateway, which discovers the sparsed pods by
    label with the RBAC to watch pods, may reach their gRPC port, and is scraped."""
    docs, _ = load_kustomize(os.path.join(deploy, "k8s", "overlays", "gateway"))
    by = {}
    for d in docs:
        by.setdefault((d["kind"], d["metadata"]["name"]), d)
    dep = by[("Deployment", "sparsed-gateway")]
    pod = dep["spec"]["template"]
    args = pod["spec"]["containers"][0]["args"]
    sel = dict(kv.split("=", 1) for kv in args[args.index("--selector") + 1:]
               if "=" in kv and not kv.startswith("--"))
    check("--service-discovery" in args and subset(sel, sparsed_labels),
          f"the gateway discovers the sparsed pods by their labels ({sel})")
    check(flag_value(args, "--service-discovery-port") == str(sparsed_ports["grpc"]),
          "discovered workers are reached on the daemon's gRPC port")
    role = by[("Role", "sparsed-gateway")]
    check(any("pods" in r["resources"] and {"list", "watch"} <= set(r["verbs"]) for r in role["rules"]),
          "RBAC: the gateway may list and watch pods")
    rb = by[("RoleBinding", "sparsed-gateway")]
    check(rb["roleRef"]["name"] == role["metadata"]["name"] and
          rb["subjects"][0]["name"] == pod["spec"]["serviceAccountName"],
          "the RoleBinding gives the Role to the gateway's ServiceAccount")
    client = next(r["from"][0]["podSelector"]["matchLabels"] for r in sparsed_netpol["spec"]["ingress"]
                  if r["ports"][0]["port"] == "grpc")
    check(subset(client, pod["metadata"]["labels"]), "the daemons' NetworkPolicy admits the gateway pods")
    svc = by[("Service", "sparsed-gateway")]
    sm = by[("ServiceMonitor", "sparsed-gateway")]
    cports = {p["name"] for p in pod["spec"]["containers"][0]["ports"]}
    check(subset(svc["spec"]["selector"], pod["metadata"]["labels"]) and
          all(p["targetPort"] in cports for p in svc["spec"]["ports"]) and
          subset(sm["spec"]["selector"]["matchLabels"], svc["metadata"]["labels"]),
          "the gateway's Service selects its pods and its ServiceMonitor scrapes it")
    check(flag_value(args, "--prometheus-port") == str(next(p["containerPort"] for p in
                                                             pod["spec"]["containers"][0]["ports"]
                                                             if p["name"] == "metrics")),
          "the gateway's metrics port is its container's")


def dockerfile_facts(source):
    text = open(os.path.join(source, "Dockerfile")).read()
    build = text.split("AS build", 1)[1].split("AS runtime", 1)[0]
    ep = re.search(r'ENTRYPOINT \[(.*)\]', text).group(1)
    ports = set(re.findall(r':(\d+)"', ep))
    exposed = set(re.search(r"EXPOSE ([\d ]+)", text).group(1).split())
    return build, ports, exposed, text


def main():
    a, work = parse_test_args("sparsed_deploy_")
    deploy = os.path.join(a.source, "deploy")

    build, ports, exposed, dockerfile = dockerfile_facts(a.source)
    check("COPY scripts/install-deps.sh /tmp/install-deps.sh" in build and "RUN /tmp/install-deps.sh build" in build
          and "apt-get install" not in build,
          "the Dockerfile's build stage installs its packages with scripts/install-deps.sh (one list)")
    check(re.search(r"^ARG BUILD_IMAGE=nvidia/cuda:\S+-devel-", dockerfile, re.M) is not None and
          re.search(r"^ARG RUNTIME_IMAGE=nvidia/cuda:\S+-runtime-", dockerfile, re.M) is not None and
          "FROM ${BUILD_IMAGE} AS build" in dockerfile and "FROM ${RUNTIME_IMAGE} AS runtime" in dockerfile,
          "base images are build arguments, CUDA development/runtime by default")
    check(ports == exposed == {"50051", "9464"}, f"Dockerfile listens on and exposes {sorted(ports)}")
    check(re.search(r"^USER 10001:10001$", dockerfile, re.M) is not None and "HEALTHCHECK" in dockerfile,
          "a numeric non-root user and a health check")
    runtime = dockerfile.split("AS runtime", 1)[1]
    check("cp /build/lib/libsparsed_cuda.so /out/lib/" in dockerfile and "COPY --from=build /out/lib/" in runtime,
          "the image carries the CUDA backend (libsparsed_cuda.so) and the libraries it loads")
    ld = re.search(r"ENV LD_LIBRARY_PATH=(\S+)", runtime)
    check(ld is not None and "${LD_LIBRARY_PATH" in ld.group(1) and ld.group(1).startswith("/opt/sparsed/lib"),
          f"LD_LIBRARY_PATH keeps the base image's path (the GPU driver's): {ld and ld.group(1)}")

    rules = check_prometheus(deploy)
    check_compose(deploy, ports)
    hpa_metric = check_k8s(deploy, ports)

    dash = json.load(open(os.path.join(deploy, "monitoring", "dashboards", "sparsed.json")))
    queries = [(p["title"], t["expr"]) for p in dash["panels"] for t in p["targets"]]
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    check({"datasource", "model_name", "instance"} <= set(variables), f"dashboard variables: {sorted(variables)}")
    check(all('model_name=~"$model_name"' in e and 'instance=~"$instance"' in e and not re.search(r"\[\d+[smh]\]", e)
              for _, e in queries),
          "every panel query selects $model_name and $instance and uses $__rate_interval, not a fixed window")
    check(all(p["datasource"]["uid"] == "${datasource}" for p in dash["panels"]), "every panel uses the $datasource variable")
    # As Grafana would run them with every model and instance selected.
    def concrete(expr):
        return expr.replace("$__rate_interval", "1m").replace("$model_name", ".*").replace("$instance", ".*")
    used = set()
    for _, e in queries + [(r["alert"], r["expr"]) for r in rules]:
        used |= set(re.findall(r"sparsed_[a-z0-9_]+", e))
    used.add(hpa_metric)

    model = os.path.join(work, "model")
    subprocess.run([os.path.join(a.bin, "sparsed-make-model"), "--out", model, "--preset", "small",
                    "--activation", "relu2"], check=True, capture_output=True)
    port, mport, pport = free_port(), free_port(), free_port()
    log = open(os.path.join(work, "sparsed.log"), "w")
    proc = subprocess.Popen([os.path.join(a.bin, "sparsed"), "--model", model, "--listen", f"127.0.0.1:{port}",
                             "--metrics_listen", f"127.0.0.1:{mport}", "--kv_cache_mb", "64"], stderr=log)
    prom = None
    try:
        cli = [os.path.join(a.bin, "sparsed-cli"), "--server", f"127.0.0.1:{port}"]
        for _ in range(100):
            if run(cli + ["--timeout_s", "1", "health"]).returncode == 0:
                break
            time.sleep(0.1)
        # Prometheus with the shipped configuration, rewritten only for loopback ports.
        cfg = yaml.safe_load(open(os.path.join(deploy, "prometheus", "prometheus.yml")))
        cfg["global"]["scrape_interval"] = "1s"
        cfg["global"]["evaluation_interval"] = "1s"
        cfg["rule_files"] = [os.path.abspath(os.path.join(deploy, "prometheus", f)) for f in cfg["rule_files"]]
        cfg["scrape_configs"][0]["static_configs"][0]["targets"] = [f"127.0.0.1:{mport}"]
        with open(os.path.join(work, "prometheus.yml"), "w") as f:
            yaml.safe_dump(cfg, f)
        prom = subprocess.Popen(["prometheus", f"--config.file={work}/prometheus.yml", f"--storage.tsdb.path={work}/tsdb",
                                 f"--web.listen-address=127.0.0.1:{pport}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        def query(expr):
            url = f"http://127.0.0.1:{pport}/api/v1/query?query=" + urllib.parse.quote(expr)
            return json.loads(urllib.request.urlopen(url, timeout=5).read())["data"]["result"]
        for _ in range(120):  # Prometheus up and scraping the daemon
            try:
                if any(v["value"][1] == "1" for v in query('up{job="sparsed"}')):
                    break
            except Exception:
                pass
            time.sleep(0.5)
        # Steady traffic in the background while the panels are evaluated, so every rate() over
        # [1m] sees increases.
        stop = threading.Event()
        def traffic():
            i = 0
            while not stop.is_set():
                run(cli + ["--max_new_tokens", "16", "generate", f"request {i}"])
                i += 1
                time.sleep(0.2)
        loader = threading.Thread(target=traffic)
        loader.start()
        time.sleep(4)
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=5).read().decode()
        names = set(re.findall(r"^(sparsed_[a-z0-9_]+)", metrics, re.M))
        for n in sorted(used):
            check(n in names, f"metric {n} (dashboard/alerts/HPA) exists in /metrics")
        for name in ("model_name", "instance"):
            m = re.fullmatch(r"label_values\((.*), (\w+)\)", variables[name]["definition"])
            series = query(concrete(m.group(1))) if m else []
            values = sorted({x["metric"].get(m.group(2)) for x in series} - {None}) if m else []
            check(bool(values), f"variable ${name} lists values: {values}")
        for title, expr in queries:
            expr = concrete(expr)
            res = []
            for _ in range(20):
                res = query(expr)
                if res and any(v["value"][1] not in ("NaN",) for v in res):
                    break
                time.sleep(0.5)
            check(bool(res) and any(v["value"][1] != "NaN" for v in res), f"panel '{title}': {expr[:70]} -> {len(res)} series")
        stop.set()
        loader.join()
        groups = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{pport}/api/v1/rules", timeout=5).read())["data"]["groups"]
        loaded = sum(len(g["rules"]) for g in groups)
        check(loaded == len(rules), f"Prometheus loaded the {loaded} alert rules")
    finally:
        if prom:
            prom.terminate()
            prom.wait(timeout=10)
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
    if FAILURES:
        print(f"{len(FAILURES)} failure(s)")
        return 1
    shutil.rmtree(work, ignore_errors=True)
    print("all deployment checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
