// Statistics of the experiment runner: one condition against the baseline, multiple-comparison
// correction across conditions, and ranking metrics over candidate passages.
//
// Plain C++ on std::vector<double>; no LibTorch. Conventions (each function says more):
// - Paired data come as (baseline, condition), one value per sample, in the same sample order.
//   delta = condition - baseline (ΔNLL): NEGATIVE means the condition HELPS (lower answer NLL).
//   "benefit" = -delta = baseline - condition; "difficulty" = the baseline (bare) NLL.
// - Every input must be finite: NaN or ±inf is an Error naming the argument and the index.
//   Sizes that make a statistic meaningless (mismatched lengths, n too small) are Errors too.
// - A statistic that the data leave undefined (zero variance, constant input, no non-zero
//   difference) is NaN, and `undefined` says why; it never throws and is never silently 0 or 1.
// - Reference: scipy (>= 1.15 for the Wilcoxon 'auto' rule) and numpy; each function names the
//   scipy call it agrees with. tools/stats_reference.py writes tests/fixtures/stats/reference.json.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace kvprime::stats {

// ---------------------------------------------------------------------------------------------
// Descriptive statistics

// Arithmetic mean (compensated summation). n >= 1.
double mean(const std::vector<double>& x);
// Sample standard deviation, ddof = 1 (numpy std(x, ddof=1)), two-pass. n >= 2.
double sample_sd(const std::vector<double>& x);
// Ranks 1..n with ties given their average rank (scipy.stats.rankdata(x, 'average')).
std::vector<double> average_ranks(const std::vector<double>& x);

// ---------------------------------------------------------------------------------------------
// Bootstrap

// A uniform index in [0, n) from one or more draws of the engine, by rejection: a draw u is kept
// iff u >= 2^64 mod n, and the index is u mod n. Unlike std::uniform_int_distribution (whose
// algorithm is implementation-defined) this gives the same indices with every standard library,
// so a seed reproduces a bootstrap everywhere (tools/stats_reference.py mirrors it in Python).
uint64_t uniform_index(std::mt19937_64& rng, uint64_t n);

// Sample quantile with linear interpolation between order statistics (Hyndman-Fan type 7,
// numpy.quantile's default 'linear'): h = (n - 1) q, x[floor h] + (h - floor h)(x[floor h + 1] -
// x[floor h]). `sorted` must be sorted ascending; q in [0, 1].
double quantile_sorted(const std::vector<double>& sorted, double q);

struct BootstrapCI {
  double lower = 0;       // quantile (1 - confidence) / 2 of the resampled means
  double upper = 0;       // quantile (1 + confidence) / 2 of the resampled means
  double confidence = 0;  // e.g. 0.95
  int64_t resamples = 0;
  uint64_t seed = 0;
};

// Percentile bootstrap confidence interval of the mean of x. Resample b (b = 0..resamples-1)
// draws n indices with uniform_index from ONE std::mt19937_64(seed) (resample after resample,
// index after index), sums the drawn values in draw order and divides by n; the interval is the
// quantile_sorted of the sorted means at (1 - confidence) / 2 and 1 - (1 - confidence) / 2.
// Deterministic for a given (x, resamples, confidence, seed). n >= 1, resamples >= 2,
// 0 < confidence < 1. (scipy.stats.bootstrap(method='percentile') computes the same interval
// with another random stream.)
BootstrapCI bootstrap_mean_ci(const std::vector<double>& x, int64_t resamples = 10000,
                              double confidence = 0.95, uint64_t seed = 0);

// ---------------------------------------------------------------------------------------------
// Tests (all two-sided)

struct TTest {
  int64_t n = 0;
  double mean = 0;      // mean of the differences
  double t = 0;         // mean / (sd / sqrt(n))
  double df = 0;        // n - 1
  double p = 0;         // 2 * P(T_df >= |t|)
  double p_bonferroni;  // filled by adjust_p_values (NaN until then)
  double p_holm;        //   "
  std::string undefined;  // non-empty (and t, p NaN) when the differences have zero variance
  TTest();
};

// One-sample t-test of the differences against 0 (scipy.stats.ttest_1samp(d, 0)). n >= 2.
// All differences equal: the t statistic is 0/0 or x/0; scipy then returns NaN (or ±inf and
// p = 0 for a constant non-zero difference). kvprime reports t = p = NaN and says so in
// `undefined`: with zero sample variance the test has no information to weigh.
TTest t_test_one_sample(const std::vector<double>& d);
// Paired t-test of condition - baseline (scipy.stats.ttest_rel(condition, baseline)). n >= 2.
TTest t_test_paired(const std::vector<double>& baseline, const std::vector<double>& condition);

