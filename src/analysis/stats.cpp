// Statistics of the experiment runner (see include/kvprime/analysis/stats.h for the conventions).
// Special functions (Student t, normal, regularized incomplete beta) come from Boost.Math,
// header-only, used only in this file.
#include "kvprime/analysis/stats.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include <boost/math/distributions/normal.hpp>
#include <boost/math/distributions/students_t.hpp>
#include <boost/math/special_functions/beta.hpp>

#include "kvprime/core/error.h"

namespace kvprime::stats {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
// The Exact Wilcoxon distribution is tabulated over 2 R+ in [0, m(m+1)]: O(m^3) work.
constexpr int64_t kMaxExactWilcoxon = 200;

void check_finite(const std::vector<double>& x, const char* fn, const char* name) {
  for (size_t i = 0; i < x.size(); ++i) {
    KVP_CHECK(std::isfinite(x[i]), fn, ": ", name, "[", i, "] is ", x[i],
              "; every value must be finite (a NaN or inf NLL is a failed or missing sample: drop "
              "or fix it before the statistics)");
  }
}

void check_min_size(const std::vector<double>& x, size_t min_n, const char* fn, const char* name,
                    const char* why) {
  KVP_CHECK(x.size() >= min_n, fn, ": ", name, " has ", x.size(), " value(s), needs at least ",
            min_n, " (", why, ")");
}

void check_paired(const std::vector<double>& baseline, const std::vector<double>& condition,
                  const char* fn) {
  KVP_CHECK(baseline.size() == condition.size(), fn, ": baseline has ", baseline.size(),
            " values but condition has ", condition.size(),
            "; paired statistics need one value of each per sample, in the same order");
  check_finite(baseline, fn, "baseline");
  check_finite(condition, fn, "condition");
}

std::vector<double> differences(const std::vector<double>& baseline,
                                const std::vector<double>& condition) {
  std::vector<double> d(baseline.size());
  for (size_t i = 0; i < d.size(); ++i) d[i] = condition[i] - baseline[i];
  return d;
}

bool all_equal(const std::vector<double>& x) {
  return std::all_of(x.begin(), x.end(), [&](double v) { return v == x.front(); });
}

// Neumaier's compensated sum.
double compensated_sum(const std::vector<double>& x) {
  double sum = 0, comp = 0;
  for (double v : x) {
    const double t = sum + v;
    if (std::fabs(sum) >= std::fabs(v))
      comp += (sum - t) + v;
    else
      comp += (v - t) + sum;
    sum = t;
  }
  return sum + comp;
}

double mean_unchecked(const std::vector<double>& x) {
  return compensated_sum(x) / static_cast<double>(x.size());
}

double sd_unchecked(const std::vector<double>& x) {
  if (all_equal(x)) return 0.0;
  const double m = mean_unchecked(x);
  std::vector<double> sq(x.size());
  for (size_t i = 0; i < x.size(); ++i) sq[i] = (x[i] - m) * (x[i] - m);
  return std::sqrt(compensated_sum(sq) / static_cast<double>(x.size() - 1));
}

// 2 P(T_df >= |t|).
double student_t_two_sided(double t, double df) {
  const boost::math::students_t_distribution<double> dist(df);
  return std::min(1.0, 2.0 * boost::math::cdf(boost::math::complement(dist, std::fabs(t))));
}

// 2 P(Z >= |z|).
double normal_two_sided(double z) {
  const boost::math::normal_distribution<double> dist(0.0, 1.0);
  return std::min(1.0, 2.0 * boost::math::cdf(boost::math::complement(dist, std::fabs(z))));
}

// Two-sided p of a correlation r from n pairs under H0 (bivariate normal, rho = 0):
// (r + 1) / 2 ~ Beta(n/2 - 1, n/2 - 1), so P(|R| >= |r|) = 2 I_{(1-|r|)/2}(a, a). This is the
// Student t form t = r sqrt((n-2)/(1-r^2)) on n-2 df, without its cancellation near |r| = 1.
double correlation_p(double r, int64_t n) {
  const double a = 0.5 * static_cast<double>(n) - 1.0;
  const double x = 0.5 * (1.0 - std::fabs(r));
  if (x <= 0) return 0.0;
  return std::min(1.0, 2.0 * boost::math::ibeta(a, a, x));
}

Correlation pearson_unchecked(const std::vector<double>& x, const std::vector<double>& y,
                              const char* x_name = "x", const char* y_name = "y") {
  Correlation c;
  c.n = static_cast<int64_t>(x.size());
  if (all_equal(x) || all_equal(y)) {
    c.r = c.p = kNaN;
    c.undefined = detail::concat(all_equal(x) ? x_name : y_name,
                                 " is constant: correlation undefined");
    return c;
  }
  const double mx = mean_unchecked(x), my = mean_unchecked(y);
  std::vector<double> sxx(x.size()), syy(x.size()), sxy(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double dx = x[i] - mx, dy = y[i] - my;
    sxx[i] = dx * dx;
    syy[i] = dy * dy;
    sxy[i] = dx * dy;
  }
  const double r = compensated_sum(sxy) / std::sqrt(compensated_sum(sxx) * compensated_sum(syy));
  c.r = std::max(-1.0, std::min(1.0, r));
  c.p = correlation_p(c.r, c.n);
  return c;
}

void check_correlation_input(const std::vector<double>& x, const std::vector<double>& y,
                             const char* fn) {
  KVP_CHECK(x.size() == y.size(), fn, ": x has ", x.size(), " values but y has ", y.size(),
            "; a correlation needs pairs");
  check_min_size(x, 3, fn, "x", "a correlation's p-value has n - 2 degrees of freedom");
  check_finite(x, fn, "x");
  check_finite(y, fn, "y");
}

TTest t_test_unchecked(const std::vector<double>& d) {
  TTest r;
  r.n = static_cast<int64_t>(d.size());
  r.df = static_cast<double>(d.size() - 1);
  r.mean = mean_unchecked(d);
  if (all_equal(d)) {
    r.t = r.p = kNaN;
    r.undefined = "all differences are equal (zero variance): the t statistic is undefined";
    return r;
  }
  const double sd = sd_unchecked(d);
  r.t = r.mean / (sd / std::sqrt(static_cast<double>(d.size())));
  r.p = student_t_two_sided(r.t, r.df);
  return r;
}

// Null distribution of R+ over the 2^m sign patterns of the given doubled ranks (integers):
// pmf[k] = P(2 R+ = k). Each step halves, so for m <= 52 every entry is an exact dyadic number.
std::vector<double> signed_rank_pmf(const std::vector<int64_t>& doubled_ranks) {
  const int64_t total = std::accumulate(doubled_ranks.begin(), doubled_ranks.end(), int64_t{0});
  std::vector<double> pmf(static_cast<size_t>(total) + 1, 0.0);
  pmf[0] = 1.0;
  int64_t reach = 0;
  for (int64_t r : doubled_ranks) {
    reach += r;
    for (int64_t k = reach; k >= 0; --k) {
      const double without = pmf[k] * 0.5;
      const double with = k >= r ? pmf[k - r] * 0.5 : 0.0;
      pmf[k] = without + with;
    }
  }
  return pmf;
}

}  // namespace

