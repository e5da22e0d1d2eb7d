// Statistics against scipy/numpy on generated data: tests/fixtures/stats/reference.json, written by
// tools/stats_reference.py (see tools/README.md). Skipped, saying so, when the file is absent; the
// always-on checks are in test_stats.cpp.
//
// Tolerances (relative unless said otherwise):
//   1e-12  means, sd, Cohen's d, rates, t, r, rho, Holm/Bonferroni: closed forms that differ only
//          in summation order (numpy: pairwise; kvprime: compensated);
//   1e-12  exact Wilcoxon p (both are exact dyadic fractions; scipy sums a float pmf);
//   1e-10  p-values through special functions (Student t, normal, incomplete beta: scipy's and
//          Boost's differ by a few ulps, amplified by the statistic's own rounding);
//   1e-12 of the interval's scale for the bootstrap mirror (same stream, same arithmetic; numpy's
//          quantile computes its interpolation index in another order);
//   10% of the interval's width against scipy.stats.bootstrap (another random stream: a
//          Monte Carlo cross-check of the method, ~5 Monte Carlo standard errors at 10000
//          resamples);
//   1e-12 absolute for ranking metrics (ratios of small integers).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "kvprime/analysis/stats.h"

namespace ks = kvprime::stats;
using nlohmann::json;
using Vec = std::vector<double>;

namespace {

constexpr int kFixtureVersion = 1;

std::string reference_path() {
  return std::string(KVPRIME_FIXTURES_DIR) + "/stats/reference.json";
}

// Largest relative difference seen per quantity, printed after each test (how close, not just
// "within tolerance").
std::map<std::string, double>& max_diffs() {
  static std::map<std::string, double> m;
  return m;
}

class StatsReference : public ::testing::Test {
 protected:
  void TearDown() override {
    for (const auto& [what, diff] : max_diffs())
      std::cout << "  max rel diff " << what << ": " << diff << "\n";
    max_diffs().clear();
  }

  void SetUp() override {
    const std::string path = reference_path();
    if (!std::filesystem::exists(path)) {
      GTEST_SKIP() << path << " is absent: run tools/stats_reference.py where scipy is installed "
                   << "to cross-check against scipy (test_stats.cpp still checks everything "
                   << "against published values, closed forms and enumeration)";
    }
    std::ifstream in(path);
    ref = json::parse(in);
    ASSERT_EQ(ref.at("fixture_version").get<int>(), kFixtureVersion)
        << path << " was written for another version of this test: regenerate it with "
        << "tools/stats_reference.py, or update the test with the generator";
  }
  json ref;
};

void expect_rel(double actual, double expected, double rel, const std::string& what) {
  if (std::isnan(expected)) {
    EXPECT_TRUE(std::isnan(actual)) << what << ": expected NaN, got " << actual;
    return;
  }
  const double scale = std::max(std::fabs(expected), 1e-300);
  const std::string key = what.substr(0, what.find('['));
  max_diffs()[key] = std::max(max_diffs()[key], std::fabs(actual - expected) / scale);
  EXPECT_LE(std::fabs(actual - expected) / scale, rel)
      << what << ": kvprime " << actual << " scipy " << expected << " (rel diff "
      << std::fabs(actual - expected) / scale << ")";
}

}  // namespace

