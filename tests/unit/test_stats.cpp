// Statistics (src/analysis/stats.cpp) against values computed independently of it:
// - published numbers (R's `sleep` t-test, the Hollander & Wolfe and Darwin Wilcoxon examples in
//   R's and scipy's documentation, Anscombe's r),
// - closed forms (Student t CDF for 1 and 2 degrees of freedom, Spearman's 1 - 6 sum d^2 / ...),
// - brute force inside the test (Wilcoxon null distributions by enumerating all 2^n sign
//   patterns, Student t tails by Simpson integration of the density, AUC by counting pairs,
//   MRR / Hit@k by enumerating every tie-breaking order),
// - properties (p in [0, 1], symmetry, Holm's bounds and monotonicity, bootstrap determinism,
//   coverage and narrowing with n).
// The scipy cross-check on generated data is test_stats_reference.cpp.
//
// Tolerances: 1e-12 relative for closed forms and exact enumerations (they differ from the code
// only by summation order); 1e-10 for p-values against numerical integration; published numbers
// to the digits they are published with.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <random>
#include <vector>

#include "kvprime/analysis/stats.h"
#include "kvprime/core/error.h"

namespace ks = kvprime::stats;
using Vec = std::vector<double>;

namespace {

constexpr double kPi = 3.14159265358979323846;

void expect_rel(double actual, double expected, double rel, const char* what) {
  const double scale = std::max(std::fabs(expected), 1e-300);
  EXPECT_LE(std::fabs(actual - expected) / scale, rel)
      << what << ": actual " << actual << " expected " << expected;
}

// Throws kvprime::Error whose message contains `needle`.
template <typename F>
void expect_error(F f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "expected kvprime::Error containing '" << needle << "'";
  } catch (const kvprime::Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

// 2 P(T_df >= |t|) by Simpson's rule on the density over [0, |t|] (long double).
double t_two_sided_by_integration(double t, double df) {
  const long double nu = df;
  const long double c = std::exp(std::lgamma((df + 1) / 2) - std::lgamma(df / 2)) /
                        std::sqrt(nu * static_cast<long double>(kPi));
  auto f = [&](long double x) { return c * std::pow(1 + x * x / nu, -(nu + 1) / 2); };
  const int n = 200000;
  const long double b = std::fabs(t), h = b / n;
  long double s = f(0) + f(b);
  for (int i = 1; i < n; ++i) s += f(i * h) * (i % 2 ? 4 : 2);
  return static_cast<double>(1 - 2 * s * h / 3);
}

double normal_two_sided(double z) { return std::erfc(std::fabs(z) / std::sqrt(2.0)); }

// Exact two-sided signed-rank p by enumerating every sign pattern of the non-zero differences,
// ranks averaged over ties among |d| (zeros dropped first).
double wilcoxon_p_by_enumeration(const Vec& d) {
  Vec nz;
  for (double v : d)
    if (v != 0) nz.push_back(v);
  const size_t m = nz.size();
  Vec ranks(m);
  for (size_t i = 0; i < m; ++i) {
    double less = 0, equal = 0;
    for (size_t j = 0; j < m; ++j) {
      less += std::fabs(nz[j]) < std::fabs(nz[i]);
      equal += std::fabs(nz[j]) == std::fabs(nz[i]);
    }
    ranks[i] = less + (equal + 1) / 2;  // average of ranks less+1 .. less+equal
  }
  double observed = 0;
  for (size_t i = 0; i < m; ++i)
    if (nz[i] > 0) observed += ranks[i];
  double le = 0, ge = 0;
  const uint64_t patterns = uint64_t{1} << m;
  for (uint64_t s = 0; s < patterns; ++s) {
    double r = 0;
    for (size_t i = 0; i < m; ++i)
      if (s >> i & 1) r += ranks[i];
    le += r <= observed;
    ge += r >= observed;
  }
  return std::min(1.0, 2 * std::min(le, ge) / static_cast<double>(patterns));
}

Vec random_vec(std::mt19937_64& g, size_t n, double mu = 0, double sd = 1) {
  std::normal_distribution<double> nd(mu, sd);  // only test data: any library's stream is fine
  Vec v(n);
  for (auto& x : v) x = nd(g);
  return v;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Descriptive

TEST(Stats, MeanAndSampleSdByHand) {
  const Vec x = {2, 4, 4, 4, 5, 5, 7, 9};  // mean 5, sum of squares 32
  EXPECT_EQ(ks::mean(x), 5.0);
  expect_rel(ks::sample_sd(x), std::sqrt(32.0 / 7.0), 1e-15, "sd");
  EXPECT_EQ(ks::sample_sd({3.25, 3.25, 3.25}), 0.0);
  expect_error([] { ks::mean({}); }, "mean: x has 0 value(s)");
  expect_error([] { ks::sample_sd({1.0}); }, "needs at least 2");
  expect_error([] { ks::mean({1.0, NAN}); }, "x[1] is nan");
  expect_error([] { ks::mean({1.0, INFINITY}); }, "x[1] is inf");
}

TEST(Stats, AverageRanks) {
  EXPECT_EQ(ks::average_ranks({10, 20, 20, 30, 20}), (Vec{1, 3, 3, 5, 3}));
  EXPECT_EQ(ks::average_ranks({3, 1, 2}), (Vec{3, 1, 2}));
  EXPECT_EQ(ks::average_ranks({7, 7}), (Vec{1.5, 1.5}));
}

// ---------------------------------------------------------------------------------------------
// Random stream and bootstrap

TEST(Stats, EngineIsTheStandardMt19937_64) {
  // C++ [rand.predef]: the 10000th draw of a default-constructed mt19937_64.
  std::mt19937_64 rng;
  rng.discard(9999);
  EXPECT_EQ(rng(), 9981545732273789042ULL);
}

TEST(Stats, UniformIndexIsPortableAndUniform) {
  // Golden indices from tools/stats_reference.py's pure-Python mirror (MT19937_64 + rejection).
  std::mt19937_64 rng(42);
  std::vector<uint64_t> got;
  for (int i = 0; i < 10; ++i) got.push_back(ks::uniform_index(rng, 10));
  EXPECT_EQ(got, (std::vector<uint64_t>{6, 4, 0, 2, 1, 8, 6, 4, 0, 7}));
  std::mt19937_64 rng3(42);
  got.clear();
  for (int i = 0; i < 10; ++i) got.push_back(ks::uniform_index(rng3, 3));
  EXPECT_EQ(got, (std::vector<uint64_t>{0, 2, 1, 0, 2, 2, 1, 0, 1, 1}));
  // the rule itself: reject u < 2^64 mod n, else u mod n
  std::mt19937_64 a(7), b(7);
  for (uint64_t n : {1ULL, 2ULL, 3ULL, 10ULL, 1000003ULL, (1ULL << 63) + 1}) {
    const uint64_t threshold = (0 - n) % n;
    uint64_t u;
    do u = b(); while (u < threshold);
    EXPECT_EQ(ks::uniform_index(a, n), u % n) << "n = " << n;
  }
  // chi-square over 7 cells, 70000 draws: 6 df, 22.46 is the 0.999 quantile
  std::mt19937_64 c(123);
  std::vector<int> counts(7, 0);
  for (int i = 0; i < 70000; ++i) ++counts[ks::uniform_index(c, 7)];
  double chi2 = 0;
  for (int k : counts) chi2 += (k - 10000.0) * (k - 10000.0) / 10000.0;
  EXPECT_LT(chi2, 22.46);
}

TEST(Stats, QuantileType7) {
  const Vec s = {1, 2, 3, 4};
  EXPECT_EQ(ks::quantile_sorted(s, 0), 1);
  EXPECT_EQ(ks::quantile_sorted(s, 1), 4);
  EXPECT_DOUBLE_EQ(ks::quantile_sorted(s, 0.5), 2.5);
  EXPECT_DOUBLE_EQ(ks::quantile_sorted(s, 0.25), 1.75);  // h = 0.75
  EXPECT_DOUBLE_EQ(ks::quantile_sorted({5}, 0.3), 5);
  expect_error([] { ks::quantile_sorted({1, 2}, 1.5); }, "outside [0, 1]");
}

TEST(Stats, BootstrapMatchesThePythonMirror) {
  // tools/stats_reference.py bootstrap_mirror([sqrt(i) for i in 1..15], 999, 0.9, 2024)
  Vec x;
  for (int i = 1; i <= 15; ++i) x.push_back(std::sqrt(static_cast<double>(i)));
  const auto ci = ks::bootstrap_mean_ci(x, 999, 0.9, 2024);
  expect_rel(ci.lower, 2.3419695301671792, 1e-14, "lower");
  expect_rel(ci.upper, 3.0603533274948256, 1e-14, "upper");
  EXPECT_EQ(ci.resamples, 999);
  EXPECT_EQ(ci.seed, 2024u);
}

TEST(Stats, BootstrapProperties) {
  std::mt19937_64 g(5);
  const Vec x = random_vec(g, 40, 1.0, 2.0);
  const auto a = ks::bootstrap_mean_ci(x, 2000, 0.95, 17);
  const auto b = ks::bootstrap_mean_ci(x, 2000, 0.95, 17);
  const auto c = ks::bootstrap_mean_ci(x, 2000, 0.95, 18);
  EXPECT_EQ(a.lower, b.lower);  // deterministic by seed
  EXPECT_EQ(a.upper, b.upper);
  EXPECT_NE(a.lower, c.lower);  // and the seed matters
  const double m = ks::mean(x);
  EXPECT_LT(a.lower, m);
  EXPECT_GT(a.upper, m);
  // a higher confidence gives a wider interval from the same resamples
  const auto w = ks::bootstrap_mean_ci(x, 2000, 0.99, 17);
  EXPECT_LE(w.lower, a.lower);
  EXPECT_GE(w.upper, a.upper);
  // narrows like 1/sqrt(n): 16x the data, about a quarter of the width
  const Vec big = random_vec(g, 640, 1.0, 2.0);
  const auto wide = ks::bootstrap_mean_ci(Vec(big.begin(), big.begin() + 40), 2000, 0.95, 1);
  const auto narrow = ks::bootstrap_mean_ci(big, 2000, 0.95, 1);
  const double ratio = (narrow.upper - narrow.lower) / (wide.upper - wide.lower);
  EXPECT_GT(ratio, 0.15);
  EXPECT_LT(ratio, 0.40);
  // close to the normal-theory interval mean +- 1.96 sd / sqrt(n) for n = 640
  const double half = 1.959963984540054 * ks::sample_sd(big) / std::sqrt(640.0);
  expect_rel(narrow.upper - narrow.lower, 2 * half, 0.08, "width vs normal theory");
  // degenerate data: a point
  const auto point = ks::bootstrap_mean_ci({2.5, 2.5, 2.5}, 100, 0.95, 0);
  EXPECT_EQ(point.lower, 2.5);
  EXPECT_EQ(point.upper, 2.5);
  // {0, 1}: resampled means are 0, 1/2, 1 with probability 1/4, 1/2, 1/4, so the 2.5% and
  // 97.5% quantiles are 0 and 1
  const auto two = ks::bootstrap_mean_ci({0.0, 1.0}, 20000, 0.95, 1);
  EXPECT_EQ(two.lower, 0.0);
  EXPECT_EQ(two.upper, 1.0);
}

TEST(Stats, BootstrapErrors) {
  expect_error([] { ks::bootstrap_mean_ci({}, 100, 0.95, 0); }, "nothing to resample");
  expect_error([] { ks::bootstrap_mean_ci({1, 2}, 1, 0.95, 0); }, "resamples = 1");
  expect_error([] { ks::bootstrap_mean_ci({1, 2}, 100, 1.0, 0); }, "confidence = 1");
  expect_error([] { ks::bootstrap_mean_ci({1, NAN}, 100, 0.95, 0); }, "x[1] is nan");
}

// ---------------------------------------------------------------------------------------------
// t-test

TEST(Stats, PairedTTestSleepDataAsPublished) {
  // R: t.test(extra ~ group, data = sleep, paired = TRUE) (group 1 - group 2):
  // t = -4.0621, df = 9, p-value = 0.002833, mean difference -1.58.
  const Vec g1 = {0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0};
  const Vec g2 = {1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4};
  const auto t = ks::t_test_paired(g2, g1);  // delta = condition - baseline = g1 - g2
  EXPECT_NEAR(t.t, -4.0621, 5e-5);
  EXPECT_EQ(t.df, 9);
  EXPECT_NEAR(t.p, 0.002833, 5e-7);
  EXPECT_NEAR(t.mean, -1.58, 1e-12);
  EXPECT_TRUE(t.undefined.empty());
  expect_rel(t.p, t_two_sided_by_integration(t.t, 9), 1e-10, "p vs integration");
  // swapping the roles flips t, keeps p
  const auto s = ks::t_test_paired(g1, g2);
  EXPECT_DOUBLE_EQ(s.t, -t.t);
  EXPECT_DOUBLE_EQ(s.p, t.p);
}

TEST(Stats, TTestAgainstClosedFormCdf) {
  // df = 1 (Cauchy): p = 1 - (2/pi) atan|t|. d = {1, 3}: mean 2, sd sqrt 2, t = 2.
  auto t1 = ks::t_test_one_sample({1, 3});
  expect_rel(t1.t, 2.0, 1e-15, "t df1");
  expect_rel(t1.p, 1 - 2 / kPi * std::atan(2.0), 1e-12, "p df1");
  // df = 2: p = 1 - |t| / sqrt(2 + t^2). d = {1, 2, 4}: t = sqrt 7.
  auto t2 = ks::t_test_one_sample({1, 2, 4});
  expect_rel(t2.t, std::sqrt(7.0), 1e-14, "t df2");
  expect_rel(t2.p, 1 - std::sqrt(7.0) / 3, 1e-12, "p df2");
  // larger df, against numerical integration of the density
  std::mt19937_64 g(9);
  for (size_t n : {5, 12, 30, 100}) {
    const auto t = ks::t_test_one_sample(random_vec(g, n, 0.3, 1.0));
    expect_rel(t.p, t_two_sided_by_integration(t.t, static_cast<double>(n - 1)), 1e-10,
               "p vs integration");
    EXPECT_GE(t.p, 0);
    EXPECT_LE(t.p, 1);
  }
}

TEST(Stats, TTestZeroVarianceIsUndefinedNotAnError) {
  for (const Vec& d : {Vec{0, 0, 0}, Vec{0.5, 0.5, 0.5, 0.5}}) {
    const auto t = ks::t_test_one_sample(d);
    EXPECT_TRUE(std::isnan(t.t));
    EXPECT_TRUE(std::isnan(t.p));
    EXPECT_NE(t.undefined.find("zero variance"), std::string::npos);
  }
}

TEST(Stats, TTestErrors) {
  expect_error([] { ks::t_test_paired({1, 2, 3}, {1, 2}); },
               "baseline has 3 values but condition has 2");
  expect_error([] { ks::t_test_paired({1}, {2}); }, "needs at least 2");
  expect_error([] { ks::t_test_paired({1, 2, 3}, {1, 2, NAN}); }, "condition[2] is nan");
  expect_error([] { ks::t_test_one_sample({1}); }, "n - 1 degrees of freedom");
}

// ---------------------------------------------------------------------------------------------
// Wilcoxon signed-rank

TEST(Stats, WilcoxonPublishedExamples) {
  // Hollander & Wolfe (R ?wilcox.test, depression scores): V = 40, one-sided p = 0.01953,
  // so two-sided 2 * 10 / 2^9 = 0.0390625.
  const Vec x = {1.83, 0.50, 1.62, 2.48, 1.68, 1.88, 1.55, 3.06, 1.30};
  const Vec y = {0.878, 0.647, 0.598, 2.05, 1.06, 1.29, 1.06, 3.14, 1.29};
  const auto w = ks::wilcoxon_paired(y, x);  // d = x - y
  EXPECT_EQ(w.r_plus, 40);
  EXPECT_EQ(w.r_minus, 5);
  EXPECT_EQ(w.statistic, 5);
  EXPECT_EQ(w.method, ks::WilcoxonMethod::Exact);
  EXPECT_DOUBLE_EQ(w.p, 0.0390625);
  // Darwin's Zea mays differences (scipy.stats.wilcoxon documentation): statistic 24,
  // p = 0.041259765625 (exact, n = 15).
  const Vec d = {6, 8, 14, 16, 23, 24, 28, 29, 41, -48, 49, 56, 60, -67, 75};
  const auto z = ks::wilcoxon_signed_rank(d);
  EXPECT_EQ(z.statistic, 24);
  EXPECT_EQ(z.p, 0.041259765625);
}

TEST(Stats, WilcoxonExactEqualsEnumeration) {
  std::mt19937_64 g(3);
  for (size_t n = 1; n <= 14; ++n) {
    const Vec d = random_vec(g, n, 0.4, 1.0);  // continuous: no ties, no zeros
    const auto w = ks::wilcoxon_signed_rank(d);
    EXPECT_EQ(w.method, ks::WilcoxonMethod::Exact) << n;
    EXPECT_FALSE(w.has_ties);
    expect_rel(w.p, wilcoxon_p_by_enumeration(d), 1e-15, "exact p");
    // symmetric: negating every difference swaps R+ and R-, keeps p
    Vec neg(d);
    for (auto& v : neg) v = -v;
    const auto wn = ks::wilcoxon_signed_rank(neg);
    EXPECT_EQ(wn.r_plus, w.r_minus);
    EXPECT_EQ(wn.p, w.p);
  }
}

TEST(Stats, WilcoxonTiesAndZerosSmallNIsTheExactPermutationTest) {
  // scipy >= 1.15, method 'auto' with zeros or ties and n <= 13: permutation test over all sign
  // flips, i.e. the exact conditional distribution of R+ given the average ranks.
  const std::vector<Vec> cases = {
      {0.5, -0.5, 1.0, 1.0, 2.0, 0.0, -1.5, 0.5, 3.0},
      {1, 1, 1, -1, 2, 2, -3, 0, 0, 4, 5, -5, 6},
      {0.2, 0.2, 0.2, 0.2},
      {0, 0, 1},
  };
  for (const auto& d : cases) {
    const auto w = ks::wilcoxon_signed_rank(d);
    EXPECT_EQ(w.method, ks::WilcoxonMethod::Exact);
    expect_rel(w.p, wilcoxon_p_by_enumeration(d), 1e-15, "conditional exact p");
    EXPECT_LE(w.p, 1.0);
  }
  const auto w = ks::wilcoxon_signed_rank(cases[1]);
  EXPECT_EQ(w.n, 13);
  EXPECT_EQ(w.n_zero, 2);
  EXPECT_EQ(w.n_used, 11);
  EXPECT_TRUE(w.has_ties);
  EXPECT_EQ(w.r_plus + w.r_minus, 11 * 12 / 2);
}

TEST(Stats, WilcoxonAsymptoticByHand) {
  // normal approximation with the tie correction, computed here from its definition
  auto by_hand = [](const Vec& d, bool correction) {
    Vec nz;
    for (double v : d)
      if (v != 0) nz.push_back(v);
    Vec a(nz.size());
    for (size_t i = 0; i < nz.size(); ++i) a[i] = std::fabs(nz[i]);
    const Vec r = ks::average_ranks(a);
    double rp = 0;
    for (size_t i = 0; i < nz.size(); ++i)
      if (nz[i] > 0) rp += r[i];
    std::map<double, int> groups;
    for (double v : a) ++groups[v];
    double tie = 0;
    for (auto& [v, t] : groups) tie += double(t) * t * t - t;
    const double m = static_cast<double>(nz.size());
    const double se = std::sqrt((m * (m + 1) * (2 * m + 1) - tie / 2) / 24);
    double z = (rp - m * (m + 1) / 4) / se;
    if (correction) z = z > 0 ? z - 0.5 / se : z + 0.5 / se;
    return normal_two_sided(z);
  };
  std::mt19937_64 g(4);
  // n = 60 (> 50): asymptotic even without ties
  Vec d60 = random_vec(g, 60, 0.2, 1.0);
  auto w = ks::wilcoxon_signed_rank(d60);
  EXPECT_EQ(w.method, ks::WilcoxonMethod::Asymptotic);
  expect_rel(w.p, by_hand(d60, false), 1e-12, "n60");
  expect_rel(ks::wilcoxon_signed_rank(d60, ks::WilcoxonMethod::Auto, true).p, by_hand(d60, true),
             1e-12, "n60 corrected");
  // n = 30 with ties and zeros: asymptotic with the tie correction
  Vec d30 = random_vec(g, 30, 0.2, 1.0);
  for (auto& v : d30) v = std::round(v * 4) / 4;
  d30[0] = 0;
  w = ks::wilcoxon_signed_rank(d30);
  EXPECT_EQ(w.method, ks::WilcoxonMethod::Asymptotic);
  EXPECT_TRUE(w.has_ties);
  expect_rel(w.p, by_hand(d30, false), 1e-12, "n30 ties");
  EXPECT_FALSE(std::isnan(w.z));
  // the approximation is close to the exact test for n = 40 without ties
  const Vec d40 = random_vec(g, 40, 0.3, 1.0);
  const double exact = ks::wilcoxon_signed_rank(d40, ks::WilcoxonMethod::Exact).p;
  const double approx = ks::wilcoxon_signed_rank(d40, ks::WilcoxonMethod::Asymptotic).p;
  EXPECT_NEAR(approx, exact, 0.01);
}

TEST(Stats, WilcoxonAutoRule) {
  std::mt19937_64 g(8);
  using M = ks::WilcoxonMethod;
  EXPECT_EQ(ks::wilcoxon_signed_rank(random_vec(g, 50)).method, M::Exact);
  EXPECT_EQ(ks::wilcoxon_signed_rank(random_vec(g, 51)).method, M::Asymptotic);
  Vec t13 = random_vec(g, 13), t14 = random_vec(g, 14), z14 = random_vec(g, 14);
  t13[1] = -t13[0];  // a tie in |d|
  t14[1] = t14[0];
  z14[5] = 0;        // a zero
  EXPECT_EQ(ks::wilcoxon_signed_rank(t13).method, M::Exact);
  EXPECT_EQ(ks::wilcoxon_signed_rank(t14).method, M::Asymptotic);
  EXPECT_EQ(ks::wilcoxon_signed_rank(z14).method, M::Asymptotic);
  // exact by request on a tied sample of 16: still the enumeration
  Vec t16 = random_vec(g, 16);
  t16[3] = t16[2];
  expect_rel(ks::wilcoxon_signed_rank(t16, M::Exact).p, wilcoxon_p_by_enumeration(t16), 1e-15,
             "exact by request");
}

TEST(Stats, WilcoxonEdgeCases) {
  const auto w = ks::wilcoxon_signed_rank({0, 0, 0});
  EXPECT_TRUE(std::isnan(w.p));
  EXPECT_NE(w.undefined.find("every difference is zero"), std::string::npos);
  EXPECT_EQ(ks::wilcoxon_signed_rank({2.0}).p, 1.0);  // one difference: p = 2 * 1/2
  std::mt19937_64 g(1);
  expect_error([&] { ks::wilcoxon_signed_rank(random_vec(g, 201), ks::WilcoxonMethod::Exact); },
               "limited to 200");
  expect_error([] { ks::wilcoxon_signed_rank({}); }, "nothing to test");
  expect_error([] { ks::wilcoxon_paired({1, 2}, {1}); }, "baseline has 2 values");
  expect_error([] { ks::wilcoxon_signed_rank({1, NAN}); }, "d[1] is nan");
}

// ---------------------------------------------------------------------------------------------
// Correlation

TEST(Stats, PearsonPublishedAndClosedForm) {
  // Anscombe's quartet, set I: r = 0.816 (as published, 3 digits)
  const Vec x = {10, 8, 13, 9, 11, 14, 6, 4, 12, 7, 5};
  const Vec y = {8.04, 6.95, 7.58, 8.81, 8.33, 9.96, 7.24, 4.26, 10.84, 4.82, 5.68};
  const auto c = ks::pearson(x, y);
  EXPECT_NEAR(c.r, 0.816, 5e-4);
  const double t = c.r * std::sqrt(9 / (1 - c.r * c.r));
  expect_rel(c.p, t_two_sided_by_integration(t, 9), 1e-10, "p vs t integration");
  // r by its definition, in long double
  long double mx = 0, my = 0;
  for (size_t i = 0; i < x.size(); ++i) mx += x[i], my += y[i];
  mx /= x.size(), my /= y.size();
  long double sxy = 0, sxx = 0, syy = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    sxy += (x[i] - mx) * (y[i] - my);
    sxx += (x[i] - mx) * (x[i] - mx);
    syy += (y[i] - my) * (y[i] - my);
  }
  expect_rel(c.r, static_cast<double>(sxy / std::sqrt(sxx * syy)), 1e-14, "r");
  // n = 3 (1 df) and n = 4 (2 df): p from the closed-form t CDFs
  const auto c3 = ks::pearson({1, 2, 3}, {1, 3, 2});  // r = 0.5
  expect_rel(c3.r, 0.5, 1e-15, "r3");
  const double t3 = 0.5 * std::sqrt(1 / 0.75);
  expect_rel(c3.p, 1 - 2 / kPi * std::atan(t3), 1e-12, "p3");
  const auto c4 = ks::pearson({1, 2, 3, 4}, {2, 1, 4, 3});  // r = 0.6
  expect_rel(c4.r, 0.6, 1e-15, "r4");
  const double t4 = 0.6 * std::sqrt(2 / 0.64);
  expect_rel(c4.p, 1 - t4 / std::sqrt(2 + t4 * t4), 1e-12, "p4");
  // perfect correlation
  const auto one = ks::pearson({1, 2, 3, 4}, {3, 5, 7, 9});
  EXPECT_EQ(one.r, 1.0);
  EXPECT_EQ(one.p, 0.0);
  EXPECT_EQ(ks::pearson({1, 2, 3, 4}, {9, 7, 5, 3}).r, -1.0);
}

TEST(Stats, SpearmanClosedFormAndRankInvariance) {
  // no ties: rho = 1 - 6 sum d_i^2 / (n (n^2 - 1))
  const Vec x = {3.1, 1.2, 5.5, 4.0, 2.2, 9.0, 7.7};
  const Vec y = {2.0, 1.0, 4.5, 6.0, 3.3, 8.8, 5.0};
  const Vec rx = ks::average_ranks(x), ry = ks::average_ranks(y);
  double sd2 = 0;
  for (size_t i = 0; i < x.size(); ++i) sd2 += (rx[i] - ry[i]) * (rx[i] - ry[i]);
  const double n = 7;
  const auto s = ks::spearman(x, y);
  expect_rel(s.r, 1 - 6 * sd2 / (n * (n * n - 1)), 1e-14, "rho");
  const double t = s.r * std::sqrt((n - 2) / (1 - s.r * s.r));
  expect_rel(s.p, t_two_sided_by_integration(t, n - 2), 1e-10, "p");
  // invariant under monotone transforms
  Vec ey(y);
  for (auto& v : ey) v = std::exp(v);
  EXPECT_EQ(ks::spearman(x, ey).r, s.r);
  // with ties: Pearson of the average ranks
  const Vec tx = {1, 2, 2, 3, 4}, ty = {1, 3, 2, 2, 5};
  expect_rel(ks::spearman(tx, ty).r,
             ks::pearson(ks::average_ranks(tx), ks::average_ranks(ty)).r, 1e-15, "ties");
}

TEST(Stats, CorrelationUndefinedAndErrors) {
  const auto c = ks::pearson({1, 1, 1}, {1, 2, 3});
  EXPECT_TRUE(std::isnan(c.r));
  EXPECT_TRUE(std::isnan(c.p));
  EXPECT_NE(c.undefined.find("x is constant"), std::string::npos);
  EXPECT_NE(ks::spearman({1, 2, 3}, {4, 4, 4}).undefined.find("y is constant"),
            std::string::npos);
  expect_error([] { ks::pearson({1, 2}, {1, 2}); }, "needs at least 3");
  expect_error([] { ks::spearman({1, 2, 3}, {1, 2}); }, "x has 3 values but y has 2");
  expect_error([] { ks::pearson({1, 2, 3}, {1, NAN, 2}); }, "y[1] is nan");
}

// ---------------------------------------------------------------------------------------------
// Multiple comparisons

TEST(Stats, HolmAndBonferroniByHand) {
  // sorted: 0.005 (x4 = 0.02), 0.01 (x3 = 0.03), 0.03 (x2 = 0.06), 0.04 (x1 = 0.04 -> 0.06)
  const Vec p = {0.01, 0.04, 0.03, 0.005};
  const Vec h = ks::holm(p), b = ks::bonferroni(p);
  const Vec he = {0.03, 0.06, 0.06, 0.02}, be = {0.04, 0.16, 0.12, 0.02};
  for (size_t i = 0; i < p.size(); ++i) {
    expect_rel(h[i], he[i], 1e-15, "holm");
    expect_rel(b[i], be[i], 1e-15, "bonferroni");
  }
  EXPECT_EQ(ks::holm({0.6, 0.5}), (Vec{1.0, 1.0}));  // capped at 1
  EXPECT_TRUE(ks::holm({}).empty());
}

TEST(Stats, HolmProperties) {
  std::mt19937_64 g(2);
  std::uniform_real_distribution<double> u(0, 0.3);
  for (int rep = 0; rep < 20; ++rep) {
    Vec p(1 + rep % 9);
    for (auto& v : p) v = u(g);
    const Vec h = ks::holm(p), b = ks::bonferroni(p);
    for (size_t i = 0; i < p.size(); ++i) {
      EXPECT_GE(h[i], p[i]);   // never below the raw p
      EXPECT_LE(h[i], b[i]);   // never above Bonferroni
      EXPECT_LE(h[i], 1.0);
      for (size_t j = 0; j < p.size(); ++j)
        if (p[i] <= p[j]) EXPECT_LE(h[i], h[j]);  // keeps the order of the raw p-values
    }
  }
}

TEST(Stats, MultipleComparisonsSkipUndefinedTests) {
  // NaN p (an undefined test) stays NaN and does not count in m
  const Vec p = {0.01, NAN, 0.02};
  const Vec b = ks::bonferroni(p), h = ks::holm(p);
  EXPECT_DOUBLE_EQ(b[0], 0.02);
  EXPECT_TRUE(std::isnan(b[1]));
  EXPECT_DOUBLE_EQ(b[2], 0.04);
  EXPECT_DOUBLE_EQ(h[0], 0.02);
  EXPECT_TRUE(std::isnan(h[1]));
  EXPECT_DOUBLE_EQ(h[2], 0.02);
  expect_error([] { ks::holm({0.1, 1.5}); }, "p[1] = 1.5 is not a probability");
  expect_error([] { ks::bonferroni({-0.1}); }, "p[0] = -0.1");
}

// ---------------------------------------------------------------------------------------------
// One condition against the baseline

TEST(Stats, CompareSleepData) {
  const Vec g1 = {0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0};
  const Vec g2 = {1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4};
  ks::PairedOptions opt;
  opt.bootstrap_resamples = 4000;
  opt.seed = 3;
  const auto c = ks::compare_paired(g2, g1, opt);
  EXPECT_EQ(c.n, 10);
  EXPECT_NEAR(c.mean_baseline, 2.33, 1e-12);
  EXPECT_NEAR(c.mean_condition, 0.75, 1e-12);
  EXPECT_NEAR(c.mean_delta, -1.58, 1e-12);
  // d_z = -1.58 / sd; sd from R: sd(sleep$extra[1:10] - sleep$extra[11:20]) = 1.229995
  EXPECT_NEAR(c.sd_delta, 1.229995, 5e-7);
  expect_rel(c.cohens_d, c.mean_delta / c.sd_delta, 1e-15, "d");
  EXPECT_DOUBLE_EQ(c.win_rate, 0.9);  // nine lower, one equal (-0.1 vs -0.1)
  EXPECT_DOUBLE_EQ(c.tie_rate, 0.1);
  EXPECT_DOUBLE_EQ(c.loss_rate, 0.0);
  EXPECT_NEAR(c.t_test.p, 0.002833, 5e-7);
  EXPECT_LT(c.delta_ci.upper, 0);  // the whole interval is below 0
  EXPECT_LT(c.delta_ci.lower, c.mean_delta);
  EXPECT_GT(c.delta_ci.upper, c.mean_delta);
  EXPECT_EQ(c.wilcoxon.n_zero, 1);
  EXPECT_EQ(c.wilcoxon.method, ks::WilcoxonMethod::Exact);  // zero + n <= 13: enumeration
  Vec d(g1.size());
  for (size_t i = 0; i < d.size(); ++i) d[i] = g1[i] - g2[i];
  EXPECT_DOUBLE_EQ(c.wilcoxon.p, wilcoxon_p_by_enumeration(d));
  EXPECT_TRUE(std::isnan(c.t_test.p_holm));  // until adjust_p_values
}

TEST(Stats, CompareBenefitVersusDifficulty) {
  // condition = 0.6 baseline: benefit = 0.4 baseline grows exactly with difficulty
  const Vec base = {1.0, 2.5, 0.7, 3.2, 1.9, 2.2};
  Vec cond(base);
  for (auto& v : cond) v *= 0.6;
  const auto c = ks::compare_paired(base, cond, {});
  expect_rel(c.benefit_vs_difficulty_pearson.r, 1.0, 1e-14, "pearson");
  EXPECT_EQ(c.benefit_vs_difficulty_spearman.r, 1.0);
  EXPECT_LT(c.benefit_vs_difficulty_pearson.p, 1e-6);
  EXPECT_LT(c.mean_delta, 0);
  EXPECT_EQ(c.win_rate, 1.0);
  // a condition that hurts the easy samples and helps the hard ones
  const Vec cond2 = {1.3, 2.0, 1.0, 2.5, 1.9, 1.8};
  const auto c2 = ks::compare_paired(base, cond2, {});
  EXPECT_GT(c2.benefit_vs_difficulty_spearman.r, 0.8);
}

TEST(Stats, CompareIdenticalConditionIsUndefinedNotAnError) {
  const Vec base = {1.0, 2.0, 3.0, 4.0};
  const auto c = ks::compare_paired(base, base, {});
  EXPECT_EQ(c.mean_delta, 0);
  EXPECT_EQ(c.sd_delta, 0);
  EXPECT_TRUE(std::isnan(c.cohens_d));
  EXPECT_TRUE(std::isnan(c.t_test.p));
  EXPECT_FALSE(c.t_test.undefined.empty());
  EXPECT_TRUE(std::isnan(c.wilcoxon.p));
  EXPECT_FALSE(c.wilcoxon.undefined.empty());
  EXPECT_TRUE(std::isnan(c.benefit_vs_difficulty_pearson.r));  // benefit is constant
  EXPECT_NE(c.benefit_vs_difficulty_pearson.undefined.find("benefit (every delta is the same) is "
                                                           "constant"),
            std::string::npos);
  EXPECT_EQ(c.tie_rate, 1.0);
  EXPECT_EQ(c.delta_ci.lower, 0);
  EXPECT_EQ(c.delta_ci.upper, 0);
  // n = 2: the tests run, the correlations say why they cannot
  const auto two = ks::compare_paired({1.0, 2.0}, {0.5, 1.8}, {});
  EXPECT_FALSE(std::isnan(two.t_test.p));
  EXPECT_NE(two.benefit_vs_difficulty_pearson.undefined.find("n >= 3"), std::string::npos);
  expect_error([] { ks::compare_paired({1.0}, {2.0}, {}); }, "needs at least 2");
  expect_error([] { ks::compare_paired({1.0, 2.0}, {2.0, NAN}, {}); }, "condition[1] is nan");
}

TEST(Stats, AdjustPValuesAcrossConditions) {
  std::mt19937_64 g(12);
  const Vec base = random_vec(g, 30, 2.0, 0.5);
  std::vector<ks::PairedComparison> comps;
  for (double shift : {-0.3, -0.05, 0.0, 0.1}) {
    Vec cond = random_vec(g, 30, 0.0, 0.3);
    for (size_t i = 0; i < cond.size(); ++i) cond[i] += base[i] + shift;
    ks::PairedOptions opt;
    opt.bootstrap_resamples = 200;
    comps.push_back(ks::compare_paired(base, cond, opt));
  }
  comps.push_back(ks::compare_paired(base, base, {}));  // undefined: not in the family
  ks::adjust_p_values(comps);
  Vec pt, pw;
  for (const auto& c : comps) pt.push_back(c.t_test.p), pw.push_back(c.wilcoxon.p);
  const Vec ht = ks::holm(pt), bw = ks::bonferroni(pw);
  for (size_t i = 0; i + 1 < comps.size(); ++i) {
    EXPECT_EQ(comps[i].t_test.p_holm, ht[i]);
    EXPECT_EQ(comps[i].wilcoxon.p_bonferroni, bw[i]);
    EXPECT_DOUBLE_EQ(comps[i].t_test.p_bonferroni, std::min(1.0, 4 * comps[i].t_test.p));
  }
  EXPECT_TRUE(std::isnan(comps.back().t_test.p_holm));
}

// ---------------------------------------------------------------------------------------------
// Ranking

namespace {
// AUC by counting every (relevant, irrelevant) pair.
double auc_by_pairs(const ks::RankingQuery& q) {
  double wins = 0, pairs = 0;
  for (size_t i = 0; i < q.scores.size(); ++i) {
    if (static_cast<int64_t>(i) == q.relevant) continue;
    const double s = q.scores[q.relevant], o = q.scores[i];
    wins += s < o ? 1.0 : s == o ? 0.5 : 0.0;
    pairs += 1;
  }
  return wins / pairs;
}

// Mean over every ordering of the candidates of f(rank of the relevant one) after a stable sort
// by score: each tie-break order is equally likely.
template <typename F>
double over_all_orders(const ks::RankingQuery& q, F f) {
  std::vector<size_t> perm(q.scores.size());
  std::iota(perm.begin(), perm.end(), size_t{0});
  double sum = 0, count = 0;
  do {
    std::vector<size_t> order(perm);
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t a, size_t b) { return q.scores[a] < q.scores[b]; });
    const auto it = std::find(order.begin(), order.end(), static_cast<size_t>(q.relevant));
    sum += f(static_cast<int64_t>(it - order.begin()) + 1);
    count += 1;
  } while (std::next_permutation(perm.begin(), perm.end()));
  return sum / count;
}
}  // namespace

