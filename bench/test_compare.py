#!/usr/bin/env python3
"""Tests of bench/compare.py's agreement tests on synthetic JSONs (standard library only):

    python3 bench/test_compare.py        (or: python3 -m unittest bench/test_compare.py)

NLLs are drawn as truth (spread 0.66 nats around 11.25, as on the random 7B model) plus a per-side
rounding error; each case checks compare.py's exit status and verdicts.
"""
import json
import random
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare  # noqa: E402


def make(n=256, n32=32, s_hf=0.02, s_alt=0.02, s_kv=0.02, alt_from_hf=False, s_f32=1e-5, kv32_shift=0.0,
         spread=0.66, alt=True, seed=0):
    """(hf, kv, hf32, kv32) dicts."""
    rng = random.Random(seed)
    hf_nll, kv_nll, hf32_nll, kv32_nll = {}, {}, {}, {}
    for i in range(n):
        sid = f"s{i:04d}"
        row_h, row_k = {}, {}
        for cond in ("bare", "primed"):
            y = 11.25 + rng.gauss(0, spread)
            h = y + rng.gauss(0, s_hf)
            row_h[cond] = h
            if alt:
                row_h[f"{cond}_alt"] = h + rng.gauss(0, 1e-3) if alt_from_hf else y + rng.gauss(0, s_alt)
            row_k[cond] = y + rng.gauss(0, s_kv)
            if i < n32:
                hf32_nll.setdefault(sid, {})[cond] = y + rng.gauss(0, s_f32 * y)
                kv32_nll.setdefault(sid, {})[cond] = y + rng.gauss(0, s_f32 * y) + kv32_shift * y
        row_h["bare_alone"] = row_h["bare"]
        row_h["bare_joint"] = row_h["bare"] + 0.3
        hf_nll[sid], kv_nll[sid] = row_h, row_k
    for sid in hf32_nll:
        hf32_nll[sid]["bare_alone"] = hf32_nll[sid]["bare"]
    pipe = {"samples": n, "samples_per_s": 8.0, "tokens": 1000 * n, "tokens_per_s": 8000.0, "seconds": n / 8.0,
            "latency_ms": [120.0] * n, "latency_ms_median": 120.0, "ms_per_sample": 125.0, "score_forwards": 2}
    hf = {"dtype": "bfloat16", "bare_ids": "alone", "n_params": 7.24e9, "n_params_linear": 7.2e9,
          "n_params_lm_head": 1.3e8, "model_class": "MistralForCausalLM", "seed_pipeline": pipe,
          "hf_alt": {"samples": n if alt else 0, "seconds": 9.0}, "nll": hf_nll,
          "checks": {"bound": 2e-2, "cached_vs_full": 1e-3, "layer0_keys": 4e-3, "ok": True}}
    kv = {"dtype": "bfloat16", "bare_ids": "alone", "n_params_linear": 7.2e9 - 1.3e8,
          "pipeline": {"samples": n, "samples_per_s": 200.0, "tokens": 1000 * n, "tokens_per_s": 2e5,
                       "seconds": n / 200.0, "batch": 64},
          "seed_loop": {"samples": 32, "ms_per_sample": 60.0}, "nll": kv_nll,
          "checks": {"bound": 2e-2, "cached_vs_full": 1e-3, "layer0_keys": 4e-3, "score_mutates": False}}
    hf32 = {"dtype": "float32", "bare_ids": "alone", "seed_pipeline": {"samples": n32}, "load_s": 10.0,
            "precision": {"cuda_matmul_allow_tf32": False, "cudnn_allow_tf32": False,
                          "float32_matmul_precision": "highest"}, "attn_implementation": "sdpa", "nll": hf32_nll,
            "checks": {"bound": 1e-5, "cached_vs_full": 1e-7, "layer0_keys": 1e-7, "ok": True}}
    kv32 = {"dtype": "float32", "bare_ids": "alone", "pipeline": {"samples": n32}, "load_s": 8.0, "nll": kv32_nll}
    return hf, kv, hf32, kv32


