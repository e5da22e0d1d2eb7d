#!/usr/bin/env python3
"""Reference values for kvprime's statistics (src/analysis/stats.cpp), computed with scipy/numpy.

Writes tests/fixtures/stats/reference.json, which tests/unit/test_stats_reference.cpp compares
against (and skips when the file is absent). Needs numpy and scipy (any scipy >= 1.10: the
Wilcoxon method is chosen explicitly by scipy >= 1.15's 'auto' rule, so every version gives the
same numbers; with scipy >= 1.15 the script also checks that method='auto' agrees).

    python3 tools/stats_reference.py [--out tests/fixtures/stats/reference.json]

What comes from where:
- t-test: scipy.stats.ttest_rel(condition, baseline); Wilcoxon: scipy.stats.wilcoxon(d) with d =
  condition - baseline (exact, asymptotic, or permutation_test over all sign flips);
  pearsonr / spearmanr; mannwhitneyu (AUC); rankdata (ranks for MRR / Hit@k);
  scipy.stats.bootstrap (percentile, a different random stream: a loose cross-check).
- mean, sd (ddof 1), Cohen's d, win/tie/loss rates: numpy.
- Holm / Bonferroni: statsmodels.stats.multitest.multipletests when installed, else numpy
  written here from the definition.
- bootstrap_mirror: kvprime's exact algorithm (std::mt19937_64, rejection index draw, plain sum,
  numpy.quantile 'linear') re-implemented in pure Python, so the C++ must agree to rounding.
Inputs are generated with numpy's PCG64 from fixed seeds and written into the file, so the C++
test reads the very same numbers.
"""
import argparse
import json
import math
import os
import sys
import warnings

import numpy as np
import scipy
from scipy import stats

FIXTURE_VERSION = 1
MASK64 = (1 << 64) - 1


class MT19937_64:
    """The 64-bit Mersenne Twister of C++ <random> (std::mt19937_64), seeded with one integer."""

    N, M = 312, 156
    MATRIX_A = 0xB5026F5AA96619E9
    UPPER, LOWER = 0xFFFFFFFF80000000, 0x7FFFFFFF

    def __init__(self, seed):
        self.mt = [0] * self.N
        self.mt[0] = seed & MASK64
        for i in range(1, self.N):
            prev = self.mt[i - 1]
            self.mt[i] = (6364136223846793005 * (prev ^ (prev >> 62)) + i) & MASK64
        self.index = self.N

    def _twist(self):
        mt = self.mt
        for i in range(self.N):
            x = (mt[i] & self.UPPER) | (mt[(i + 1) % self.N] & self.LOWER)
            xa = x >> 1
            if x & 1:
                xa ^= self.MATRIX_A
            mt[i] = mt[(i + self.M) % self.N] ^ xa
        self.index = 0

    def __call__(self):
        if self.index >= self.N:
            self._twist()
        y = self.mt[self.index]
        self.index += 1
        y ^= (y >> 29) & 0x5555555555555555
        y ^= (y << 17) & 0x71D67FFFEDA60000
        y ^= (y << 37) & 0xFFF7EEE000000000
        y ^= y >> 43
        return y & MASK64


def uniform_index(rng, n):
    threshold = (1 << 64) % n
    while True:
        u = rng()
        if u >= threshold:
            return u % n


def bootstrap_mirror(x, resamples, confidence, seed):
    rng = MT19937_64(seed)
    n = len(x)
    means = []
    for _ in range(resamples):
        s = 0.0
        for _ in range(n):
            s += x[uniform_index(rng, n)]
        means.append(s / n)
    means = np.sort(np.array(means))
    alpha = 1.0 - confidence
    lo, hi = np.quantile(means, [alpha / 2, 1.0 - alpha / 2])
    return float(lo), float(hi)


def scipy_bootstrap(x, resamples, confidence, seed):
    kwargs = dict(n_resamples=resamples, confidence_level=confidence, method="percentile")
    try:
        res = stats.bootstrap((np.asarray(x),), np.mean, rng=np.random.default_rng(seed), **kwargs)
    except TypeError:  # scipy < 1.15 calls it random_state
        res = stats.bootstrap((np.asarray(x),), np.mean,
                              random_state=np.random.default_rng(seed), **kwargs)
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def scipy_ge(major, minor):
    parts = scipy.__version__.split(".")
    return (int(parts[0]), int(parts[1])) >= (major, minor)


