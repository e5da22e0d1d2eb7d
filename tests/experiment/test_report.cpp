// The experiment report (src/analysis/report.cpp) on synthetic inputs with known answers:
// - a condition that lowers every NLL by exactly 0.5 (dyadic numbers, so every Δ is exactly
//   -0.5): mean Δ -0.5, CI [-0.5, -0.5], win rate 1, and the undefined statistics (d, t, r) as
//   n/a with their reasons, never as numbers;
// - the statistics of a noisy condition equal stats::compare_paired on the same pairs, and the
//   Holm/Bonferroni columns equal stats::holm/bonferroni over the family;
// - pairing keeps only samples scored under both and reports what it dropped; the report does
//   not depend on the order of the rows;
// - ranking (AUC, MRR@10, Hit@k) on a hand-computed case, by NLL and by PMI;
// - the HTML is balanced (every element we emit is closed, properly nested), self-contained
//   (no script, no external reference) and escapes every name; Markdown escapes them too;
// - CSV: a header and one record per row (per condition), fields with commas/quotes quoted;
// - write_report writes the four files atomically (no temporary left); bad input is an Error
//   naming the field.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <random>
#include <regex>
#include <string>
#include <vector>

#include "kvprime/analysis/report.h"
#include "kvprime/analysis/stats.h"
#include "kvprime/core/error.h"
#include "test_support.h"

namespace ks = kvprime::stats;
using kvprime::build_report;
using kvprime::ReportInput;
using kvprime::ReportRow;
using nlohmann::json;

namespace {

std::string sid(int i) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "s%03d", i);
  return buf;
}

// Baseline NLLs 1 + i/8 (exact in binary) for samples 0..n-1.
double base_nll(int i) { return 1.0 + i / 8.0; }

const json& comparison(const json& summary, const std::string& score, const std::string& cond) {
  for (const auto& c : summary.at("comparisons").at(score))
    if (c.at("condition") == cond) return c;
  throw std::runtime_error("no comparison for " + cond);
}

const json& ranking(const json& summary, const std::string& score, const std::string& cond) {
  for (const auto& r : summary.at("ranking").at(score))
    if (r.at("condition") == cond) return r;
  throw std::runtime_error("no ranking for " + cond);
}

template <typename F>
void expect_error(F f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "expected kvprime::Error containing '" << needle << "'";
  } catch (const kvprime::Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

size_t count(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t pos = text.find(needle); pos != std::string::npos; pos = text.find(needle, pos + 1))
    ++n;
  return n;
}

// Every start tag closed by the matching end tag, in order (a stack), except void elements and
// self-closing ones (<line .../>). Returns "" or what went wrong.
std::string check_balanced(const std::string& html) {
  static const std::regex tag(R"(<(/?)([A-Za-z][A-Za-z0-9]*)([^<>]*)>)");
  std::vector<std::string> stack;
  for (auto it = std::sregex_iterator(html.begin(), html.end(), tag); it != std::sregex_iterator();
       ++it) {
    const std::string closing = (*it)[1], name = (*it)[2], attrs = (*it)[3];
    if (name == "meta" || name == "br") continue;
    if (!attrs.empty() && attrs.back() == '/') continue;
    if (closing.empty()) {
      stack.push_back(name);
    } else {
      if (stack.empty()) return "</" + name + "> without a start tag";
      if (stack.back() != name) return "</" + name + "> closes <" + stack.back() + ">";
      stack.pop_back();
    }
  }
  if (!stack.empty()) return "<" + stack.back() + "> is never closed";
  return "";
}

// RFC 4180 records (quoted fields may hold commas, quotes and line breaks).
std::vector<std::vector<std::string>> parse_csv(const std::string& text) {
  std::vector<std::vector<std::string>> records;
  std::vector<std::string> record;
  std::string field;
  bool quoted = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (quoted) {
      if (c == '"' && i + 1 < text.size() && text[i + 1] == '"') {
        field += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        field += c;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      record.push_back(field);
      field.clear();
    } else if (c == '\n') {
      record.push_back(field);
      field.clear();
      records.push_back(record);
      record.clear();
    } else {
      field += c;
    }
  }
  EXPECT_FALSE(quoted) << "unterminated quoted field";
  EXPECT_TRUE(field.empty() && record.empty()) << "the last line has no newline";
  return records;
}

