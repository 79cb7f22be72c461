"""Statistics of a load run, apart from the I/O so they can be tested on a synthetic trace.

A request record is a dict: {"start": s, "first": s or None, "end": s, "tokens": n, "ok": bool,
"code": "OK" or a gRPC status name, "token_times": [s, ...]} (times in seconds).
Definitions (as vLLM's and Triton's benchmark tools use them):
  TTFT  first token time - start;
  ITL   gaps between consecutive token arrivals of a request (every gap of every request);
  TPOT  (end - first) / (tokens - 1) per request with at least two tokens;
  E2E   end - start.
Percentiles are nearest-rank: the smallest value with at least p% of the values at or below it.
Goodput counts the successful requests that meet every given SLO, per second of the run.
"""
import math


def percentile(values, p):
    """Nearest-rank percentile of `values` (p in [0, 100]); None for no values."""
    if not values:
        return None
    v = sorted(values)
    rank = max(1, math.ceil(p / 100.0 * len(v)))
    return v[rank - 1]


def summary(values):
    if not values:
        return {"mean": None, "p50": None, "p90": None, "p99": None}
    return {"mean": sum(values) / len(values), "p50": percentile(values, 50),
            "p90": percentile(values, 90), "p99": percentile(values, 99)}


def request_metrics(r):
    """TTFT, TPOT, E2E (seconds) and ITL gaps of one successful request."""
    ttft = r["first"] - r["start"] if r["first"] is not None else None
    tpot = (r["end"] - r["first"]) / (r["tokens"] - 1) if r["first"] is not None and r["tokens"] > 1 else None
    times = r.get("token_times", [])
    itl = [b - a for a, b in zip(times, times[1:])]
    return ttft, tpot, r["end"] - r["start"], itl


def parse_slos(text):
    """'ttft_ms=500,tpot_ms=50,e2e_ms=5000' -> {"ttft": 0.5, "tpot": 0.05, "e2e": 5.0}."""
    slos = {}
    if not text:
        return slos
    for part in text.split(","):
        key, _, value = part.partition("=")
        key = key.strip()
        if key not in ("ttft_ms", "tpot_ms", "e2e_ms") or not value:
            raise ValueError(f"unknown SLO {part!r}: use ttft_ms=, tpot_ms=, e2e_ms=")
        slos[key[:-3]] = float(value) / 1000.0
    return slos


def meets(r, slos):
    if not r["ok"]:
        return False
    ttft, tpot, e2e, _ = request_metrics(r)
    got = {"ttft": ttft, "tpot": tpot if tpot is not None else 0.0, "e2e": e2e}
    return all(got[k] is not None and got[k] <= v for k, v in slos.items())


def report(records, duration_s, slos=None):
    """The run's figures: latencies (seconds), throughputs, errors by code, goodput."""
    ok = [r for r in records if r["ok"]]
    ttft, tpot, e2e, itl = [], [], [], []
    for r in ok:
        a, b, c, gaps = request_metrics(r)
        if a is not None:
            ttft.append(a)
        if b is not None:
            tpot.append(b)
        e2e.append(c)
        itl.extend(gaps)
    errors = {}
    for r in records:
        if not r["ok"]:
            errors[r["code"]] = errors.get(r["code"], 0) + 1
    tokens = sum(r["tokens"] for r in ok)
    out = {
        "requests": len(records), "succeeded": len(ok), "errors": errors,
        "duration_s": duration_s,
        "request_throughput": len(ok) / duration_s if duration_s > 0 else 0.0,
        "token_throughput": tokens / duration_s if duration_s > 0 else 0.0,
        "ttft_s": summary(ttft), "itl_s": summary(itl), "tpot_s": summary(tpot), "e2e_s": summary(e2e),
    }
    if slos:
        good = sum(1 for r in records if meets(r, slos))
        out["goodput"] = good / duration_s if duration_s > 0 else 0.0
        out["goodput_fraction"] = good / len(records) if records else 0.0
        out["slos_s"] = slos
    return out