def wilcoxon_reference(d):
    """scipy.stats.wilcoxon(d) as scipy >= 1.15 does it by default (zero_method='wilcox',
    correction=False, method='auto'), with the method chosen explicitly."""
    d = np.asarray(d, dtype=float)
    n = d.size
    nz = d[d != 0]
    has_ties = np.unique(np.abs(nz)).size < nz.size
    n_zero = n - nz.size
    if n > 50:
        method = "asymptotic"
    elif not has_ties and n_zero == 0:
        method = "exact"
    elif n <= 13:
        method = "permutation"
    else:
        method = "asymptotic"
    asym = "asymptotic" if scipy_ge(1, 15) else "approx"
    if method == "exact":
        res = stats.wilcoxon(d, method="exact")
        p = float(res.pvalue)
    elif method == "asymptotic":
        res = stats.wilcoxon(d, method=asym)
        p = float(res.pvalue)
    else:
        def r_plus(dd):
            keep = dd != 0
            ranks = stats.rankdata(np.abs(dd[keep]))
            return np.sum(ranks[dd[keep] > 0])
        res_p = stats.permutation_test((d,), r_plus, permutation_type="samples",
                                       alternative="two-sided", vectorized=False,
                                       n_resamples=np.inf)
        p = float(res_p.pvalue)
        res = stats.wilcoxon(d, method=asym)  # only for the statistic
    statistic = float(res.statistic)
    if scipy_ge(1, 15):
        auto = stats.wilcoxon(d)
        if not math.isclose(float(auto.pvalue), p, rel_tol=1e-12, abs_tol=0):
            sys.exit(f"stats_reference: ERROR: wilcoxon 'auto' gives {auto.pvalue}, the explicit "
                     f"{method} gives {p}")
    return {"method": "exact" if method == "permutation" else method,
            "scipy_route": method, "statistic": statistic, "p": p,
            "n_zero": int(n_zero), "has_ties": bool(has_ties)}


def paired_case(name, baseline, condition, resamples, seed):
    b = np.asarray(baseline, dtype=float)
    c = np.asarray(condition, dtype=float)
    d = c - b
    t = stats.ttest_rel(c, b)
    out = {
        "name": name,
        "baseline": b.tolist(),
        "condition": c.tolist(),
        "mean_baseline": float(np.mean(b)),
        "mean_condition": float(np.mean(c)),
        "mean_delta": float(np.mean(d)),
        "sd_delta": float(np.std(d, ddof=1)),
        "cohens_d": float(np.mean(d) / np.std(d, ddof=1)),
        "win_rate": float(np.mean(d < 0)),
        "tie_rate": float(np.mean(d == 0)),
        "loss_rate": float(np.mean(d > 0)),
        "t": float(t.statistic),
        "df": float(len(d) - 1),
        "t_p": float(t.pvalue),
        "wilcoxon": wilcoxon_reference(d),
        "wilcoxon_asymptotic_corrected_p": float(stats.wilcoxon(
            d, method="asymptotic" if scipy_ge(1, 15) else "approx", correction=True).pvalue),
    }
    benefit = -d
    pr = stats.pearsonr(b, benefit)
    sr = stats.spearmanr(b, benefit)
    out["pearson_r"], out["pearson_p"] = float(pr[0]), float(pr[1])
    out["spearman_r"], out["spearman_p"] = float(sr[0]), float(sr[1])
    confidence = 0.95
    out["bootstrap"] = {"resamples": resamples, "confidence": confidence, "seed": seed}
    out["bootstrap"]["mirror"] = bootstrap_mirror(d.tolist(), resamples, confidence, seed)
    out["bootstrap"]["scipy"] = scipy_bootstrap(d, 10000, confidence, seed)
    return out


def holm_numpy(p):
    p = np.asarray(p, dtype=float)
    order = np.argsort(p, kind="stable")
    m = p.size
    adj = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adj = np.maximum.accumulate(adj)
    out = np.empty(m)
    out[order] = adj
    return out


def multiple_case(p):
    try:
        from statsmodels.stats.multitest import multipletests
        holm = multipletests(p, method="holm")[1]
        bonf = multipletests(p, method="bonferroni")[1]
        source = "statsmodels"
    except ImportError:
        holm = holm_numpy(p)
        bonf = np.minimum(1.0, len(p) * np.asarray(p))
        source = "numpy (definition)"
    return {"p": list(map(float, p)), "holm": list(map(float, holm)),
            "bonferroni": list(map(float, bonf)), "source": source}