class CompareTest(unittest.TestCase):
    def run_compare(self, hf, kv, hf32=None, kv32=None, extra=()):
        d = Path(tempfile.mkdtemp(prefix="cmpt"))
        args = []
        for name, obj in (("hf", hf), ("kvprime", kv), ("hf-f32", hf32), ("kvprime-f32", kv32)):
            if obj is not None:
                p = d / f"{name}.json"
                p.write_text(obj if isinstance(obj, str) else json.dumps(obj))
                args += [f"--{name}", str(p)]
        args += ["--md-out", str(d / "results.md"), "--date", "2000-01-01", *extra]
        import contextlib
        import io
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            rc = compare.main(args)
        self.last_out = buf.getvalue()
        self.last_md = (d / "results.md").read_text()
        return rc

    def agreement(self, hf, kv, hf32=None):
        return compare.nll_agreement(hf, kv, "alone", hf32)

    def test_all_agree(self):
        hf, kv, hf32, kv32 = make()
        self.assertEqual(self.run_compare(hf, kv, hf32, kv32), 0, self.last_out)
        ag = self.agreement(hf, kv, hf32)
        self.assertTrue(ag["ok"] and compare.f32_exactness(hf32, kv32, "alone")["ok"])
        for c in ag["conditions"].values():
            self.assertEqual(c["size_test"], "C")
            self.assertTrue(c["B"]["ok"] and c["C"]["ok"])
        self.assertIn("f32: kvprime - HF", self.last_md)
        self.assertIn("float32 **agree**, bf16 **agree**", self.last_md)

    def test_f32_fails(self):
        hf, kv, hf32, kv32 = make(kv32_shift=3e-4)  # kvprime float32 off by 3e-4 relative
        self.assertEqual(self.run_compare(hf, kv, hf32, kv32), 1)
        self.assertIn("float32 DO NOT agree", self.last_out)
        self.assertFalse(compare.f32_exactness(hf32, kv32, "alone")["ok"])
        self.assertTrue(self.agreement(hf, kv, hf32)["ok"])  # the bf16 verdict itself still holds

    def test_f32_tf32_on_or_wrong_dtype(self):
        hf, kv, hf32, kv32 = make()
        hf32["precision"]["cuda_matmul_allow_tf32"] = True
        self.assertEqual(self.run_compare(hf, kv, hf32, kv32), 1)
        hf, kv, hf32, kv32 = make()
        kv32["dtype"] = "bfloat16"
        self.assertEqual(self.run_compare(hf, kv, hf32, kv32), 1)
        self.assertEqual(self.run_compare(hf, kv, hf32, '{"broken'), 1)

    def test_bf16_noisier_kvprime_fails(self):
        hf, kv, hf32, kv32 = make(s_kv=0.08)  # kvprime rounds 4x as much as HF
        self.assertEqual(self.run_compare(hf, kv, hf32, kv32), 1)
        ag = self.agreement(hf, kv, hf32)
        self.assertFalse(ag["conditions"]["bare"]["C"]["ok"])
        self.assertTrue(compare.f32_exactness(hf32, kv32, "alone")["ok"])

    def test_bf16_systematic_shift_fails(self):
        hf, kv, hf32, kv32 = make()
        for v in kv["nll"].values():
            v["primed"] += 0.05  # e.g. a wrong re-rotation: every primed NLL moves
        self.assertEqual(self.run_compare(hf, kv, hf32, kv32), 1)
        ag = self.agreement(hf, kv, hf32)
        self.assertTrue(ag["conditions"]["bare"]["ok"])
        self.assertFalse(ag["conditions"]["primed"]["ok"])

    def test_b_decides_without_f32(self):
        hf, kv, _, _ = make()
        self.assertEqual(self.run_compare(hf, kv), 0, self.last_out)
        self.assertIn("float32 not run", self.last_out)
        ag = self.agreement(hf, kv)
        self.assertEqual(ag["conditions"]["bare"]["size_test"], "B")
        hf, kv, _, _ = make(s_kv=0.08)
        self.assertEqual(self.run_compare(hf, kv), 1)
        self.assertFalse(self.agreement(hf, kv)["conditions"]["bare"]["B"]["ok"])

    def test_c_overrides_b_when_hf_alt_is_correlated(self):
        # HF-alt rounds almost exactly as HF: the self spread understates rounding; C decides.
        hf, kv, hf32, kv32 = make(alt_from_hf=True)
        self.assertEqual(self.run_compare(hf, kv, hf32, kv32), 0, self.last_out)
        ag = self.agreement(hf, kv, hf32)
        self.assertFalse(ag["conditions"]["bare"]["B"]["ok"])
        self.assertIn("test B would fail", self.last_out)
        self.assertEqual(self.run_compare(hf, kv), 1)  # without the reference B decides, and fails

    def test_low_correlation_fails(self):
        hf, kv, hf32, kv32 = make(spread=0.1)  # rounding comparable to the spread across samples
        self.assertEqual(self.run_compare(hf, kv, hf32, kv32), 1)
        ag = self.agreement(hf, kv, hf32)
        self.assertFalse(ag["conditions"]["bare"]["corr_ok"])

    def test_no_calibration_fails(self):
        hf, kv, _, _ = make(alt=False)
        self.assertEqual(self.run_compare(hf, kv), 1)
        self.assertIn("no calibration", self.last_out)

    def test_f32_alone(self):
        # A call that ran only the float32 step: the float32 test is still reported, bf16 fails.
        hf, kv, hf32, kv32 = make()
        self.assertEqual(self.run_compare("{}", "{}", hf32, kv32), 1)
        self.assertIn("float32 agree; bf16 DO NOT agree", self.last_out)
        self.assertIn("bare f32: kvprime - HF", self.last_md)

    def test_missing_files(self):
        hf, kv, hf32, kv32 = make()
        self.assertEqual(self.run_compare(hf, '{"broken'), 1)
        self.assertEqual(self.run_compare(hf, kv, hf32, kv32, extra=("--hf-f32", "/nonexistent.json")), 1)

    def test_f32_subset_too_small_for_c(self):
        hf, kv, hf32, kv32 = make(n32=4)
        self.assertEqual(self.run_compare(hf, kv, hf32, kv32), 0, self.last_out)
        self.assertEqual(self.agreement(hf, kv, hf32)["conditions"]["bare"]["size_test"], "B")


if __name__ == "__main__":
    unittest.main()