// bare: 1 + i/8; oracle: bare - 0.5 exactly; noisy: bare + N(0.1, 0.3) (seeded).
ReportInput two_conditions(int n) {
  ReportInput in;
  in.title = "synthetic";
  in.conditions = {"bare", "oracle", "noisy"};
  in.resamples = 2000;
  in.seed = 7;
  std::mt19937_64 rng(3);
  std::normal_distribution<double> noise(0.1, 0.3);
  for (int i = 0; i < n; ++i) {
    in.rows.push_back({sid(i), "bare", base_nll(i), std::nullopt, -1});
    in.rows.push_back({sid(i), "oracle", base_nll(i) - 0.5, std::nullopt, -1});
    in.rows.push_back({sid(i), "noisy", base_nll(i) + noise(rng), std::nullopt, -1});
  }
  return in;
}

}  // namespace

TEST(Report, ConstantShiftHasKnownAnswers) {
  const auto report = build_report(two_conditions(20));
  const json& c = comparison(report.summary, "nll", "oracle");
  EXPECT_EQ(c.at("n"), 20);
  EXPECT_EQ(c.at("only_condition"), 0);
  EXPECT_EQ(c.at("only_baseline"), 0);
  EXPECT_EQ(c.at("mean_delta").get<double>(), -0.5);
  EXPECT_EQ(c.at("ci").at("lower").get<double>(), -0.5);
  EXPECT_EQ(c.at("ci").at("upper").get<double>(), -0.5);
  EXPECT_EQ(c.at("win_rate").get<double>(), 1.0);
  EXPECT_EQ(c.at("loss_rate").get<double>(), 0.0);
  EXPECT_DOUBLE_EQ(c.at("mean_baseline").get<double>(), 1 + 19 / 16.0);
  EXPECT_DOUBLE_EQ(c.at("mean_condition").get<double>(), 0.5 + 19 / 16.0);
  // Zero variance: d, t and the correlations are undefined (null with a reason), the Wilcoxon
  // test is not (all 20 differences negative and tied: the normal approximation).
  EXPECT_TRUE(c.at("cohens_d").is_null());
  EXPECT_FALSE(c.at("cohens_d_undefined").get<std::string>().empty());
  EXPECT_TRUE(c.at("t_test").at("p").is_null());
  EXPECT_TRUE(c.at("t_test").at("p_holm").is_null());
  EXPECT_FALSE(c.at("t_test").at("undefined").get<std::string>().empty());
  EXPECT_EQ(c.at("wilcoxon").at("p").get<double>(),
            ks::wilcoxon_signed_rank(std::vector<double>(20, -0.5)).p);
  EXPECT_TRUE(c.at("benefit_vs_difficulty").at("pearson").at("r").is_null());

  // The tables: the row reads as it should, and every undefined number is n/a with a footnote.
  const std::string& md = report.markdown;
  EXPECT_NE(md.find("| oracle | 20 | 1.6875 | -0.5000 [-0.5000, -0.5000] | n/a[^"),
            std::string::npos)
      << md;
  EXPECT_NE(md.find("100.0%"), std::string::npos);
  EXPECT_NE(md.find("zero variance"), std::string::npos);  // the t-test's reason, as a footnote
  EXPECT_NE(md.find("Cohen's d is undefined"), std::string::npos);
  for (const std::string* text : {&report.markdown, &report.html}) {
    EXPECT_EQ(text->find("nan"), std::string::npos);
    EXPECT_EQ(text->find("inf"), std::string::npos);
  }
  EXPECT_NE(report.html.find("-0.5000 [-0.5000, -0.5000]"), std::string::npos);
  EXPECT_NE(report.html.find("<td class=\"num na\">n/a<sup><a href=\"#note-"), std::string::npos);
  EXPECT_NE(report.html.find("<li id=\"note-1\">"), std::string::npos);
}