def ranking_case(scores, relevant, ks, cutoff):
    s = np.asarray(scores, dtype=float)
    others = np.delete(s, relevant)
    # AUC: Mann-Whitney U of the irrelevant scores against the relevant one (ties count 1/2)
    u = stats.mannwhitneyu(others, [s[relevant]], alternative="two-sided").statistic
    auc = float(u) / others.size
    lo = int(stats.rankdata(s, method="min")[relevant])   # optimistic rank
    hi = int(stats.rankdata(s, method="max")[relevant])   # pessimistic rank
    ranks = list(range(lo, hi + 1))

    def rr(r):
        return 1.0 / r if r <= cutoff else 0.0

    out = {"scores": s.tolist(), "relevant": relevant, "auc": auc}
    for tie, rs in (("expected", ranks), ("pessimistic", [hi]), ("optimistic", [lo])):
        out[tie] = {"rr": float(np.mean([rr(r) for r in rs])),
                    "hit": [float(np.mean([1.0 if r <= k else 0.0 for r in rs])) for k in ks]}
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "..", "tests", "fixtures", "stats",
                                                  "reference.json"))
    args = ap.parse_args()
    args.out = os.path.normpath(args.out)
    # the corrected normal approximation is computed for every case on purpose, small ones too
    warnings.filterwarnings("ignore", message="Sample size too small for normal approximation")

    rng0 = MT19937_64(5489)
    for _ in range(9999):
        rng0()
    assert rng0() == 9981545732273789042, "MT19937_64 mirror is wrong (C++ [rand.predef])"

    g = np.random.default_rng(20240601)
    cases = []

    def nll(n, loc=2.0, scale=0.6):
        return g.gamma(shape=(loc / scale) ** 2, scale=scale ** 2 / loc, size=n)

    # continuous, small: exact Wilcoxon (no ties, no zeros)
    b = nll(12); c = b - 0.15 + g.normal(0, 0.3, 12)
    cases.append(paired_case("small_exact", b, c, 2000, 7))
    # n = 40: still exact
    b = nll(40); c = b - 0.05 * b + g.normal(0, 0.2, 40)
    cases.append(paired_case("n40_exact", b, c, 2000, 11))
    # ties and a zero, n = 11: exact conditional (scipy: permutation test over 2^11 sign flips)
    b = np.round(nll(11), 1); c = np.round(b + g.choice([-0.3, -0.2, -0.1, 0.0, 0.1], 11), 1)
    c[3] = b[3]
    cases.append(paired_case("ties_small_permutation", b, c, 2000, 3))
    # ties, n = 30: asymptotic with tie correction
    b = np.round(nll(30), 1); c = np.round(b + g.choice([-0.3, -0.2, -0.1, 0.1, 0.2], 30), 1)
    cases.append(paired_case("ties_n30_asymptotic", b, c, 2000, 5))
    # n = 200: asymptotic; the condition barely helps
    b = nll(200); c = b - 0.02 + g.normal(0, 0.25, 200)
    cases.append(paired_case("n200_asymptotic", b, c, 1000, 13))
    # Student's sleep data (R `sleep`, Cushny & Peebles): extra sleep, drug 1 vs drug 2
    d1 = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0]
    d2 = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4]
    cases.append(paired_case("sleep", d2, d1, 2000, 1))

    multiple = [multiple_case([0.01, 0.04, 0.03, 0.005]),
                multiple_case([float(x) for x in g.uniform(0, 0.2, 9)] + [0.5, 0.9]),
                multiple_case([0.02, 0.02, 0.02])]

    ks, cutoff = [1, 3, 5, 10], 10
    ranking = []
    for q in range(25):
        n_cand = int(g.integers(2, 16))
        scores = np.round(g.normal(3.0, 1.0, n_cand), 1)  # rounding makes ties
        relevant = int(g.integers(0, n_cand))
        scores[relevant] -= 0.4 * (q % 3)
        ranking.append(ranking_case(np.round(scores, 1), relevant, ks, cutoff))
    # one query with the relevant one tied with many, past the cutoff
    ranking.append(ranking_case([1.0] * 8 + [2.0] + [3.0] * 6, 10, ks, cutoff))
    ranking.append(ranking_case([0.5] * 14 + [3.0], 3, ks, cutoff))

    def mean_of(key, tie=None, idx=None):
        vals = [(r[tie][key] if idx is None else r[tie][key][idx]) if tie else r[key]
                for r in ranking]
        return float(np.mean(vals))

    summary = {"auc": mean_of("auc"), "ks": ks, "mrr_cutoff": cutoff}
    for tie in ("expected", "pessimistic", "optimistic"):
        summary[tie] = {"mrr": mean_of("rr", tie),
                        "hit": [mean_of("hit", tie, i) for i in range(len(ks))]}

    doc = {
        "fixture_version": FIXTURE_VERSION,
        "generator": "tools/stats_reference.py",
        "versions": {"python": sys.version.split()[0], "numpy": np.__version__,
                     "scipy": scipy.__version__},
        "conventions": {
            "delta": "condition - baseline",
            "benefit": "baseline - condition (correlated with baseline = difficulty)",
            "wilcoxon": "scipy >= 1.15 default: zero_method='wilcox', correction=False, "
                        "method='auto' (exact if n <= 50 without zeros/ties; exhaustive "
                        "permutation if zeros/ties and n <= 13; else asymptotic)",
            "bootstrap_mirror": "kvprime algorithm in pure Python (std::mt19937_64)",
        },
        "paired": cases,
        "multiple": multiple,
        "ranking": {"queries": ranking, "summary": summary},
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"stats_reference: wrote {args.out} (scipy {scipy.__version__}, numpy {np.__version__}; "
          f"{len(cases)} paired cases, {len(multiple)} p-value families, {len(ranking)} queries)")


if __name__ == "__main__":
    main()
