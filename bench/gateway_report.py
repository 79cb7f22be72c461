#!/usr/bin/env python3
"""One row of bench/gateway_bench.sh's table: a GuideLLM run's JSON (client side, through the
gateway) beside the daemons' own /metrics over the same run (server side), so that the gateway's
added latency is measured in one run: client-observed mean TTFT and end-to-end latency minus
what the daemons measured for the same requests.

Usage: gateway_report.py RATE GUIDELLM_JSON METRICS_BEFORE... -- METRICS_AFTER... \
           [--slo ttft_ms=..,tpot_ms=..]
"""
import json
import os
import re
import sys

# The same percentile and SLO definitions as sparsed-bench's table beside this one.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools", "bench"))
from bench_stats import parse_slos, percentile  # noqa: E402


def hist(text, name):
    """(sum, count) of a Prometheus histogram over every series of `name`."""
    s = c = 0.0
    for line in text.splitlines():
        m = re.match(rf"{name}_(sum|count)(\{{.*\}})? (\S+)$", line)
        if m:
            if m.group(1) == "sum":
                s += float(m.group(3))
            else:
                c += float(m.group(3))
    return s, c


def pct(xs, p):
    v = percentile(xs, p)
    return float("nan") if v is None else v


def main():
    args = sys.argv[1:]
    slo = {}  # seconds, as bench_stats.parse_slos gives them
    if "--slo" in args:
        i = args.index("--slo")
        slo = parse_slos(args[i + 1])
        args = args[:i] + args[i + 2:]
    rate, path = args[0], args[1]
    sep = args.index("--")
    before = [open(f).read() for f in args[2:sep]]
    after = [open(f).read() for f in args[sep + 1:]]
    b = json.load(open(path))["benchmarks"][0]
    ok = b["requests"]["successful"]
    errors = len(b["requests"].get("errored", []))
    dur = b["duration"]
    ttft = [r["time_to_first_token_ms"] for r in ok]
    itl = [r["inter_token_latency_ms"] for r in ok if r["inter_token_latency_ms"] is not None]
    tpot = [r["time_per_output_token_ms"] for r in ok]
    e2e = [1000 * r["request_latency"] for r in ok]
    out_tok = sum(r["output_tokens"] for r in ok)
    good = sum(1 for r in ok if r["time_to_first_token_ms"] <= 1000 * slo.get("ttft", 1e18)
               and r["time_per_output_token_ms"] <= 1000 * slo.get("tpot", 1e18)
               and 1000 * r["request_latency"] <= 1000 * slo.get("e2e", 1e18))

    def server_mean(name):
        s0 = sum(hist(t, name)[0] for t in before)
        c0 = sum(hist(t, name)[1] for t in before)
        s1 = sum(hist(t, name)[0] for t in after)
        c1 = sum(hist(t, name)[1] for t in after)
        return 1000 * (s1 - s0) / (c1 - c0) if c1 > c0 else float("nan")

    d_ttft = server_mean("sparsed_time_to_first_token_seconds")
    d_e2e = server_mean("sparsed_request_duration_seconds")
    c_ttft = sum(ttft) / len(ttft) if ttft else float("nan")
    c_e2e = sum(e2e) / len(e2e) if e2e else float("nan")
    print(f"| {rate}/s | {len(ok) / dur:.2f} | {out_tok / dur:.1f} | "
          f"{c_ttft:.1f} / {pct(ttft, 50):.1f} / {pct(ttft, 90):.1f} / {pct(ttft, 99):.1f} | "
          f"{pct(itl, 50):.1f} / {pct(itl, 99):.1f} | {pct(tpot, 50):.1f} / {pct(tpot, 99):.1f} | "
          f"{pct(e2e, 50):.1f} / {pct(e2e, 99):.1f} | {errors} | "
          f"{good / dur:.2f} ({100 * good / max(1, len(ok)):.0f}%) | "
          f"{d_ttft:.1f} / {d_e2e:.1f} | {c_ttft - d_ttft:.1f} / {c_e2e - d_e2e:.1f} |")


if __name__ == "__main__":
    main()