TEST_F(StatsReference, PairedComparisons) {
  for (const auto& c : ref.at("paired")) {
    const std::string name = c.at("name");
    SCOPED_TRACE(name);
    const Vec base = c.at("baseline"), cond = c.at("condition");
    const auto& bs = c.at("bootstrap");
    ks::PairedOptions opt;
    opt.bootstrap_resamples = bs.at("resamples");
    opt.confidence = bs.at("confidence");
    opt.seed = bs.at("seed");
    const auto r = ks::compare_paired(base, cond, opt);
    expect_rel(r.mean_baseline, c.at("mean_baseline"), 1e-12, "mean_baseline");
    expect_rel(r.mean_condition, c.at("mean_condition"), 1e-12, "mean_condition");
    expect_rel(r.mean_delta, c.at("mean_delta"), 1e-12, "mean_delta");
    expect_rel(r.sd_delta, c.at("sd_delta"), 1e-12, "sd_delta");
    expect_rel(r.cohens_d, c.at("cohens_d"), 1e-12, "cohens_d");
    EXPECT_EQ(r.win_rate, c.at("win_rate").get<double>());
    EXPECT_EQ(r.tie_rate, c.at("tie_rate").get<double>());
    EXPECT_EQ(r.loss_rate, c.at("loss_rate").get<double>());
    expect_rel(r.t_test.t, c.at("t"), 1e-12, "t");
    EXPECT_EQ(r.t_test.df, c.at("df").get<double>());
    expect_rel(r.t_test.p, c.at("t_p"), 1e-10, "t-test p");

    const auto& w = c.at("wilcoxon");
    EXPECT_EQ(ks::to_string(r.wilcoxon.method), w.at("method").get<std::string>());
    EXPECT_EQ(r.wilcoxon.n_zero, w.at("n_zero").get<int64_t>());
    EXPECT_EQ(r.wilcoxon.has_ties, w.at("has_ties").get<bool>());
    EXPECT_EQ(r.wilcoxon.statistic, w.at("statistic").get<double>());
    expect_rel(r.wilcoxon.p, w.at("p"),
               r.wilcoxon.method == ks::WilcoxonMethod::Exact ? 1e-12 : 1e-10, "wilcoxon p");
    const Vec d = [&] {
      Vec v(base.size());
      for (size_t i = 0; i < v.size(); ++i) v[i] = cond[i] - base[i];
      return v;
    }();
    expect_rel(ks::wilcoxon_signed_rank(d, ks::WilcoxonMethod::Asymptotic, true).p,
               c.at("wilcoxon_asymptotic_corrected_p"), 1e-10, "wilcoxon asymptotic corrected p");

    expect_rel(r.benefit_vs_difficulty_pearson.r, c.at("pearson_r"), 1e-12, "pearson r");
    expect_rel(r.benefit_vs_difficulty_pearson.p, c.at("pearson_p"), 1e-10, "pearson p");
    expect_rel(r.benefit_vs_difficulty_spearman.r, c.at("spearman_r"), 1e-12, "spearman r");
    expect_rel(r.benefit_vs_difficulty_spearman.p, c.at("spearman_p"), 1e-10, "spearman p");

    const Vec mirror = bs.at("mirror");
    const double scale = std::max(std::fabs(mirror[0]), std::fabs(mirror[1]));
    EXPECT_NEAR(r.delta_ci.lower, mirror[0], 1e-12 * scale) << "bootstrap lower vs the mirror";
    EXPECT_NEAR(r.delta_ci.upper, mirror[1], 1e-12 * scale) << "bootstrap upper vs the mirror";
    const Vec sp = bs.at("scipy");
    const auto ci = ks::bootstrap_mean_ci(d, 10000, opt.confidence, opt.seed);
    const double width = sp[1] - sp[0];
    EXPECT_NEAR(ci.lower, sp[0], 0.1 * width) << "bootstrap lower vs scipy.stats.bootstrap";
    EXPECT_NEAR(ci.upper, sp[1], 0.1 * width) << "bootstrap upper vs scipy.stats.bootstrap";
  }
}

TEST_F(StatsReference, MultipleComparisons) {
  for (const auto& m : ref.at("multiple")) {
    const Vec p = m.at("p"), holm = m.at("holm"), bonf = m.at("bonferroni");
    const Vec h = ks::holm(p), b = ks::bonferroni(p);
    for (size_t i = 0; i < p.size(); ++i) {
      expect_rel(h[i], holm[i], 1e-12, "holm[" + std::to_string(i) + "]");
      expect_rel(b[i], bonf[i], 1e-12, "bonferroni[" + std::to_string(i) + "]");
    }
  }
}

TEST_F(StatsReference, Ranking) {
  const auto& r = ref.at("ranking");
  const auto& summary = r.at("summary");
  const std::vector<int64_t> ks_ = summary.at("ks");
  const int64_t cutoff = summary.at("mrr_cutoff");
  std::vector<ks::RankingQuery> queries;
  for (const auto& q : r.at("queries")) {
    ks::RankingQuery query{q.at("scores").get<Vec>(), q.at("relevant").get<int64_t>()};
    EXPECT_NEAR(ks::ranking_auc(query), q.at("auc").get<double>(), 1e-12);
    for (auto [tie, name] : {std::pair{ks::TieBreak::Expected, "expected"},
                             std::pair{ks::TieBreak::Pessimistic, "pessimistic"},
                             std::pair{ks::TieBreak::Optimistic, "optimistic"}}) {
      const auto& e = q.at(name);
      EXPECT_NEAR(ks::reciprocal_rank(query, cutoff, tie), e.at("rr").get<double>(), 1e-12)
          << name;
      for (size_t i = 0; i < ks_.size(); ++i)
        EXPECT_NEAR(ks::hit_at_k(query, ks_[i], tie), e.at("hit")[i].get<double>(), 1e-12)
            << name << " k=" << ks_[i];
    }
    queries.push_back(std::move(query));
  }
  for (auto [tie, name] : {std::pair{ks::TieBreak::Expected, "expected"},
                           std::pair{ks::TieBreak::Pessimistic, "pessimistic"},
                           std::pair{ks::TieBreak::Optimistic, "optimistic"}}) {
    const auto s = ks::summarize_ranking(queries, ks_, cutoff, tie);
    EXPECT_NEAR(s.auc, summary.at("auc").get<double>(), 1e-12);
    EXPECT_NEAR(s.mrr, summary.at(name).at("mrr").get<double>(), 1e-12) << name;
    for (size_t i = 0; i < ks_.size(); ++i)
      EXPECT_NEAR(s.hit_at_k[i], summary.at(name).at("hit")[i].get<double>(), 1e-12) << name;
  }
}