TEST(Stats, RankingByHand) {
  const ks::RankingQuery best{{1.0, 2.0, 3.0}, 0}, worst{{1.0, 2.0, 3.0}, 2};
  EXPECT_EQ(ks::ranking_auc(best), 1.0);
  EXPECT_EQ(ks::reciprocal_rank(best), 1.0);
  EXPECT_EQ(ks::hit_at_k(best, 1), 1.0);
  EXPECT_EQ(ks::ranking_auc(worst), 0.0);
  EXPECT_DOUBLE_EQ(ks::reciprocal_rank(worst), 1.0 / 3);
  EXPECT_EQ(ks::hit_at_k(worst, 2), 0.0);
  EXPECT_EQ(ks::hit_at_k(worst, 3), 1.0);
  // all tied: AUC 1/2; ranks 1, 2, 3 equally likely
  const ks::RankingQuery tied{{1.0, 1.0, 1.0}, 0};
  EXPECT_EQ(ks::ranking_auc(tied), 0.5);
  EXPECT_DOUBLE_EQ(ks::reciprocal_rank(tied), (1.0 + 0.5 + 1.0 / 3) / 3);
  EXPECT_DOUBLE_EQ(ks::reciprocal_rank(tied, 10, ks::TieBreak::Pessimistic), 1.0 / 3);
  EXPECT_EQ(ks::reciprocal_rank(tied, 10, ks::TieBreak::Optimistic), 1.0);
  EXPECT_DOUBLE_EQ(ks::hit_at_k(tied, 2), 2.0 / 3);
  // past the cutoff: 11 candidates better -> rank 12 -> RR@10 = 0
  ks::RankingQuery far{Vec(11, 0.5), 11};
  far.scores.push_back(1.0);
  EXPECT_EQ(ks::reciprocal_rank(far, 10), 0.0);
  EXPECT_DOUBLE_EQ(ks::reciprocal_rank(far, 12), 1.0 / 12);
  // PMI can be negative: lower is still better
  EXPECT_EQ(ks::ranking_auc({{-2.0, -0.5, 0.3}, 0}), 1.0);
}