// ---------------------------------------------------------------------------------------------

TTest::TTest() : p_bonferroni(kNaN), p_holm(kNaN) {}
WilcoxonTest::WilcoxonTest() : z(kNaN), p_bonferroni(kNaN), p_holm(kNaN) {}

double mean(const std::vector<double>& x) {
  check_min_size(x, 1, "mean", "x", "the mean of nothing is undefined");
  check_finite(x, "mean", "x");
  return mean_unchecked(x);
}

double sample_sd(const std::vector<double>& x) {
  check_min_size(x, 2, "sample_sd", "x", "the sample sd divides by n - 1");
  check_finite(x, "sample_sd", "x");
  return sd_unchecked(x);
}

std::vector<double> average_ranks(const std::vector<double>& x) {
  check_finite(x, "average_ranks", "x");
  std::vector<size_t> order(x.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return x[a] < x[b]; });
  std::vector<double> ranks(x.size());
  for (size_t i = 0; i < order.size();) {
    size_t j = i;
    while (j + 1 < order.size() && x[order[j + 1]] == x[order[i]]) ++j;
    // positions i..j (0-based) hold ranks i+1..j+1: their average is (i + j) / 2 + 1
    const double avg = 0.5 * static_cast<double>(i + j) + 1.0;
    for (size_t k = i; k <= j; ++k) ranks[order[k]] = avg;
    i = j + 1;
  }
  return ranks;
}

