#!/usr/bin/env python3
"""Compares kvprime's bench_seed JSON with the HF baseline's (bench/hf_seed_baseline.py), issue 7.

    python3 bench/compare.py --hf OUT/hf.json --kvprime OUT/kvprime.json \
        [--gpu-file OUT/gpu.txt] [--md-out OUT/results.md] [--max-abs 0.05] [--mean-abs 0.01]

1. Numerics: per-sample NLLs of both conditions (bare, primed) on the samples both files hold.
   They must agree within --max-abs (largest |difference|) and --mean-abs (mean |difference|),
   in nats.  Why not tighter: both sides run a 32-layer bf16 forward; every matmul output is
   rounded to 8 mantissa bits (relative 2^-9 = 2e-3), and kvprime batches rows and fuses
   operations, so its GEMMs have other shapes, reduction orders and rounding points than HF's
   batch-1 calls.  The differences do not cancel through the layers, and an NLL of a random-weight
   model is ~10 nats: bench_seed measured 6e-4 relative between two paths of kvprime itself
   (~0.006 nats).  0.05 nats bounds a single sample's worst case, 0.01 the mean (a systematic
   error, e.g. a wrong re-rotation or a cut one token off, moves the mean by far more).  The
   Pearson correlation and the per-sample primed - bare difference (the research quantity) are
   reported too; on random weights the NLLs barely vary across samples, so the correlation is
   informative only when it is high.  The bare cache's document ids follow one of two rules
   (tokenized alone, or cut from the joint encoding with the prefix); HF records both, and the one
   kvprime used is compared (choose_bare_rule).
2. Speed: samples/s of HF's batch-1 seed pipeline vs kvprime's batched pipeline; HF's own batched
   forward tokens/s vs kvprime's pipeline tokens/s; kvprime's TFLOP/s (2 x linear weights x
   tokens / s) vs the bf16 GEMM peak; batch-1 latency; peak GPU memory (weights included).

Prints a table; --md-out writes a section for bench/RESULTS.md.  Exit status: 0 when the NLLs
agree, 1 when they disagree or a file is missing or holds no common sample, 2 on bad arguments.
Standard library only.
"""
import argparse
import datetime as _dt
import json
import math
import statistics
import sys
from pathlib import Path


def load(path):
    """(dict or None, error text or None)."""
    if path is None:
        return None, "not given"
    try:
        return json.loads(Path(path).read_text()), None
    except (OSError, ValueError) as exc:
        return None, f"{path}: {exc}"


def get(d, *keys, default=None):
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return default
        d = d[k]
    return d


def pearson(x, y):
    if len(x) < 3 or statistics.pstdev(x) == 0 or statistics.pstdev(y) == 0:
        return float("nan")
    return statistics.correlation(x, y)


def series(nll, key):
    """{sample id: float} of one condition; samples without it are left out."""
    out = {}
    for i, v in (nll or {}).items():
        if isinstance(v, dict) and v.get(key) is not None:
            out[i] = float(v[key])
    return out


def choose_bare_rule(hf, kv, wanted):
    """(rule, how): which of HF's bare series (document ids alone / joint) matches kvprime's bare.

    HF's timed bare condition follows one rule (hf.json "bare_ids") and, untimed, records the other
    too (nll.<id>.bare_alone / bare_joint).  kvprime's JSON may say which rule its bare used
    ("bare_ids"); otherwise the series that agrees better is taken, and the table says so: the two
    rules give different ids (a different first document token), hence NLLs that differ far more
    than bf16 rounding, so agreement identifies the rule and cannot hide a numerical error.
    """
    if wanted != "auto":
        return wanted, "--bare-ids"
    if kv.get("bare_ids") in ("alone", "joint"):
        return kv["bare_ids"], "kvprime.json bare_ids"
    kb = series(kv.get("nll"), "bare")
    best = None
    for rule in ("alone", "joint"):
        h = series(hf.get("nll"), f"bare_{rule}")
        common = [i for i in h if i in kb]
        if common:
            m = statistics.mean(abs(kb[i] - h[i]) for i in common)
            if best is None or m < best[1]:
                best = (rule, m)
    if best is None:
        return hf.get("bare_ids", "?"), "hf.json bare_ids (no per-rule series)"
    return best[0], "best agreement (kvprime.json has no bare_ids)"