TEST(Report, StatisticsMatchTheStatsModuleAndHolmSpansTheComparisons) {
  const ReportInput in = two_conditions(30);
  const auto report = build_report(in);
  // The same pairs in sample_id order (the rows are in that order already).
  std::vector<double> bare, oracle, noisy;
  for (const auto& r : in.rows)
    (r.condition == "bare" ? bare : r.condition == "oracle" ? oracle : noisy).push_back(r.nll);
  ks::PairedOptions opt;
  opt.bootstrap_resamples = in.resamples;
  opt.seed = in.seed;
  const auto expected = ks::compare_paired(bare, noisy, opt);
  const json& c = comparison(report.summary, "nll", "noisy");
  EXPECT_EQ(c.at("mean_delta").get<double>(), expected.mean_delta);
  EXPECT_EQ(c.at("ci").at("lower").get<double>(), expected.delta_ci.lower);
  EXPECT_EQ(c.at("ci").at("upper").get<double>(), expected.delta_ci.upper);
  EXPECT_EQ(c.at("cohens_d").get<double>(), expected.cohens_d);
  EXPECT_EQ(c.at("win_rate").get<double>(), expected.win_rate);
  EXPECT_EQ(c.at("t_test").at("p").get<double>(), expected.t_test.p);
  EXPECT_EQ(c.at("wilcoxon").at("p").get<double>(), expected.wilcoxon.p);
  EXPECT_EQ(c.at("benefit_vs_difficulty").at("spearman").at("r").get<double>(),
            expected.benefit_vs_difficulty_spearman.r);
  // t family: oracle's t-test is undefined, so it is not a test: m = 1 and Holm = raw p.
  EXPECT_EQ(c.at("t_test").at("p_holm").get<double>(), expected.t_test.p);
  // Wilcoxon family: both conditions.
  const double p_oracle = comparison(report.summary, "nll", "oracle").at("wilcoxon").at("p");
  const auto holm = ks::holm({p_oracle, expected.wilcoxon.p});
  const auto bonf = ks::bonferroni({p_oracle, expected.wilcoxon.p});
  EXPECT_EQ(c.at("wilcoxon").at("p_holm").get<double>(), holm[1]);
  EXPECT_EQ(c.at("wilcoxon").at("p_bonferroni").get<double>(), bonf[1]);
  EXPECT_EQ(comparison(report.summary, "nll", "oracle").at("wilcoxon").at("p_holm").get<double>(),
            holm[0]);
  // p-values below 0.01 in scientific notation with two significant digits (oracle's Holm p_W).
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1e", holm[0]);
  EXPECT_NE(report.markdown.find(buf), std::string::npos) << buf;
}

TEST(Report, PairingKeepsSamplesScoredUnderBothAndReportsTheDropped) {
  ReportInput in;
  in.baseline = "bare";
  in.conditions = {"bare", "partial", "lonely"};
  for (int i = 0; i < 10; ++i) in.rows.push_back({sid(i), "bare", base_nll(i), std::nullopt, -1});
  for (int i = 3; i < 13; ++i)  // s003..s012: s010..s012 have no baseline
    in.rows.push_back({sid(i), "partial", base_nll(i) - 0.25 * (i % 3), std::nullopt, -1});
  in.rows.push_back({sid(0), "lonely", 0.5, std::nullopt, -1});  // one pair only
  const auto report = build_report(in);
  const json& p = comparison(report.summary, "nll", "partial");
  EXPECT_EQ(p.at("n"), 7);
  EXPECT_EQ(p.at("only_condition"), 3);
  EXPECT_EQ(p.at("only_baseline"), 3);
  EXPECT_TRUE(p.at("computed").get<bool>());
  double sum = 0;
  for (int i = 3; i < 10; ++i) sum += -0.25 * (i % 3);
  EXPECT_DOUBLE_EQ(p.at("mean_delta").get<double>(), sum / 7);
  const json& l = comparison(report.summary, "nll", "lonely");
  EXPECT_EQ(l.at("n"), 1);
  EXPECT_EQ(l.at("only_baseline"), 9);
  EXPECT_FALSE(l.at("computed").get<bool>());
  EXPECT_NE(l.at("undefined").get<std::string>().find("needs at least 2"), std::string::npos);
  EXPECT_NE(report.markdown.find("| partial | 7 (6 dropped) |"), std::string::npos)
      << report.markdown;
  EXPECT_NE(report.markdown.find("| lonely | 1 (9 dropped) | n/a[^"), std::string::npos);
  EXPECT_NE(report.markdown.find("needs at least 2"), std::string::npos);

  // Independent of the order of the rows (pairs are formed in sample_id order).
  ReportInput shuffled = in;
  std::mt19937 rng(11);
  std::shuffle(shuffled.rows.begin(), shuffled.rows.end(), rng);
  const auto again = build_report(shuffled);
  EXPECT_EQ(again.summary.dump(), report.summary.dump());
  EXPECT_EQ(again.markdown, report.markdown);
  EXPECT_EQ(again.html, report.html);
}