// ---------------------------------------------------------------------------------------------

uint64_t uniform_index(std::mt19937_64& rng, uint64_t n) {
  KVP_CHECK(n > 0, "uniform_index: n must be positive");
  // 2^64 mod n, in 64-bit arithmetic: (2^64 - n) mod n.
  const uint64_t threshold = (uint64_t{0} - n) % n;
  for (;;) {
    const uint64_t u = rng();
    if (u >= threshold) return u % n;
  }
}

double quantile_sorted(const std::vector<double>& sorted, double q) {
  KVP_CHECK(!sorted.empty(), "quantile_sorted: no values");
  KVP_CHECK(q >= 0.0 && q <= 1.0, "quantile_sorted: q = ", q, " is outside [0, 1]");
  const double h = static_cast<double>(sorted.size() - 1) * q;
  const double lo_f = std::floor(h);
  const size_t lo = static_cast<size_t>(lo_f);
  if (lo + 1 >= sorted.size()) return sorted.back();
  const double frac = h - lo_f;
  const double a = sorted[lo], b = sorted[lo + 1];
  // numpy's lerp: from the nearer end, so that frac = 1 gives b exactly
  return frac < 0.5 ? a + (b - a) * frac : b - (b - a) * (1.0 - frac);
}

BootstrapCI bootstrap_mean_ci(const std::vector<double>& x, int64_t resamples, double confidence,
                              uint64_t seed) {
  check_min_size(x, 1, "bootstrap_mean_ci", "x", "nothing to resample");
  check_finite(x, "bootstrap_mean_ci", "x");
  KVP_CHECK(resamples >= 2, "bootstrap_mean_ci: resamples = ", resamples,
            " must be at least 2 (10000 is usual)");
  KVP_CHECK(confidence > 0.0 && confidence < 1.0, "bootstrap_mean_ci: confidence = ", confidence,
            " must lie strictly between 0 and 1 (e.g. 0.95)");
  std::mt19937_64 rng(seed);
  const uint64_t n = x.size();
  std::vector<double> means(static_cast<size_t>(resamples));
  for (auto& m : means) {
    double sum = 0;  // plain summation in draw order: the Python mirror does the same
    for (uint64_t i = 0; i < n; ++i) sum += x[uniform_index(rng, n)];
    m = sum / static_cast<double>(n);
  }
  std::sort(means.begin(), means.end());
  BootstrapCI ci;
  const double alpha = 1.0 - confidence;
  ci.lower = quantile_sorted(means, alpha / 2);
  ci.upper = quantile_sorted(means, 1.0 - alpha / 2);
  ci.confidence = confidence;
  ci.resamples = resamples;
  ci.seed = seed;
  return ci;
}

// ---------------------------------------------------------------------------------------------

TTest t_test_one_sample(const std::vector<double>& d) {
  check_min_size(d, 2, "t_test_one_sample", "d", "the t-test has n - 1 degrees of freedom");
  check_finite(d, "t_test_one_sample", "d");
  return t_test_unchecked(d);
}

TTest t_test_paired(const std::vector<double>& baseline, const std::vector<double>& condition) {
  check_paired(baseline, condition, "t_test_paired");
  check_min_size(baseline, 2, "t_test_paired", "baseline",
                 "the t-test has n - 1 degrees of freedom");
  return t_test_unchecked(differences(baseline, condition));
}