def nll_agreement(hf, kv, max_abs, mean_abs, bare_rule):
    """Per-condition statistics of kvprime - HF on the common sample ids."""
    h_nll, k_nll = hf.get("nll") or {}, kv.get("nll") or {}
    hf_keys = {"bare": f"bare_{bare_rule}", "primed": "primed"}
    if not series(h_nll, hf_keys["bare"]):
        hf_keys["bare"] = "bare"  # an hf.json without per-rule keys
    common = [i for i in h_nll if i in k_nll]
    out = {"common": len(common), "hf_only": len(set(h_nll) - set(k_nll)),
           "kvprime_only": len(set(k_nll) - set(h_nll)), "conditions": {}, "ok": bool(common)}
    pairs = {}
    for cond in ("bare", "primed"):
        h, k = series(h_nll, hf_keys[cond]), series(k_nll, cond)
        ids = [i for i in common if i in h and i in k]
        if not ids:
            out["ok"] = False
            out["conditions"][cond] = {"error": f"no sample with HF '{hf_keys[cond]}' and kvprime '{cond}'"}
            continue
        a, b = [h[i] for i in ids], [k[i] for i in ids]
        pairs[cond] = dict(zip(ids, zip(a, b)))
        out["conditions"][cond] = summarize(ids, a, b, max_abs, mean_abs)
        out["conditions"][cond]["hf_key"] = hf_keys[cond]
        out["ok"] &= out["conditions"][cond]["ok"]
    # Informational: HF's other bare rule against kvprime's bare.
    other = "joint" if bare_rule == "alone" else "alone"
    h, k = series(h_nll, f"bare_{other}"), series(k_nll, "bare")
    ids = [i for i in common if i in h and i in k]
    if ids:
        out["other_bare"] = summarize(ids, [h[i] for i in ids], [k[i] for i in ids], max_abs, mean_abs)
        out["other_bare"]["hf_key"] = f"bare_{other}"
    if "bare" in pairs and "primed" in pairs:
        ids = [i for i in pairs["bare"] if i in pairs["primed"]]
        dh = [pairs["primed"][i][0] - pairs["bare"][i][0] for i in ids]
        dk = [pairs["primed"][i][1] - pairs["bare"][i][1] for i in ids]
        if ids:
            # The priming effect per sample; its error is the difference of two errors.
            d = summarize(ids, dh, dk, 2 * max_abs, 2 * mean_abs)
            d["sign_agreement"] = sum((x > 0) == (y > 0) for x, y in zip(dh, dk)) / len(ids)
            d["mean_delta_hf"], d["mean_delta_kvprime"] = statistics.mean(dh), statistics.mean(dk)
            out["delta"] = d
    return out


def summarize(ids, ref, got, max_abs, mean_abs):
    diff = [g - r for r, g in zip(ref, got)]
    finite = all(math.isfinite(x) for x in ref + got)
    absd = [abs(x) for x in diff] if finite else [math.inf]
    worst = max(range(len(absd)), key=absd.__getitem__)
    s = {"n": len(ref), "max_abs": max(absd), "worst_id": ids[worst] if finite else None,
         "mean_abs": statistics.mean(absd), "mean_signed": statistics.mean(diff) if finite else math.nan,
         "corr": pearson(ref, got) if finite else math.nan,
         "mean_hf": statistics.mean(ref), "mean_kvprime": statistics.mean(got),
         "tolerance": {"max_abs": max_abs, "mean_abs": mean_abs}}
    s["ok"] = finite and s["max_abs"] <= max_abs and s["mean_abs"] <= mean_abs
    return s


def gpu_name(gpu_file, hf):
    if gpu_file:
        try:
            first = Path(gpu_file).read_text().strip().splitlines()[0]
            if first:
                return first.split(",")[0].strip()
        except (OSError, IndexError):
            pass
    return get(hf, "gpu", default="unknown GPU") if hf else "unknown GPU"


def fmt(x, spec=",.0f", unit=""):
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:{spec}}{unit}"


def ratio(a, b):
    if a is None or b is None or not b:
        return None
    return a / b


def gib(x):
    return None if x is None else x / 2 ** 30