TEST(Report, PmiComparisonsWhenRowsCarryPmi) {
  ReportInput in = two_conditions(12);
  for (auto& r : in.rows) r.pmi = r.nll - 3.0;  // the same BOS-only NLL for every sample
  in.rows.pop_back();  // noisy s011 without its row at all
  in.rows[in.rows.size() - 2].pmi.reset();  // bare s011 keeps its NLL but has no PMI
  const auto report = build_report(in);
  ASSERT_TRUE(report.summary.at("comparisons").contains("pmi"));
  const json& p = comparison(report.summary, "pmi", "oracle");
  EXPECT_EQ(p.at("n"), 11);
  EXPECT_EQ(p.at("only_condition"), 1);  // oracle s011 has a PMI, bare s011 does not
  EXPECT_NEAR(p.at("mean_delta").get<double>(), -0.5, 1e-12);
  EXPECT_EQ(comparison(report.summary, "nll", "oracle").at("n"), 12);
  EXPECT_NE(report.markdown.find("## PMI against the baseline"), std::string::npos);
  EXPECT_NE(report.html.find("<section id=\"pmi\">"), std::string::npos);
}

TEST(Report, RankingMetricsOnAConstructedCase) {
  ReportInput in;
  in.conditions = {"bare", "oracle"};
  in.hit_ks = {1, 3, 5};
  // NLL: own passage rank 1, 2 and 4 among 4 candidates.
  const std::vector<std::vector<double>> nll = {{1.0, 2.0, 3.0, 4.0},   // s000: rank 1
                                                {2.5, 1.0, 3.0, 4.0},   // s001: rank 2
                                                {5.0, 1.0, 2.0, 3.0}};  // s002: rank 4
  // PMI: s000 ties with one irrelevant passage (expected rank 1.5), the others rank 1.
  const std::vector<std::vector<double>> pmi = {{-1.0, -1.0, 0.0, 0.5},
                                                {-2.0, -1.0, -1.0, 0.0},
                                                {-3.0, 0.0, 0.0, 0.0}};
  for (int s = 0; s < 3; ++s)
    for (int k = -1; k < 3; ++k)
      in.rows.push_back({sid(s), "bare", nll[s][k + 1], pmi[s][k + 1], k});
  for (int s = 0; s < 3; ++s) in.rows.push_back({sid(s), "oracle", 0.5, -4.0, -1});
  in.rows.push_back({sid(3), "bare", 1.0, std::nullopt, 0});  // a candidate without own passage
  const auto report = build_report(in);

  const json& r = ranking(report.summary, "nll", "bare");
  EXPECT_EQ(r.at("n_queries"), 3);
  EXPECT_EQ(r.at("skipped"), 1);
  EXPECT_EQ(r.at("min_candidates"), 3);
  EXPECT_DOUBLE_EQ(r.at("auc").get<double>(), (1 + 2.0 / 3 + 0) / 3);
  EXPECT_DOUBLE_EQ(r.at("mrr").get<double>(), (1 + 0.5 + 0.25) / 3);
  EXPECT_DOUBLE_EQ(r.at("hit_at_k").at("1").get<double>(), 1.0 / 3);
  EXPECT_DOUBLE_EQ(r.at("hit_at_k").at("3").get<double>(), 2.0 / 3);
  EXPECT_DOUBLE_EQ(r.at("hit_at_k").at("5").get<double>(), 1.0);

  const json& p = ranking(report.summary, "pmi", "bare");
  EXPECT_EQ(p.at("n_queries"), 3);
  EXPECT_DOUBLE_EQ(p.at("auc").get<double>(), (2.5 / 3 + 1 + 1) / 3);
  EXPECT_DOUBLE_EQ(p.at("mrr").get<double>(), ((1 + 0.5) / 2 + 1 + 1) / 3);
  EXPECT_DOUBLE_EQ(p.at("hit_at_k").at("1").get<double>(), (0.5 + 1 + 1) / 3);

  // oracle scored only the own passages: no ranking, said so.
  const json& o = ranking(report.summary, "nll", "oracle");
  EXPECT_FALSE(o.at("computed").get<bool>());
  EXPECT_NE(report.markdown.find("| bare | 3 | 1 | 3 | 0.556 | 0.583 | 0.333 | 0.667 | 1.000 |"),
            std::string::npos)
      << report.markdown;
  EXPECT_NE(report.markdown.find("| oracle | 0 | 0 | n/a[^"), std::string::npos);
  EXPECT_NE(report.markdown.find("Ranking by PMI"), std::string::npos);
  EXPECT_NE(report.html.find("<section id=\"ranking\">"), std::string::npos);
  // summary.csv carries the ranking columns.
  EXPECT_NE(report.csv_summary.find("rank_nll_mrr_at_10"), std::string::npos);
  EXPECT_NE(report.csv_summary.find("rank_pmi_hit_at_5"), std::string::npos);
}