WilcoxonTest wilcoxon_signed_rank(const std::vector<double>& d, WilcoxonMethod method,
                                  bool continuity_correction) {
  check_min_size(d, 1, "wilcoxon_signed_rank", "d", "nothing to test");
  check_finite(d, "wilcoxon_signed_rank", "d");
  WilcoxonTest w;
  w.n = static_cast<int64_t>(d.size());
  w.continuity_correction = continuity_correction;
  std::vector<double> nonzero, abs_nonzero;
  for (double v : d) {
    if (v == 0.0) continue;
    nonzero.push_back(v);
    abs_nonzero.push_back(std::fabs(v));
  }
  w.n_used = static_cast<int64_t>(nonzero.size());
  w.n_zero = w.n - w.n_used;
  const std::vector<double> ranks = average_ranks(abs_nonzero);
  std::vector<int64_t> doubled(ranks.size());
  int64_t doubled_plus = 0;
  for (size_t i = 0; i < ranks.size(); ++i) {
    doubled[i] = std::llround(2.0 * ranks[i]);  // average ranks are multiples of 1/2
    if (nonzero[i] > 0) doubled_plus += doubled[i];
  }
  const int64_t m = w.n_used;
  const int64_t doubled_total = m * (m + 1);
  w.r_plus = 0.5 * static_cast<double>(doubled_plus);
  w.r_minus = 0.5 * static_cast<double>(doubled_total - doubled_plus);
  w.statistic = std::min(w.r_plus, w.r_minus);
  {
    std::vector<double> sorted = abs_nonzero;
    std::sort(sorted.begin(), sorted.end());
    w.has_ties = std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end();
  }

  if (method == WilcoxonMethod::Auto) {
    if (w.n > 50)
      method = WilcoxonMethod::Asymptotic;
    else if (!w.has_ties && w.n_zero == 0)
      method = WilcoxonMethod::Exact;
    else if (w.n <= 13)
      method = WilcoxonMethod::Exact;  // scipy: exhaustive permutation test, the same numbers
    else
      method = WilcoxonMethod::Asymptotic;
  }
  w.method = method;
  if (m == 0) {
    w.p = kNaN;
    w.undefined = "every difference is zero: nothing to rank";
    return w;
  }

  if (method == WilcoxonMethod::Exact) {
    KVP_CHECK(m <= kMaxExactWilcoxon, "wilcoxon_signed_rank: the exact method tabulates the null "
              "distribution and is limited to ", kMaxExactWilcoxon, " non-zero differences, got ",
              m, "; use WilcoxonMethod::Asymptotic (or Auto)");
    const std::vector<double> pmf = signed_rank_pmf(doubled);
    // P(2R+ <= k) and P(2R+ >= k), each summed from its own tail (no 1 - x cancellation)
    double lower = 0, upper = 0;
    for (int64_t k = 0; k <= doubled_plus; ++k) lower += pmf[k];
    for (int64_t k = doubled_total; k >= doubled_plus; --k) upper += pmf[k];
    w.p = std::min(1.0, 2.0 * std::min(lower, upper));
  } else {
    // tie correction: sum over groups of tied |d| of t^3 - t
    std::vector<double> sorted = abs_nonzero;
    std::sort(sorted.begin(), sorted.end());
    double tie_sum = 0;
    for (size_t i = 0; i < sorted.size();) {
      size_t j = i;
      while (j + 1 < sorted.size() && sorted[j + 1] == sorted[i]) ++j;
      const double t = static_cast<double>(j - i + 1);
      tie_sum += t * t * t - t;
      i = j + 1;
    }
    const double md = static_cast<double>(m);
    const double mn = md * (md + 1) * 0.25;
    const double se = std::sqrt((md * (md + 1) * (2 * md + 1) - tie_sum / 2) / 24);
    double z = (w.r_plus - mn) / se;
    if (continuity_correction && z != 0) z -= (z > 0 ? 0.5 : -0.5) / se;
    w.z = z;
    w.p = normal_two_sided(z);
  }
  return w;
}

WilcoxonTest wilcoxon_paired(const std::vector<double>& baseline,
                             const std::vector<double>& condition, WilcoxonMethod method,
                             bool continuity_correction) {
  check_paired(baseline, condition, "wilcoxon_paired");
  return wilcoxon_signed_rank(differences(baseline, condition), method, continuity_correction);
}

Correlation pearson(const std::vector<double>& x, const std::vector<double>& y) {
  check_correlation_input(x, y, "pearson");
  return pearson_unchecked(x, y);
}

Correlation spearman(const std::vector<double>& x, const std::vector<double>& y) {
  check_correlation_input(x, y, "spearman");
  Correlation c = pearson_unchecked(average_ranks(x), average_ranks(y));
  return c;
}

// ---------------------------------------------------------------------------------------------

namespace {
void check_p_values(const std::vector<double>& p, const char* fn) {
  for (size_t i = 0; i < p.size(); ++i) {
    KVP_CHECK(std::isnan(p[i]) || (p[i] >= 0.0 && p[i] <= 1.0), fn, ": p[", i, "] = ", p[i],
              " is not a probability (NaN marks an undefined test and is skipped)");
  }
}
}  // namespace