enum class WilcoxonMethod {
  // scipy >= 1.15's method='auto' (scipy/stats/_wilcoxon.py), with N = len(d) counting zeros:
  //   N > 50                           -> Asymptotic
  //   no zero and no tie among |d|     -> Exact (the classic null distribution)
  //   zeros or ties, N <= 13           -> Exact (= scipy's exhaustive permutation test, 2^N signs)
  //   zeros or ties, 13 < N <= 50      -> Asymptotic
  Auto,
  // Exact null distribution of R+ given the observed ranks: each non-zero difference's (average)
  // rank is added with probability 1/2. Without ties this is the classic Wilcoxon distribution
  // (scipy method='exact'); with ties it is the exact conditional (permutation) distribution,
  // which scipy computes as permutation_test over all sign flips. Limited to 200 non-zero
  // differences (the distribution is tabulated: O(m^3)).
  Exact,
  // Normal approximation: z = (R+ - m(m+1)/4) / sqrt((m(m+1)(2m+1) - sum(t^3 - t)/2) / 24),
  // t = sizes of the groups of tied |d| (scipy method='asymptotic', 'approx' before 1.15).
  Asymptotic,
};

struct WilcoxonTest {
  int64_t n = 0;          // all differences
  int64_t n_zero = 0;     // dropped (scipy zero_method='wilcox')
  int64_t n_used = 0;     // m = n - n_zero: ranked
  bool has_ties = false;  // ties among the non-zero |d|
  double r_plus = 0;      // sum of the ranks of the positive differences
  double r_minus = 0;     // sum of the ranks of the negative differences
  double statistic = 0;   // min(r_plus, r_minus): what scipy reports as `statistic`
  WilcoxonMethod method = WilcoxonMethod::Exact;  // the one used (never Auto)
  bool continuity_correction = false;
  double z = 0;           // NaN unless Asymptotic; sign of R+ - mean
  double p = 0;
  double p_bonferroni;    // filled by adjust_p_values (NaN until then)
  double p_holm;
  std::string undefined;  // non-empty (p NaN) when every difference is zero
  WilcoxonTest();
};

// Wilcoxon signed-rank test of the differences d against a distribution symmetric about 0,
// two-sided, as scipy.stats.wilcoxon(d) with its defaults (zero_method='wilcox': zeros dropped
// before ranking; correction=False; method='auto' of scipy >= 1.15, see WilcoxonMethod).
// Exact p = min(1, 2 min(P(R+ <= r+), P(R+ >= r+))); asymptotic p = 2 P(Z >= |z|), where with
// continuity_correction |R+ - mean| is reduced by 1/2. n >= 1 (all zeros: p NaN, `undefined`).
WilcoxonTest wilcoxon_signed_rank(const std::vector<double>& d,
                                  WilcoxonMethod method = WilcoxonMethod::Auto,
                                  bool continuity_correction = false);
// The same on condition - baseline.
WilcoxonTest wilcoxon_paired(const std::vector<double>& baseline,
                             const std::vector<double>& condition,
                             WilcoxonMethod method = WilcoxonMethod::Auto,
                             bool continuity_correction = false);

struct Correlation {
  int64_t n = 0;
  double r = 0;  // Pearson r (of the values, or of their average ranks for Spearman)
  double p = 0;  // two-sided, H0: no correlation; t = r sqrt((n-2)/(1-r^2)) on n-2 df
  std::string undefined;  // non-empty (r, p NaN) when x or y is constant
};

// Pearson's r and its p-value (scipy.stats.pearsonr; p = 2 I_{(1-|r|)/2}(n/2-1, n/2-1), the
// same as the Student t form). n >= 3.
Correlation pearson(const std::vector<double>& x, const std::vector<double>& y);
// Spearman's rho = Pearson's r of the average ranks, p from Student t on n-2 df
// (scipy.stats.spearmanr). n >= 3.
Correlation spearman(const std::vector<double>& x, const std::vector<double>& y);

// ---------------------------------------------------------------------------------------------
// Multiple comparisons. p-values must lie in [0, 1]; NaN entries (undefined tests) are not
// tests: they stay NaN and do not count in the family size m.

// min(1, m p) (statsmodels multipletests 'bonferroni', R p.adjust "bonferroni").
std::vector<double> bonferroni(const std::vector<double>& p);
// Holm's step-down: with p(1) <= ... <= p(m), adjusted p(i) = min(1, max_{j<=i} (m-j+1) p(j)),
// returned in the input order (statsmodels 'holm', R p.adjust "holm").
std::vector<double> holm(const std::vector<double>& p);