TEST(Report, HtmlIsBalancedSelfContainedAndEscapesEveryName) {
  ReportInput in = two_conditions(25);
  const std::string evil = "<script>alert(\"x\")</script>";
  for (auto& r : in.rows)
    if (r.condition == "noisy") r.condition = evil;
  in.conditions = {"bare", "oracle", evil};
  in.title = "A & B <b>bold</b>";
  in.meta = {{"model", "<img src=x onerror=alert(1)>"},
             {"dtype", "float32"},
             {"config", {{"template", std::string(200, 'x') + "</pre><script>"}}}};
  in.divergence = {{"oracle", {0.1, 0.2, 0.3}, {0.05, 0.1, 0.4}},
                   {evil, {0.3, 0.2, 0.1}, {0.2, 0.2, 0.2}}};
  const auto report = build_report(in);
  const std::string& html = report.html;

  EXPECT_EQ(check_balanced(html), "");
  EXPECT_EQ(html.rfind("<!DOCTYPE html>", 0), 0u);
  // No script, no raw user markup, no external reference.
  std::string lower = html;
  std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
  EXPECT_EQ(lower.find("<script"), std::string::npos);
  EXPECT_EQ(lower.find("<img"), std::string::npos);
  EXPECT_EQ(lower.find("<b>bold"), std::string::npos);
  EXPECT_EQ(lower.find("href=\"http"), std::string::npos);
  EXPECT_EQ(lower.find("url("), std::string::npos);
  EXPECT_EQ(lower.find("@import"), std::string::npos);
  EXPECT_NE(html.find("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"), std::string::npos);
  EXPECT_NE(html.find("<title>A &amp; B &lt;b&gt;bold&lt;/b&gt;</title>"), std::string::npos);
  // The plots: ΔNLL distribution, benefit vs difficulty, divergence; tables.
  EXPECT_EQ(count(html, "<svg"), 3u);
  EXPECT_EQ(count(html, "<svg"), count(html, "</svg>"));
  EXPECT_GE(count(html, "<table>"), 4u);
  EXPECT_NE(html.find(">keys</text>"), std::string::npos);
  EXPECT_NE(html.find(">values</text>"), std::string::npos);
  EXPECT_NE(html.find("<circle"), std::string::npos);

  // Markdown: the same names, escaped.
  const std::string& md = report.markdown;
  EXPECT_EQ(md.find("<script"), std::string::npos);
  EXPECT_EQ(md.find("<img"), std::string::npos);
  EXPECT_NE(md.find("&lt;script&gt;"), std::string::npos);
  EXPECT_NE(md.find("# A &amp; B &lt;b&gt;bold&lt;/b&gt;"), std::string::npos);
  // Divergence table: a row per layer.
  EXPECT_NE(md.find("| 2 | 0.3000 | 0.4000 | 0.1000 | 0.2000 |"), std::string::npos) << md;
}

