// The report of an experiment: every condition against the baseline, as tables (Markdown and a
// self-contained HTML page with SVG plots), a JSON summary and CSV exports.
//
// Input is plain data (what the runner's store holds): one ReportRow per scored (sample,
// condition, candidate passage), and optionally per-layer cache divergences. No LibTorch.
//
// What build_report computes (statistics from kvprime/analysis/stats.h):
// - Per condition against the baseline, on the answer NLL of the sample's own passage
//   (candidate -1): rows are paired by sample_id, and only samples scored under both count; the
//   report gives n and how many samples each side had that the other lacked. Mean NLL, mean
//   ΔNLL = condition - baseline (negative: the condition helps) with a percentile bootstrap CI,
//   paired Cohen's d, win/tie/loss rates, paired t-test and Wilcoxon signed-rank p-values with
//   Bonferroni and Holm corrections across the comparisons (one family for the t-tests, one for
//   the Wilcoxon tests), and the correlation (Pearson and Spearman) of the benefit
//   (baseline - condition) with the difficulty (the baseline NLL).
// - The same on PMI where rows carry it (pairs where both rows have a PMI; its own families).
// - Ranking where rows with candidate >= 0 exist: per condition and sample, the scores of
//   [own passage, irrelevant passages in candidate order], relevant = 0; AUC, MRR@cutoff and
//   Hit@k (stats::summarize_ranking, ties counted at their expectation), by raw NLL and by PMI.
// - Per-layer key/value divergence of each condition's cache to the bare cache, as given.
//
// Pairing is done in sample_id order (byte-wise), so the report (including the bootstrap, whose
// stream is `seed` for every comparison) does not depend on the order of `rows`.
// Statistics that the data leave undefined (zero variance, fewer than 2 pairs...) appear as
// "n/a" with the reason in a footnote, and as null (with the reason) in the JSON summary.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace kvprime {

struct ReportRow {
  std::string sample_id;
  std::string condition;
  double nll = 0;             // mean answer NLL; must be finite
  std::optional<double> pmi;  // NLL - NLL with a BOS-only cache; finite when present
  // -1: the sample's own passage; k >= 0: irrelevant passage k (ranking candidates).
  int64_t candidate = -1;
};

// A (sample, condition, candidate) whose score was not finite (NaN/inf in its cache, logits or
// NLL): listed in the report, in no statistic. A sample failed under a condition drops out of that
// condition's pairs with the baseline (and out of every pair when the baseline failed).
struct ReportFailure {
  std::string sample_id;
  std::string condition;
  int64_t candidate = -1;
  std::string what;    // cache, logits, nll, baseline_nll
  std::string detail;
};

struct LayerDivergence {
  std::string condition;
  // Per layer: mean relative L2 distance ||K_c - K_bare|| / ||K_bare|| (resp. V) of this
  // condition's cache to the bare cache, over the samples measured. Either may be empty; when
  // both are given they have one entry per layer each. Finite and >= 0.
  std::vector<double> key, value;
};

struct ReportInput {
  std::string title = "kvprime experiment report";
  std::string baseline = "bare";
  // Display order; must contain the baseline. Empty: the baseline, then every other condition
  // in the order of its first row.
  std::vector<std::string> conditions;
  std::vector<ReportRow> rows;  // (sample_id, condition, candidate) unique
  std::vector<LayerDivergence> divergence;
  std::vector<ReportFailure> failures;  // listed first in the report (conditions need not be known)
  // Model, dtype, dataset, run id, config...: an object (or null), shown in the header.
  nlohmann::json meta;
  uint64_t seed = 0;          // bootstrap stream
  int64_t resamples = 10000;  // bootstrap resamples (>= 2)
  std::vector<int64_t> hit_ks = {1, 3, 5, 10};  // Hit@k columns of the ranking tables
  int64_t mrr_cutoff = 10;                       // MRR@cutoff
  // Points drawn per condition in the strip and scatter plots; beyond it an evenly spaced
  // subset (in sample_id order) is drawn, and the caption says so. Statistics use every pair.
  int64_t max_plot_points = 2000;
};

struct Report {
  nlohmann::json summary;  // everything the tables show, numbers unrounded (undefined: null)
  std::string markdown;    // report.md: header, tables, footnotes (plots are in the HTML)
  std::string html;        // report.html: one file, inline CSS and SVG, no script, no fetch
  std::string csv_rows;    // results.csv: one line per ReportRow (+ ΔNLL to the baseline)
  std::string csv_summary; // summary.csv: one line per condition
};

// Throws kvprime::Error for input it cannot report honestly: a row whose condition is not in
// `conditions`, a duplicate (sample_id, condition, candidate), a non-finite NLL or PMI, a
// candidate < -1, an empty sample_id, a baseline missing from `conditions`, divergences of an
// unknown condition or mismatched lengths, resamples < 2, hit_ks not >= 1.
Report build_report(const ReportInput& input);

// Writes report.md, report.html, results.csv and summary.csv into `out_dir` (created if
// missing). Each file is written to a temporary file, flushed to disk and renamed over the
// target, so a reader never sees half a file.
void write_report(const Report& report, const std::string& out_dir);

}  // namespace kvprime