def build_rows(hf, kv):
    """[(what, HF, kvprime, kvprime/HF)] as strings; either side may be None."""
    hp = get(hf, "seed_pipeline") or {}
    kp = get(kv, "pipeline") or {}
    ks = get(kv, "seed_loop") or {}
    batched = [b for b in (get(hf, "batched_forward") or []) if "tokens_per_s" in b]
    b32 = next((b for b in batched if b["batch"] == 32), batched[0] if batched else None)
    best_fwd = max(batched, key=lambda b: b["tokens_per_s"]) if batched else None
    gemm = get(hf, "gemm", "tflops")
    n_lin = get(kv, "n_params_linear") or get(hf, "n_params_linear")
    kv_tflops = (2.0 * n_lin * kp["tokens"] / kp["seconds"] / 1e12
                 if n_lin and kp.get("tokens") and kp.get("seconds") else None)
    kv_batch = kp.get("batch")
    rows = []

    r = ratio(kp.get("samples_per_s"), hp.get("samples_per_s"))
    rows.append(("seed pipeline, samples/s",
                 f"{fmt(hp.get('samples_per_s'), '.2f')} (batch 1)" if hp else "n/a",
                 f"{fmt(kp.get('samples_per_s'), '.1f')} (batch {kv_batch})" if kp else "n/a",
                 fmt(r, ".1f", "x")))
    # Batch-1 latency: kvprime reports the mean over its first seed_loop.samples samples; HF's mean
    # over the same leading samples is computed from its per-sample latencies, the median is shown too.
    n1 = ks.get("samples")
    lat = hp.get("latency_ms") or []
    hf_mean_n1 = statistics.mean(lat[:n1]) if lat and n1 else hp.get("ms_per_sample")
    r = ratio(hf_mean_n1, ks.get("ms_per_sample"))
    rows.append((f"batch-1 latency, ms/sample (mean of first {n1 or '?'})",
                 f"{fmt(hf_mean_n1, '.1f')} (median {fmt(hp.get('latency_ms_median'), '.1f')})" if hp else "n/a",
                 fmt(ks.get("ms_per_sample"), ".1f"),
                 f"{fmt(r, '.2f', 'x')} faster" if r else "n/a"))
    r = ratio(kp.get("tokens_per_s"), hp.get("tokens_per_s"))
    rows.append(("pipeline tokens/s (prefill + scored)",
                 fmt(hp.get("tokens_per_s")), fmt(kp.get("tokens_per_s")), fmt(r, ".1f", "x")))
    for b in batched:
        r = ratio(kp.get("tokens_per_s"), b["tokens_per_s"])
        rows.append((f"HF forward {b['batch']}x{b['seq']} tok/s vs kvprime pipeline tok/s",
                     fmt(b["tokens_per_s"]), fmt(kp.get("tokens_per_s")), fmt(r, ".2f", "x")))
    hf_tf = best_fwd["tflops"] if best_fwd else None
    rows.append((f"TFLOP/s, linear layers (HF: forward {best_fwd['batch']}x{best_fwd['seq']})" if best_fwd
                 else "TFLOP/s, linear layers", fmt(hf_tf), fmt(kv_tflops), fmt(ratio(kv_tflops, hf_tf), ".2f", "x")))
    rows.append((f"share of bf16 GEMM peak ({fmt(gemm)} TFLOP/s)",
                 fmt(ratio(hf_tf, gemm) and 100 * ratio(hf_tf, gemm), ".0f", "%"),
                 fmt(ratio(kv_tflops, gemm) and 100 * ratio(kv_tflops, gemm), ".0f", "%"), ""))
    hm, km = get(hf, "gpu_peak_memory_bytes"), get(kv, "gpu_peak_memory_bytes")
    rows.append(("peak GPU memory, GiB (weights incl.; HF: batch-1 loop, kvprime: whole run)",
                 fmt(gib(hm), ".2f"), fmt(gib(km), ".2f"),
                 fmt(ratio(km, hm), ".2f", "x")))
    return rows, {"b32": b32, "kv_tflops": kv_tflops, "n_params_linear": n_lin}