TEST(Report, CsvHasAHeaderAndOneRecordPerRowWithQuoting) {
  ReportInput in;
  in.conditions = {"bare", "with, comma"};
  in.rows = {{"a,\"b\"", "bare", 1.25, 0.5, -1},
             {"a,\"b\"", "with, comma", 1.0, std::nullopt, -1},
             {"line\nbreak", "bare", 2.0, std::nullopt, -1},
             {"line\nbreak", "with, comma", 2.5, std::nullopt, -1},
             {"plain", "bare", 0.1, std::nullopt, 0}};
  const auto report = build_report(in);
  EXPECT_NE(report.csv_rows.find("\"a,\"\"b\"\"\",\"with, comma\",-1,1,,1.25,-0.25\n"),
            std::string::npos)
      << report.csv_rows;
  const auto rows = parse_csv(report.csv_rows);
  ASSERT_EQ(rows.size(), in.rows.size() + 1);
  EXPECT_EQ(rows[0], (std::vector<std::string>{"sample_id", "condition", "candidate", "nll", "pmi",
                                              "baseline_nll", "delta_nll"}));
  for (size_t i = 0; i < in.rows.size(); ++i) {
    ASSERT_EQ(rows[i + 1].size(), 7u);
    EXPECT_EQ(rows[i + 1][0], in.rows[i].sample_id);
    EXPECT_EQ(rows[i + 1][1], in.rows[i].condition);
    EXPECT_EQ(std::stod(rows[i + 1][3]), in.rows[i].nll);  // exact round trip
  }
  EXPECT_EQ(rows[1][4], "0.5");
  EXPECT_EQ(rows[4][6], "0.5");  // line\nbreak: 2.5 - 2.0

  const auto summary = parse_csv(report.csv_summary);
  ASSERT_EQ(summary.size(), 3u);  // header + bare + "with, comma"
  for (const auto& line : summary) EXPECT_EQ(line.size(), summary[0].size());
  EXPECT_EQ(summary[0][0], "condition");
  EXPECT_EQ(summary[2][0], "with, comma");
  const auto col = std::find(summary[0].begin(), summary[0].end(), "nll_mean_delta");
  ASSERT_NE(col, summary[0].end());
  EXPECT_EQ(std::stod(summary[2][col - summary[0].begin()]), 0.125);  // (-0.25 + 0.5) / 2
  EXPECT_EQ(summary[1][col - summary[0].begin()], "");                // the baseline
}

TEST(Report, WriteReportCreatesTheFourFiles) {
  kvprime::test::TempDir tmp;
  const auto report = build_report(two_conditions(8));
  const std::string dir = tmp.path() + "/nested/out";
  kvprime::write_report(report, dir);
  EXPECT_EQ(kvprime::test::read_file(dir + "/report.md"), report.markdown);
  EXPECT_EQ(kvprime::test::read_file(dir + "/report.html"), report.html);
  EXPECT_EQ(kvprime::test::read_file(dir + "/results.csv"), report.csv_rows);
  EXPECT_EQ(kvprime::test::read_file(dir + "/summary.csv"), report.csv_summary);
  size_t files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    ++files;
    EXPECT_EQ(e.path().extension().string().find("tmp"), std::string::npos) << e.path();
  }
  EXPECT_EQ(files, 4u);
  // Overwriting works (rename over the old files).
  kvprime::write_report(report, dir);
  kvprime::test::write_file(tmp.path() + "/file", "x");
  expect_error([&] { kvprime::write_report(report, tmp.path() + "/file"); }, "not a directory");
}