TEST(Stats, RankingAgainstBruteForce) {
  std::mt19937_64 g(6);
  std::uniform_int_distribution<int> pick(0, 3);
  std::vector<ks::RankingQuery> qs;
  for (int rep = 0; rep < 60; ++rep) {
    ks::RankingQuery q;
    const size_t n = 2 + rep % 6;  // up to 7 candidates: 5040 orders
    for (size_t i = 0; i < n; ++i) q.scores.push_back(pick(g) * 0.5);  // many ties
    q.relevant = static_cast<int64_t>(rep % n);
    qs.push_back(q);
    EXPECT_DOUBLE_EQ(ks::ranking_auc(q), auc_by_pairs(q));
    for (int64_t cutoff : {1, 2, 3, 10}) {
      EXPECT_NEAR(ks::reciprocal_rank(q, cutoff),
                  over_all_orders(q, [&](int64_t r) { return r <= cutoff ? 1.0 / r : 0.0; }),
                  1e-12);  // the brute force sums up to 5040 terms
      EXPECT_NEAR(ks::hit_at_k(q, cutoff),
                  over_all_orders(q, [&](int64_t r) { return r <= cutoff ? 1.0 : 0.0; }), 1e-12);
      EXPECT_LE(ks::hit_at_k(q, cutoff, ks::TieBreak::Pessimistic), ks::hit_at_k(q, cutoff));
      EXPECT_GE(ks::hit_at_k(q, cutoff, ks::TieBreak::Optimistic), ks::hit_at_k(q, cutoff));
    }
  }
  const auto s = ks::summarize_ranking(qs, {1, 3});
  double auc = 0, rr = 0, h3 = 0;
  for (const auto& q : qs) {
    auc += auc_by_pairs(q);
    rr += ks::reciprocal_rank(q, 10);
    h3 += ks::hit_at_k(q, 3);
  }
  EXPECT_EQ(s.n_queries, 60);
  EXPECT_NEAR(s.auc, auc / 60, 1e-14);
  EXPECT_NEAR(s.mrr, rr / 60, 1e-14);
  EXPECT_NEAR(s.hit_at_k[1], h3 / 60, 1e-14);
  EXPECT_EQ(s.ks, (std::vector<int64_t>{1, 3}));
}

TEST(Stats, RankingErrors) {
  expect_error([] { ks::ranking_auc({{1.0}, 0}); }, "at least one irrelevant");
  expect_error([] { ks::ranking_auc({{1.0, 2.0}, 2}); }, "relevant = 2 is not an index");
  expect_error([] { ks::hit_at_k({{1.0, 2.0}, 0}, 0); }, "k = 0");
  expect_error([] { ks::reciprocal_rank({{1.0, NAN}, 0}); }, "scores[1] is nan");
  expect_error([] { ks::summarize_ranking({}); }, "no queries");
}