std::vector<double> bonferroni(const std::vector<double>& p) {
  check_p_values(p, "bonferroni");
  const double m = static_cast<double>(
      std::count_if(p.begin(), p.end(), [](double v) { return !std::isnan(v); }));
  std::vector<double> out(p.size());
  for (size_t i = 0; i < p.size(); ++i) out[i] = std::isnan(p[i]) ? kNaN : std::min(1.0, m * p[i]);
  return out;
}

std::vector<double> holm(const std::vector<double>& p) {
  check_p_values(p, "holm");
  std::vector<size_t> order;
  for (size_t i = 0; i < p.size(); ++i)
    if (!std::isnan(p[i])) order.push_back(i);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return p[a] < p[b]; });
  const size_t m = order.size();
  std::vector<double> out(p.size(), kNaN);
  double running = 0;
  for (size_t j = 0; j < m; ++j) {
    running = std::max(running, std::min(1.0, static_cast<double>(m - j) * p[order[j]]));
    out[order[j]] = running;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------

PairedComparison compare_paired(const std::vector<double>& baseline,
                                const std::vector<double>& condition,
                                const PairedOptions& options) {
  check_paired(baseline, condition, "compare_paired");
  check_min_size(baseline, 2, "compare_paired", "baseline",
                 "a paired comparison needs a sample variance");
  const std::vector<double> d = differences(baseline, condition);
  PairedComparison c;
  c.n = static_cast<int64_t>(d.size());
  c.mean_baseline = mean_unchecked(baseline);
  c.mean_condition = mean_unchecked(condition);
  c.mean_delta = mean_unchecked(d);
  c.sd_delta = sd_unchecked(d);
  c.delta_ci = bootstrap_mean_ci(d, options.bootstrap_resamples, options.confidence, options.seed);
  c.cohens_d = c.sd_delta > 0 ? c.mean_delta / c.sd_delta : kNaN;
  int64_t wins = 0, ties = 0;
  for (double v : d) {
    wins += v < 0;
    ties += v == 0;
  }
  const double n = static_cast<double>(c.n);
  c.win_rate = static_cast<double>(wins) / n;
  c.tie_rate = static_cast<double>(ties) / n;
  c.loss_rate = static_cast<double>(c.n - wins - ties) / n;
  c.t_test = t_test_unchecked(d);
  c.wilcoxon = wilcoxon_signed_rank(d, options.wilcoxon_method, false);
  if (c.n >= 3) {
    std::vector<double> benefit(d.size());
    for (size_t i = 0; i < d.size(); ++i) benefit[i] = -d[i];
    const char* x_name = "difficulty (the baseline NLL)";
    const char* y_name = "benefit (every delta is the same)";
    c.benefit_vs_difficulty_pearson = pearson_unchecked(baseline, benefit, x_name, y_name);
    c.benefit_vs_difficulty_spearman =
        pearson_unchecked(average_ranks(baseline), average_ranks(benefit), x_name, y_name);
  } else {
    for (Correlation* r : {&c.benefit_vs_difficulty_pearson, &c.benefit_vs_difficulty_spearman}) {
      r->n = c.n;
      r->r = r->p = kNaN;
      r->undefined = "a correlation's p-value needs n >= 3";
    }
  }
  return c;
}

void adjust_p_values(std::vector<PairedComparison>& comparisons) {
  std::vector<double> pt, pw;
  for (const auto& c : comparisons) {
    pt.push_back(c.t_test.p);
    pw.push_back(c.wilcoxon.p);
  }
  const auto bt = bonferroni(pt), ht = holm(pt), bw = bonferroni(pw), hw = holm(pw);
  for (size_t i = 0; i < comparisons.size(); ++i) {
    comparisons[i].t_test.p_bonferroni = bt[i];
    comparisons[i].t_test.p_holm = ht[i];
    comparisons[i].wilcoxon.p_bonferroni = bw[i];
    comparisons[i].wilcoxon.p_holm = hw[i];
  }
}

// ---------------------------------------------------------------------------------------------

namespace {
struct RankCounts {
  int64_t better = 0;  // other candidates scoring strictly lower than the relevant one
  int64_t tied = 0;    // other candidates scoring exactly the same
  int64_t others = 0;  // irrelevant candidates
};

RankCounts rank_counts(const RankingQuery& q, const char* fn) {
  KVP_CHECK(q.scores.size() >= 2, fn, ": a query has ", q.scores.size(),
            " candidate score(s); ranking needs the relevant passage and at least one irrelevant");
  KVP_CHECK(q.relevant >= 0 && q.relevant < static_cast<int64_t>(q.scores.size()), fn,
            ": relevant = ", q.relevant, " is not an index into the ", q.scores.size(), " scores");
  check_finite(q.scores, fn, "scores");
  RankCounts c;
  const double s = q.scores[q.relevant];
  for (size_t i = 0; i < q.scores.size(); ++i) {
    if (static_cast<int64_t>(i) == q.relevant) continue;
    ++c.others;
    c.better += q.scores[i] < s;
    c.tied += q.scores[i] == s;
  }
  return c;
}

// Mean of f(rank) over the ranks the relevant candidate can take under the tie-break.
template <typename F>
double over_ranks(const RankCounts& c, TieBreak ties, F f) {
  switch (ties) {
    case TieBreak::Optimistic: return f(c.better + 1);
    case TieBreak::Pessimistic: return f(c.better + c.tied + 1);
    case TieBreak::Expected: {
      double sum = 0;
      for (int64_t r = c.better + 1; r <= c.better + c.tied + 1; ++r) sum += f(r);
      return sum / static_cast<double>(c.tied + 1);
    }
  }
  KVP_ASSERT(false, "unknown TieBreak");
  return 0;
}
}  // namespace

double ranking_auc(const RankingQuery& query) {
  const RankCounts c = rank_counts(query, "ranking_auc");
  const int64_t worse = c.others - c.better - c.tied;
  return (static_cast<double>(worse) + 0.5 * static_cast<double>(c.tied)) /
         static_cast<double>(c.others);
}

double reciprocal_rank(const RankingQuery& query, int64_t cutoff, TieBreak ties) {
  KVP_CHECK(cutoff >= 1, "reciprocal_rank: cutoff = ", cutoff, " must be at least 1");
  const RankCounts c = rank_counts(query, "reciprocal_rank");
  return over_ranks(c, ties, [&](int64_t r) {
    return r <= cutoff ? 1.0 / static_cast<double>(r) : 0.0;
  });
}

double hit_at_k(const RankingQuery& query, int64_t k, TieBreak ties) {
  KVP_CHECK(k >= 1, "hit_at_k: k = ", k, " must be at least 1");
  const RankCounts c = rank_counts(query, "hit_at_k");
  return over_ranks(c, ties, [&](int64_t r) { return r <= k ? 1.0 : 0.0; });
}

RankingSummary summarize_ranking(const std::vector<RankingQuery>& queries,
                                 const std::vector<int64_t>& ks, int64_t mrr_cutoff,
                                 TieBreak ties) {
  KVP_CHECK(!queries.empty(), "summarize_ranking: no queries");
  RankingSummary s;
  s.n_queries = static_cast<int64_t>(queries.size());
  s.mrr_cutoff = mrr_cutoff;
  s.ks = ks;
  std::vector<double> auc, rr;
  std::vector<std::vector<double>> hits(ks.size());
  for (const auto& q : queries) {
    auc.push_back(ranking_auc(q));
    rr.push_back(reciprocal_rank(q, mrr_cutoff, ties));
    for (size_t i = 0; i < ks.size(); ++i) hits[i].push_back(hit_at_k(q, ks[i], ties));
  }
  s.auc = mean_unchecked(auc);
  s.mrr = mean_unchecked(rr);
  for (const auto& h : hits) s.hit_at_k.push_back(mean_unchecked(h));
  return s;
}

const char* to_string(WilcoxonMethod method) {
  switch (method) {
    case WilcoxonMethod::Auto: return "auto";
    case WilcoxonMethod::Exact: return "exact";
    case WilcoxonMethod::Asymptotic: return "asymptotic";
  }
  return "?";
}

const char* to_string(TieBreak ties) {
  switch (ties) {
    case TieBreak::Expected: return "expected";
    case TieBreak::Pessimistic: return "pessimistic";
    case TieBreak::Optimistic: return "optimistic";
  }
  return "?";
}

}  // namespace kvprime::stats