def print_table(rows):
    w = [max(len(r[i]) for r in rows + [("", "HF transformers", "kvprime", "kvprime/HF")]) for i in range(4)]
    head = ("", "HF transformers", "kvprime", "kvprime/HF")
    print("  ".join(h.ljust(w[i]) if i == 0 else h.rjust(w[i]) for i, h in enumerate(head)))
    for r in rows:
        print("  ".join(c.ljust(w[i]) if i == 0 else c.rjust(w[i]) for i, c in enumerate(r)))


def agreement_lines(ag):
    lines = []

    def line(name, s, verdict):
        return (f"{name:<7} max |d| {s['max_abs']:.4f} ({s['worst_id']})  mean |d| {s['mean_abs']:.4f}  "
                f"mean d {s['mean_signed']:+.4f}  r {fmt(s['corr'], '.4f')}  mean NLL HF {s['mean_hf']:.4f} "
                f"kvprime {s['mean_kvprime']:.4f}  (n {s['n']}, HF {s['hf_key']})  -> {verdict}")

    for cond, s in ag["conditions"].items():
        if "error" in s:
            lines.append(f"{cond}: {s['error']}")
        else:
            lines.append(line(cond, s, "OK" if s["ok"] else "DISAGREE"))
    if ag.get("other_bare"):
        lines.append(line("bare", ag["other_bare"], "not used (the other document-id rule)"))
    d = ag.get("delta")
    if d:
        lines.append(f"primed-bare: max |d| {d['max_abs']:.4f}  mean |d| {d['mean_abs']:.4f}  r "
                     f"{fmt(d['corr'], '.4f')}  same sign {100 * d['sign_agreement']:.0f}%  mean delta HF "
                     f"{d['mean_delta_hf']:+.4f} kvprime {d['mean_delta_kvprime']:+.4f} (informational)")
    return lines