// ---------------------------------------------------------------------------------------------
// One condition against the baseline

struct PairedOptions {
  int64_t bootstrap_resamples = 10000;
  double confidence = 0.95;
  uint64_t seed = 0;  // bootstrap stream
  WilcoxonMethod wilcoxon_method = WilcoxonMethod::Auto;
};

struct PairedComparison {
  int64_t n = 0;
  double mean_baseline = 0;   // mean NLL of the baseline
  double mean_condition = 0;  // mean NLL of the condition
  double mean_delta = 0;      // mean of condition - baseline (< 0: the condition helps)
  double sd_delta = 0;        // sample sd (ddof 1) of the deltas
  BootstrapCI delta_ci;       // percentile bootstrap CI of mean_delta
  // Paired Cohen's d (d_z) = mean_delta / sd_delta; negative = helps. NaN when sd_delta == 0.
  double cohens_d = 0;
  double win_rate = 0;   // fraction of samples with delta < 0 (the condition lowers the NLL)
  double tie_rate = 0;   // fraction with delta == 0 exactly
  double loss_rate = 0;  // fraction with delta > 0
  TTest t_test;          // paired t-test
  WilcoxonTest wilcoxon; // Wilcoxon signed-rank test of the deltas
  // Does the benefit grow with difficulty? Correlation of benefit = baseline - condition with
  // difficulty = baseline NLL (positive r: harder samples gain more). Needs n >= 3 (else NaN with
  // `undefined`). Beware: benefit shares the baseline's noise, which alone makes r positive
  // (regression to the mean); compare against a control condition rather than against 0.
  Correlation benefit_vs_difficulty_pearson;
  Correlation benefit_vs_difficulty_spearman;
};

// All of the above for one condition; n >= 2.
PairedComparison compare_paired(const std::vector<double>& baseline,
                                const std::vector<double>& condition,
                                const PairedOptions& options = {});

// Fills p_bonferroni and p_holm of the t-tests (one family: these comparisons) and, separately,
// of the Wilcoxon tests (a second family).
void adjust_p_values(std::vector<PairedComparison>& comparisons);

// ---------------------------------------------------------------------------------------------
// Ranking: for each query, the scores of its candidate passages and which one is relevant.
// LOWER score = better (answer NLL, or PMI = NLL - NLL with a BOS-only cache). At least one
// irrelevant candidate. Rank of the relevant one = 1 + (# candidates scoring strictly better),
// with ties among scores broken as TieBreak says.

enum class TieBreak {
  Expected,     // uniformly at random: the metric's expectation (consistent with AUC's 1/2)
  Pessimistic,  // tied candidates rank before the relevant one
  Optimistic,   // the relevant one ranks before those tied with it
};

struct RankingQuery {
  std::vector<double> scores;  // one per candidate; lower = better
  int64_t relevant = 0;        // index into scores
};

// Fraction of irrelevant candidates the relevant one beats (scores strictly lower), ties 1/2:
// the probability that it outranks a random irrelevant candidate (ROC AUC of one query).
double ranking_auc(const RankingQuery& query);
// 1 / rank if rank <= cutoff, else 0 (expected over tie-breaks with TieBreak::Expected).
double reciprocal_rank(const RankingQuery& query, int64_t cutoff = 10,
                       TieBreak ties = TieBreak::Expected);
// 1 if rank <= k, else 0 (probability over tie-breaks with TieBreak::Expected).
double hit_at_k(const RankingQuery& query, int64_t k, TieBreak ties = TieBreak::Expected);

struct RankingSummary {
  int64_t n_queries = 0;
  double auc = 0;         // mean over queries of ranking_auc (each query weighs the same)
  int64_t mrr_cutoff = 10;
  double mrr = 0;         // mean reciprocal_rank at mrr_cutoff (MRR@10 by default)
  std::vector<int64_t> ks;
  std::vector<double> hit_at_k;  // mean hit_at_k, one per ks[i]
};

RankingSummary summarize_ranking(const std::vector<RankingQuery>& queries,
                                 const std::vector<int64_t>& ks = {1, 3, 5, 10},
                                 int64_t mrr_cutoff = 10, TieBreak ties = TieBreak::Expected);

const char* to_string(WilcoxonMethod method);
const char* to_string(TieBreak ties);

}  // namespace kvprime::stats