TEST(Report, BadInputIsAnErrorNamingTheField) {
  auto with = [](auto edit) {
    ReportInput in = two_conditions(4);
    edit(in);
    return [in] { build_report(in); };
  };
  expect_error(with([](ReportInput& in) { in.rows[1].condition = "orcale"; }),
               "condition 'orcale', which is not in ReportInput.conditions");
  expect_error(with([](ReportInput& in) { in.rows.push_back(in.rows[0]); }), "repeats");
  expect_error(with([](ReportInput& in) { in.rows[2].nll = std::nan(""); }), "nll = nan");
  expect_error(with([](ReportInput& in) { in.rows[2].pmi = INFINITY; }), "pmi = inf");
  expect_error(with([](ReportInput& in) { in.rows[0].candidate = -2; }), "candidate = -2");
  expect_error(with([](ReportInput& in) { in.rows[0].sample_id.clear(); }), "empty sample_id");
  expect_error(with([](ReportInput& in) { in.baseline = "none"; }), "the baseline 'none'");
  expect_error(with([](ReportInput& in) { in.conditions.push_back("bare"); }), "listed twice");
  expect_error(with([](ReportInput& in) { in.resamples = 1; }), "resamples");
  expect_error(with([](ReportInput& in) { in.meta = json::array(); }), "ReportInput.meta");
  expect_error(with([](ReportInput& in) { in.divergence = {{"oracle", {0.1, 0.2}, {0.1}}}; }),
               "2 key layers but 1 value layers");
  expect_error(with([](ReportInput& in) { in.divergence = {{"gone", {0.1}, {}}}; }),
               "divergence[0] is for condition 'gone'");
  expect_error(with([](ReportInput& in) { in.divergence = {{"oracle", {-0.1}, {}}}; }),
               "key[0] = -0.1");
}

TEST(Report, ConditionsDefaultToTheBaselineThenFirstAppearance) {
  ReportInput in = two_conditions(5);
  in.conditions.clear();
  std::reverse(in.rows.begin(), in.rows.end());  // noisy first
  const auto report = build_report(in);
  const auto& conds = report.summary.at("conditions");
  ASSERT_EQ(conds.size(), 3u);
  EXPECT_EQ(conds[0].at("name"), "bare");
  EXPECT_TRUE(conds[0].at("is_baseline").get<bool>());
  EXPECT_EQ(conds[1].at("name"), "noisy");
  EXPECT_EQ(conds[2].at("name"), "oracle");
  EXPECT_DOUBLE_EQ(conds[0].at("mean_nll").get<double>(), 1 + 4 / 16.0);
}

TEST(Report, DegenerateInputsStillGiveAnHonestReport) {
  // No rows at all: tables with n/a and reasons, no plots, balanced HTML.
  ReportInput empty;
  empty.conditions = {"bare", "oracle"};
  const auto r0 = build_report(empty);
  EXPECT_EQ(check_balanced(r0.html), "");
  EXPECT_EQ(count(r0.html, "<svg"), 0u);
  EXPECT_NE(r0.markdown.find("the baseline has no rows"), std::string::npos);
  EXPECT_NE(r0.markdown.find("no sample is scored under both"), std::string::npos);
  EXPECT_EQ(parse_csv(r0.csv_rows).size(), 1u);     // the header only
  EXPECT_EQ(parse_csv(r0.csv_summary).size(), 3u);  // header + 2 conditions

  // A condition identical to the baseline: every difference is zero, so the Wilcoxon test,
  // the t-test and d are undefined, and the win rate is 0 with a tie rate of 1.
  ReportInput same;
  same.conditions = {"bare", "copy"};
  for (int i = 0; i < 6; ++i) {
    same.rows.push_back({sid(i), "bare", base_nll(i), std::nullopt, -1});
    same.rows.push_back({sid(i), "copy", base_nll(i), std::nullopt, -1});
  }
  const auto r1 = build_report(same);
  const json& c = comparison(r1.summary, "nll", "copy");
  EXPECT_EQ(c.at("tie_rate").get<double>(), 1.0);
  EXPECT_EQ(c.at("win_rate").get<double>(), 0.0);
  EXPECT_TRUE(c.at("wilcoxon").at("p").is_null());
  EXPECT_NE(r1.markdown.find("every difference is zero"), std::string::npos);
  EXPECT_NE(r1.markdown.find("| copy | 6 | 1.3125 | +0.0000 [+0.0000, +0.0000] | n/a[^"),
            std::string::npos)
      << r1.markdown;
  EXPECT_EQ(check_balanced(r1.html), "");
  EXPECT_EQ(count(r1.html, "<svg"), 2u);  // distribution and benefit plots, no divergence
}
