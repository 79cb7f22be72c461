#!/usr/bin/python3
"""sparsed-bench's statistics against hand-computed values (nearest-rank percentiles, TTFT, ITL,
TPOT, goodput at SLOs on a synthetic trace)."""
import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools", "bench"))
import bench_stats as bs  # noqa: E402


def req(start, times, ok=True, code="OK"):
    return {"start": start, "first": times[0] if times else None, "end": times[-1] if times else start + 1,
            "tokens": len(times), "ok": ok, "code": code, "token_times": times}


class Percentiles(unittest.TestCase):
    def test_nearest_rank(self):
        v = [15, 20, 35, 40, 50]
        self.assertEqual(bs.percentile(v, 5), 15)
        self.assertEqual(bs.percentile(v, 30), 20)
        self.assertEqual(bs.percentile(v, 40), 20)
        self.assertEqual(bs.percentile(v, 50), 35)
        self.assertEqual(bs.percentile(v, 100), 50)
        self.assertEqual(bs.percentile(list(range(1, 101)), 99), 99)
        self.assertEqual(bs.percentile(list(range(1, 101)), 90), 90)
        self.assertIsNone(bs.percentile([], 50))

    def test_unsorted_input(self):
        self.assertEqual(bs.percentile([50, 15, 40, 35, 20], 50), 35)


class Trace(unittest.TestCase):
    # Three requests over a 10 s run:
    #  A: start 0, tokens at 0.2, 0.3, 0.5       -> TTFT 0.2, ITL 0.1 0.2, TPOT 0.15, E2E 0.5
    #  B: start 1, tokens at 2.0, 2.5, 3.0, 3.5  -> TTFT 1.0, ITL 0.5 0.5 0.5, TPOT 0.5, E2E 2.5
    #  C: failed (RESOURCE_EXHAUSTED)
    def setUp(self):
        self.records = [req(0.0, [0.2, 0.3, 0.5]), req(1.0, [2.0, 2.5, 3.0, 3.5]),
                        req(2.0, [], ok=False, code="RESOURCE_EXHAUSTED")]

    def test_latencies(self):
        r = bs.report(self.records, 10.0)
        self.assertEqual(r["succeeded"], 2)
        self.assertEqual(r["errors"], {"RESOURCE_EXHAUSTED": 1})
        self.assertAlmostEqual(r["ttft_s"]["mean"], 0.6)
        self.assertAlmostEqual(r["ttft_s"]["p50"], 0.2)
        self.assertAlmostEqual(r["ttft_s"]["p99"], 1.0)
        # ITL gaps: 0.1, 0.2, 0.5, 0.5, 0.5 -> p50 is the 3rd smallest.
        self.assertAlmostEqual(r["itl_s"]["p50"], 0.5)
        self.assertAlmostEqual(r["itl_s"]["mean"], 1.8 / 5)
        self.assertAlmostEqual(r["tpot_s"]["p50"], 0.15)
        self.assertAlmostEqual(r["tpot_s"]["p99"], 0.5)
        self.assertAlmostEqual(r["e2e_s"]["p90"], 2.5)
        self.assertAlmostEqual(r["request_throughput"], 0.2)
        self.assertAlmostEqual(r["token_throughput"], 0.7)

    def test_goodput(self):
        # TTFT <= 500 ms: only A. TPOT <= 600 ms: A and B. Both: A. Failed requests never count.
        self.assertAlmostEqual(bs.report(self.records, 10.0, bs.parse_slos("ttft_ms=500"))["goodput"], 0.1)
        self.assertAlmostEqual(bs.report(self.records, 10.0, bs.parse_slos("tpot_ms=600"))["goodput"], 0.2)
        both = bs.report(self.records, 10.0, bs.parse_slos("ttft_ms=500,tpot_ms=600"))
        self.assertAlmostEqual(both["goodput"], 0.1)
        self.assertAlmostEqual(both["goodput_fraction"], 1 / 3)
        self.assertAlmostEqual(bs.report(self.records, 10.0, bs.parse_slos("e2e_ms=3000"))["goodput"], 0.2)

    def test_bad_slo(self):
        with self.assertRaises(ValueError):
            bs.parse_slos("latency=3")


if __name__ == "__main__":
    unittest.main()