def markdown(hf, kv, rows, ag, args, gpu, problems, notes):
    date = args.date or _dt.date.today().isoformat()
    v = get(hf, "versions") or {}
    hp = get(hf, "seed_pipeline") or {}
    kp = get(kv, "pipeline") or {}
    out = [f"## {date} — {gpu}", ""]
    out.append(f"Model: {get(hf, 'model_class', default='?')} "
               f"({fmt(get(hf, 'n_params') and get(hf, 'n_params') / 1e9, '.2f')}B parameters, random weights, "
               f"bf16), Llama-2 tokenizer; {fmt(hp.get('samples'), 'd')} HF / {fmt(kp.get('samples'), 'd')} kvprime "
               f"samples of bench/make_bench_data.py (75-word passages). "
               f"HF: transformers {v.get('transformers', '?')}, "
               f"torch {v.get('torch', '?')} (CUDA {v.get('cuda', '?')}), attention sdpa, the seed's loop at "
               f"batch 1 ({hp.get('score_forwards', '?')} scoring forwards). "
               f"kvprime: `kvprime run`'s batched pipeline, chunks of "
               f"{kp.get('batch', '?')}.")
    out += ["", "| | HF transformers | kvprime | kvprime / HF |", "|---|---:|---:|---:|"]
    out += [f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} |" for r in rows]
    out.append("")
    if ag:
        verdict = "agree" if ag["ok"] else "DISAGREE"
        tol = f"max |Δ| ≤ {args.max_abs}, mean |Δ| ≤ {args.mean_abs} nats"
        out.append(f"NLLs on {ag['common']} common samples ({tol}; bare document ids: {ag['bare_rule']}, "
                   f"from {ag['bare_rule_from']}): **{verdict}**.")
        out.append("")
        out += [f"- {line}" for line in agreement_lines(ag)]
    for p in problems:
        out.append(f"- problem: {p}")
    for n in notes:
        out.append(f"- note: {n}")
    out += ["", "TFLOP/s = 2 × weights of the linear layers × tokens / s (n_params_linear of each JSON); "
            "attention score and value products, norms and embeddings are not counted. HF's batch-1 "
            "latency: mean over the same leading samples as kvprime's seed loop (median over all in brackets).", ""]
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hf", required=True, help="JSON of bench/hf_seed_baseline.py")
    ap.add_argument("--kvprime", required=True, help="JSON of bench_seed --json-out")
    ap.add_argument("--gpu-file", help="nvidia-smi --query-gpu=name,... --format=csv,noheader output")
    ap.add_argument("--md-out", help="write a markdown section for bench/RESULTS.md here")
    ap.add_argument("--max-abs", type=float, default=0.05, help="largest allowed |NLL difference| (nats)")
    ap.add_argument("--mean-abs", type=float, default=0.01, help="largest allowed mean |NLL difference| (nats)")
    ap.add_argument("--bare-ids", choices=["auto", "alone", "joint"], default="auto",
                    help="which HF bare series to compare with kvprime's bare: the document tokenized alone "
                         "or within the joint encoding; auto: kvprime.json's bare_ids, else the better match")
    ap.add_argument("--date", help="date for the markdown heading (default: today)")
    args = ap.parse_args(argv)

    hf, hf_err = load(args.hf)
    kv, kv_err = load(args.kvprime)
    problems = [f"HF JSON: {hf_err}"] * bool(hf_err) + [f"kvprime JSON: {kv_err}"] * bool(kv_err)
    hf, kv = hf or {}, kv or {}
    gpu = gpu_name(args.gpu_file, hf)

    ag = None
    if hf and kv:
        rule, how = choose_bare_rule(hf, kv, args.bare_ids)
        ag = nll_agreement(hf, kv, args.max_abs, args.mean_abs, rule)
        ag["bare_rule"], ag["bare_rule_from"] = rule, how
    if ag and ag["common"] == 0:
        problems.append("no sample id in both files")
    n_hf, n_kv = get(hf, "n_params_linear"), get(kv, "n_params_linear")
    notes = []
    if n_hf and n_kv and n_hf != n_kv:
        if n_hf - n_kv == get(hf, "n_params_lm_head"):
            notes.append("HF's TFLOP/s count lm_head (its forward computes every position's logits), kvprime's "
                         "do not (lm_head runs only where it scores)")
        else:
            problems.append(f"n_params_linear differs: HF {n_hf}, kvprime {n_kv} (each side's is used for its TFLOP/s)")
    kc = get(kv, "checks")
    if isinstance(kc, dict) and "bound" in kc:
        bad = kc.get("score_mutates") or any((kc.get(k) or 0) >= kc["bound"] for k in ("cached_vs_full", "layer0_keys"))
        (problems if bad else notes).append(
            f"kvprime checks: cached_vs_full {fmt(kc.get('cached_vs_full'), '.2e')}, layer0_keys "
            f"{fmt(kc.get('layer0_keys'), '.2e')} (bound {kc['bound']}), score_mutates {kc.get('score_mutates')}")
    hc = get(hf, "checks")
    if isinstance(hc, dict) and "bound" in hc:
        notes.append(f"HF checks: cached_vs_full {fmt(hc.get('cached_vs_full'), '.2e')}, layer0_keys "
                     f"{fmt(hc.get('layer0_keys'), '.2e')} (bound {hc['bound']})")
    if get(hf, "checks", "ok") is False:
        problems.append(f"HF structural checks failed: {get(hf, 'checks')}")
    if get(hf, "seed_pipeline", "stopped_early"):
        problems.append(f"HF pipeline stopped early (time budget) after {get(hf, 'seed_pipeline', 'samples')} samples")

    rows, _ = build_rows(hf, kv)
    print(f"=== kvprime vs HF transformers on {gpu}")
    if ag:
        print(f"NLL agreement on {ag['common']} common samples (HF only {ag['hf_only']}, kvprime only "
              f"{ag['kvprime_only']}); tolerance max |d| <= {args.max_abs}, mean |d| <= {args.mean_abs} nats; "
              f"bare document ids: {ag['bare_rule']} (from {ag['bare_rule_from']}):")
        for line in agreement_lines(ag):
            print("  " + line)
    for p in problems:
        print(f"PROBLEM: {p}")
    for n in notes:
        print(f"note: {n}")
    print()
    print_table(rows)

    if args.md_out:
        Path(args.md_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.md_out).write_text(markdown(hf, kv, rows, ag, args, gpu, problems, notes))
        print(f"\nwrote {args.md_out}")
    ok = bool(ag and ag["ok"]) and not (hf_err or kv_err)
    print(f"\ncompare: NLLs {'agree' if ok else 'DO NOT agree (or could not be compared)'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
