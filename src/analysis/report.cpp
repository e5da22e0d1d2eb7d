// The experiment report (see include/kvprime/analysis/report.h).
//
// Flow: validate and index the rows per condition -> pair each condition with the baseline and
// run the statistics (stats.h) -> ranking per condition -> one table model (cells with footnote
// references) rendered twice, as Markdown and as HTML, so both always show the same numbers ->
// SVG plots for the HTML -> JSON summary and CSVs from the same data.
#include "kvprime/analysis/report.h"

#include "kvprime/core/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <set>

#include "analysis/svg.h"
#include "kvprime/analysis/stats.h"
#include "kvprime/core/error.h"

namespace kvprime {
namespace {

using nlohmann::json;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kConfidence = 0.95;

// ---------------------------------------------------------------------------------------------
// Number formatting

std::string printf_str(const char* format, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, format, v == 0 ? 0.0 : v);  // never "-0.0000"
  return buf;
}
std::string fmt_nll(double v) { return printf_str("%.4f", v); }
std::string fmt_delta(double v) { return printf_str("%+.4f", v); }
std::string fmt_d(double v) { return printf_str("%+.3f", v); }
std::string fmt_r(double v) { return printf_str("%+.3f", v); }
std::string fmt_unit(double v) { return printf_str("%.3f", v); }  // AUC, MRR, Hit@k
std::string fmt_percent(double v) { return printf_str("%.1f%%", 100 * v); }
std::string fmt_stat(double v) { return printf_str("%.3f", v); }
// Divergences: 4 decimals, small values (round-trip noise is ~1e-7) in scientific notation.
std::string fmt_div(double v) {
  return v == 0 || v >= 1e-3 ? printf_str("%.4f", v) : printf_str("%.2e", v);
}
// p-values: three decimals down to 0.01, then two significant digits in scientific notation
// (3.1e-04); a p that underflowed to 0 is shown as a bound, not as "0".
std::string fmt_p(double p) {
  if (p == 0) return "< 1e-300";
  if (p >= 0.01) return printf_str("%.3f", p);
  return printf_str("%.1e", p);
}
std::string fmt_count(int64_t n) { return std::to_string(n); }

// Shortest text that reads back as the same double (CSV, exact).
std::string fmt_exact(double v) {
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, res.ptr);
}

json num_or_null(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

// ---------------------------------------------------------------------------------------------
// Escaping

// Text inside Markdown (tables, headings, footnotes): characters that would start markup or
// split a table cell are backslash-escaped, HTML-significant ones become entities (renderers
// pass raw HTML through), line breaks become spaces. `user`: text from the input (names), where
// brackets are escaped too (no links, no fake footnote references).
std::string md_escape(const std::string& text, bool user) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '\n': case '\r': out += ' '; break;
      case '\\': case '|': case '`': case '*': case '_': case '~':
        out += '\\';
        out += c;
        break;
      case '[': case ']':
        if (user) out += '\\';
        out += c;
        break;
      default: out += c;
    }
  }
  return out;
}

// One CSV field (RFC 4180): quoted when it holds a comma, a quote or a line break; quotes
// doubled inside.
std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\r\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

std::string csv_line(const std::vector<std::string>& fields) {
  std::string out;
  for (size_t i = 0; i < fields.size(); ++i) out += (i ? "," : "") + csv_field(fields[i]);
  return out + "\n";
}

// ---------------------------------------------------------------------------------------------
// Data

enum class Score { Nll, Pmi };
const char* score_label(Score s) { return s == Score::Nll ? "NLL" : "PMI"; }
const char* score_key(Score s) { return s == Score::Nll ? "nll" : "pmi"; }

std::optional<double> score_of(const ReportRow& row, Score s) {
  if (s == Score::Nll) return row.nll;
  return row.pmi;
}

struct ConditionRows {
  std::string name;
  int64_t n_rows = 0;
  std::map<std::string, const ReportRow*> own;  // sample_id -> its candidate -1 row
  std::map<std::string, std::map<int64_t, const ReportRow*>> candidates;  // sample -> k -> row

  // Scores of the own-passage rows that have one.
  std::vector<double> own_scores(Score s) const {
    std::vector<double> v;
    for (const auto& [id, row] : own)
      if (auto x = score_of(*row, s)) v.push_back(*x);
    return v;
  }
};

// One condition against the baseline on one score.
struct Comparison {
  std::string condition;
  size_t condition_index = 0;
  Score score = Score::Nll;
  int64_t only_condition = 0;  // samples scored under the condition but not the baseline
  int64_t only_baseline = 0;   // and the reverse
  std::vector<std::string> ids;  // paired samples, sample_id order
  std::vector<double> base, cond;
  bool computed = false;
  std::string why_not;  // !computed: why there are no statistics
  stats::PairedComparison s;

  int64_t n() const { return static_cast<int64_t>(ids.size()); }
};

Comparison pair_up(const ConditionRows& baseline, const ConditionRows& condition, Score score) {
  Comparison c;
  c.condition = condition.name;
  c.score = score;
  for (const auto& [id, row] : condition.own) {
    const auto v = score_of(*row, score);
    if (!v) continue;
    const auto it = baseline.own.find(id);
    const auto b = it == baseline.own.end() ? std::nullopt : score_of(*it->second, score);
    if (!b) {
      ++c.only_condition;
      continue;
    }
    c.ids.push_back(id);
    c.base.push_back(*b);
    c.cond.push_back(*v);
  }
  for (const auto& [id, row] : baseline.own) {
    if (!score_of(*row, score)) continue;
    const auto it = condition.own.find(id);
    if (it == condition.own.end() || !score_of(*it->second, score)) ++c.only_baseline;
  }
  return c;
}

struct Ranking {
  std::string condition;
  Score score = Score::Nll;
  int64_t skipped = 0;  // samples with candidates but no usable own score / candidate score
  int64_t min_candidates = 0, max_candidates = 0;  // irrelevant passages per query
  bool computed = false;
  std::string why_not;
  stats::RankingSummary s;
};

Ranking rank_condition(const ConditionRows& c, Score score, const std::vector<int64_t>& ks,
                       int64_t mrr_cutoff) {
  Ranking r;
  r.condition = c.name;
  r.score = score;
  std::vector<stats::RankingQuery> queries;
  for (const auto& [id, cands] : c.candidates) {
    const auto own = c.own.find(id);
    const auto own_score = own == c.own.end() ? std::nullopt : score_of(*own->second, score);
    if (!own_score) {
      ++r.skipped;
      continue;
    }
    stats::RankingQuery q;
    q.relevant = 0;
    q.scores.push_back(*own_score);
    bool complete = true;
    for (const auto& [k, row] : cands) {
      const auto v = score_of(*row, score);
      if (!v) {
        complete = false;
        break;
      }
      q.scores.push_back(*v);
    }
    if (!complete) {
      ++r.skipped;
      continue;
    }
    const auto n_irrelevant = static_cast<int64_t>(q.scores.size()) - 1;
    r.min_candidates = queries.empty() ? n_irrelevant : std::min(r.min_candidates, n_irrelevant);
    r.max_candidates = std::max(r.max_candidates, n_irrelevant);
    queries.push_back(std::move(q));
  }
  if (queries.empty()) {
    r.why_not = score == Score::Nll
                    ? "no sample has both its own passage and irrelevant passages scored under "
                      "this condition"
                    : "no sample has a PMI for its own passage and every irrelevant passage "
                      "under this condition";
    r.s.n_queries = 0;
    return r;
  }
  r.s = stats::summarize_ranking(queries, ks, mrr_cutoff);
  r.computed = true;
  return r;
}

// ---------------------------------------------------------------------------------------------
// Tables: one model, rendered as Markdown and as HTML

// Footnotes: the reasons why statistics are undefined, numbered in order of first use; the same
// reason is one footnote however many cells cite it.
class Notes {
 public:
  int ref(const std::string& text) {
    const std::string t = text.empty() ? "undefined for these data" : text;
    for (size_t i = 0; i < texts_.size(); ++i)
      if (texts_[i] == t) return static_cast<int>(i) + 1;
    texts_.push_back(t);
    return static_cast<int>(texts_.size());
  }
  const std::vector<std::string>& texts() const { return texts_; }

 private:
  std::vector<std::string> texts_;
};

struct Cell {
  std::string text;
  int note = 0;       // footnote number, 0: none
  bool user = false;  // text from the input (a name): escaped strictly in Markdown
  bool na = false;    // an undefined statistic
};

struct Table {
  std::string caption;
  std::vector<std::string> header;
  std::vector<bool> numeric;  // per column: right-aligned
  std::vector<std::vector<Cell>> rows;
};

Cell text_cell(const std::string& s) { return Cell{s}; }
Cell name_cell(const std::string& s) { return Cell{s, 0, true}; }
Cell dash_cell() { return Cell{"—"}; }
Cell na_cell(Notes& notes, const std::string& reason) {
  return Cell{"n/a", notes.ref(reason), false, true};
}
Cell value_cell(double v, std::string (*fmt)(double), Notes& notes, const std::string& reason) {
  if (std::isfinite(v)) return Cell{fmt(v)};
  return na_cell(notes, reason);
}

std::string render_markdown(const Table& t) {
  std::string out = "**" + md_escape(t.caption, true) + "**\n\n|";
  for (const auto& h : t.header) out += " " + md_escape(h, false) + " |";
  out += "\n|";
  for (size_t i = 0; i < t.header.size(); ++i)
    out += (i < t.numeric.size() && t.numeric[i]) ? "---:|" : ":---|";
  out += "\n";
  for (const auto& row : t.rows) {
    out += "|";
    for (const auto& c : row) {
      out += " " + md_escape(c.text, c.user);
      if (c.note) out += "[^" + std::to_string(c.note) + "]";
      out += " |";
    }
    out += "\n";
  }
  return out + "\n";
}

std::string render_html(const Table& t) {
  using svg::xml_escape;
  std::string out = "<div class=\"scroll\"><table>\n<caption>" + xml_escape(t.caption) +
                    "</caption>\n<thead><tr>";
  for (size_t i = 0; i < t.header.size(); ++i) {
    const bool num = i < t.numeric.size() && t.numeric[i];
    out += std::string(num ? "<th class=\"num\">" : "<th>") + xml_escape(t.header[i]) + "</th>";
  }
  out += "</tr></thead>\n<tbody>\n";
  for (const auto& row : t.rows) {
    out += "<tr>";
    for (size_t i = 0; i < row.size(); ++i) {
      const Cell& c = row[i];
      std::string cls = (i < t.numeric.size() && t.numeric[i]) ? "num" : "";
      if (c.na) cls += cls.empty() ? "na" : " na";
      out += cls.empty() ? "<td>" : "<td class=\"" + cls + "\">";
      out += xml_escape(c.text);
      if (c.note) {
        const std::string n = std::to_string(c.note);
        out += "<sup><a href=\"#note-" + n + "\">" + n + "</a></sup>";
      }
      out += "</td>";
    }
    out += "</tr>\n";
  }
  return out + "</tbody>\n</table></div>\n";
}

// ---------------------------------------------------------------------------------------------
// Plots (HTML only)

// Evenly spaced indices: all of 0..n-1, or `max` of them.
std::vector<size_t> plot_indices(size_t n, int64_t max) {
  std::vector<size_t> idx;
  const auto m = static_cast<size_t>(max);
  if (n <= m) {
    for (size_t i = 0; i < n; ++i) idx.push_back(i);
  } else {
    for (size_t i = 0; i < m; ++i) idx.push_back(i * n / m);
  }
  return idx;
}

// A deterministic jitter in [-1, 1) for point i (splitmix64).
double jitter(uint64_t i) {
  uint64_t z = (i + 1) * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return static_cast<double>(z >> 11) / 9007199254740992.0 * 2 - 1;
}

std::string subsample_note(const std::vector<const Comparison*>& comps, int64_t max_points) {
  for (const Comparison* c : comps)
    if (c->n() > max_points)
      return " Conditions with more than " + std::to_string(max_points) +
             " pairs show an evenly spaced subset of " + std::to_string(max_points) +
             " points (in sample_id order); boxes, means and statistics use every pair.";
  return "";
}

std::string figure(const std::string& svg_text, const std::string& caption) {
  return "<figure>\n" + svg_text + "<figcaption>" + svg::xml_escape(caption) +
         "</figcaption>\n</figure>\n";
}

// ΔNLL per sample, one row per condition: box (quartiles, median), whiskers (min-max), mean
// (diamond) and the samples as jittered dots.
std::string plot_deltas(const std::vector<const Comparison*>& comps, int64_t max_points) {
  const double left = 180, right = 24, top = 16, row_h = 38, axis_h = 46, plot_w = 560;
  const double width = left + plot_w + right;
  const double height = top + row_h * static_cast<double>(comps.size()) + axis_h;
  double lo = 0, hi = 0;
  for (const Comparison* c : comps)
    for (size_t i = 0; i < c->base.size(); ++i) {
      lo = std::min(lo, c->cond[i] - c->base[i]);
      hi = std::max(hi, c->cond[i] - c->base[i]);
    }
  const auto [d0, d1] = svg::nice_domain(lo, hi, 6);
  const svg::Scale x{d0, d1, left, left + plot_w};
  const std::string label = std::string("Distribution of Δ") + score_label(comps[0]->score) +
                            " per condition";
  svg::Canvas cv(width, height, label);
  const double plot_bottom = top + row_h * static_cast<double>(comps.size());
  cv.axis_bottom(x, svg::nice_ticks(d0, d1, 6), plot_bottom, top,
                 std::string("Δ") + score_label(comps[0]->score) +
                     " = condition − baseline (negative: lower NLL, the condition helps)");
  cv.line(x(0), top, x(0), plot_bottom, "#333", 1, "4 3");
  for (size_t r = 0; r < comps.size(); ++r) {
    const Comparison& c = *comps[r];
    const char* colour = svg::palette(c.condition_index);
    const double cy = top + row_h * (static_cast<double>(r) + 0.5);
    cv.text(left - 10, cy + 4, svg::shorten(c.condition, 24), "end", 11, 0, c.condition);
    std::vector<double> d(c.base.size());
    for (size_t i = 0; i < d.size(); ++i) d[i] = c.cond[i] - c.base[i];
    std::vector<double> sorted = d;
    std::sort(sorted.begin(), sorted.end());
    const double q1 = stats::quantile_sorted(sorted, 0.25);
    const double med = stats::quantile_sorted(sorted, 0.5);
    const double q3 = stats::quantile_sorted(sorted, 0.75);
    cv.line(x(sorted.front()), cy, x(sorted.back()), cy, "#777");
    cv.line(x(sorted.front()), cy - 6, x(sorted.front()), cy + 6, "#777");
    cv.line(x(sorted.back()), cy - 6, x(sorted.back()), cy + 6, "#777");
    cv.rect(x(q1), cy - 9, x(q3) - x(q1), 18, colour, "#333", 0.25);
    const auto idx = plot_indices(d.size(), max_points);
    const double alpha = idx.size() <= 200 ? 0.6 : idx.size() <= 1000 ? 0.35 : 0.2;
    for (size_t i : idx) cv.circle(x(d[i]), cy + 12 * jitter(i), 1.8, colour, alpha);
    cv.line(x(med), cy - 9, x(med), cy + 9, "#111", 2);
    cv.diamond(x(stats::mean(d)), cy, 5, "#fff", "#111");
  }
  return cv.str();
}

// Benefit (baseline - condition) against difficulty (baseline score), one panel per condition,
// shared axes, with the least-squares line.
std::string plot_benefit(const std::vector<const Comparison*>& comps, int64_t max_points) {
  const size_t cols = std::min<size_t>(3, comps.size());
  const size_t rows = (comps.size() + cols - 1) / cols;
  const double pw = 300, ph = 250, ml = 58, mr = 12, mt = 26, mb = 46;
  const double width = static_cast<double>(cols) * pw, height = static_cast<double>(rows) * ph;
  double xlo = std::numeric_limits<double>::infinity(), xhi = -xlo, ylo = 0, yhi = 0;
  for (const Comparison* c : comps)
    for (size_t i = 0; i < c->base.size(); ++i) {
      xlo = std::min(xlo, c->base[i]);
      xhi = std::max(xhi, c->base[i]);
      ylo = std::min(ylo, c->base[i] - c->cond[i]);
      yhi = std::max(yhi, c->base[i] - c->cond[i]);
    }
  const auto [x0, x1] = svg::nice_domain(xlo, xhi, 4);
  const auto [y0, y1] = svg::nice_domain(ylo, yhi, 5);
  const std::string what = score_label(comps[0]->score);
  svg::Canvas cv(width, height, "Benefit against difficulty (" + what + ") per condition");
  for (size_t p = 0; p < comps.size(); ++p) {
    const Comparison& c = *comps[p];
    const char* colour = svg::palette(c.condition_index);
    const double ox = static_cast<double>(p % cols) * pw, oy = static_cast<double>(p / cols) * ph;
    const svg::Scale x{x0, x1, ox + ml, ox + pw - mr};
    const svg::Scale y{y0, y1, oy + ph - mb, oy + mt};
    cv.axis_bottom(x, svg::nice_ticks(x0, x1, 4), oy + ph - mb, oy + mt,
                   "baseline " + what + " (difficulty)");
    cv.axis_left(y, svg::nice_ticks(y0, y1, 5), ox + ml, ox + pw - mr,
                 p % cols == 0 ? "benefit = baseline − condition" : "");
    cv.line(ox + ml, y(0), ox + pw - mr, y(0), "#333", 1, "4 3");
    const double r = c.s.benefit_vs_difficulty_pearson.r;
    cv.text(ox + ml, oy + 16,
            svg::shorten(c.condition, 26) + (std::isfinite(r) ? " · r = " + fmt_r(r) : ""),
            "start", 11, 0, c.condition, "600");
    const auto idx = plot_indices(c.base.size(), max_points);
    const double alpha = idx.size() <= 200 ? 0.6 : idx.size() <= 1000 ? 0.35 : 0.2;
    for (size_t i : idx) cv.circle(x(c.base[i]), y(c.base[i] - c.cond[i]), 2, colour, alpha);
    // Least squares benefit ~ a + b difficulty (drawn only when the difficulty varies).
    const double mx = stats::mean(c.base);
    double sxx = 0, sxy = 0, my = 0;
    for (size_t i = 0; i < c.base.size(); ++i) my += c.base[i] - c.cond[i];
    my /= static_cast<double>(c.base.size());
    for (size_t i = 0; i < c.base.size(); ++i) {
      sxx += (c.base[i] - mx) * (c.base[i] - mx);
      sxy += (c.base[i] - mx) * (c.base[i] - c.cond[i] - my);
    }
    if (sxx > 0) {
      const double b = sxy / sxx, a = my - b * mx;
      // The line over this panel's data, clipped to the y range.
      double from = *std::min_element(c.base.begin(), c.base.end());
      double to = *std::max_element(c.base.begin(), c.base.end());
      if (b != 0) {
        const double xa = (y0 - a) / b, xb = (y1 - a) / b;
        from = std::max(from, std::min(xa, xb));
        to = std::min(to, std::max(xa, xb));
      }
      if (from < to)
        cv.polyline({{x(from), y(a + b * from)}, {x(to), y(a + b * to)}}, "#111", 1.5);
    }
  }
  return cv.str();
}

// Per-layer key and value divergence to the bare cache: two panels, one line per condition.
std::string plot_divergence(const std::vector<LayerDivergence>& div,
                            const std::map<std::string, size_t>& colour_of) {
  size_t layers = 0;
  double hi = 0;
  for (const auto& d : div) {
    layers = std::max({layers, d.key.size(), d.value.size()});
    for (double v : d.key) hi = std::max(hi, v);
    for (double v : d.value) hi = std::max(hi, v);
  }
  const double pw = 420, ph = 280, ml = 62, mr = 14, mt = 28, mb = 46;
  const double legend_row = 18;
  const size_t legend_cols = 3;
  const size_t legend_rows = (div.size() + legend_cols - 1) / legend_cols;
  const double width = 2 * pw, height = ph + 10 + legend_row * static_cast<double>(legend_rows);
  const auto [y0, y1] = svg::nice_domain(0, hi > 0 ? hi : 1, 5);
  const double x_hi = layers > 1 ? static_cast<double>(layers - 1) : 1;
  svg::Canvas cv(width, height, "Per-layer key and value divergence to the bare cache");
  for (int panel = 0; panel < 2; ++panel) {
    const double ox = panel * pw;
    const svg::Scale x{0, x_hi, ox + ml, ox + pw - mr};
    const svg::Scale y{y0, y1, ph - mb, mt};
    auto xticks = svg::nice_ticks(0, x_hi, 8);
    xticks.erase(std::remove_if(xticks.begin(), xticks.end(),
                                [](double t) { return t != std::floor(t); }),
                 xticks.end());
    cv.axis_bottom(x, xticks, ph - mb, mt, "layer");
    cv.axis_left(y, svg::nice_ticks(y0, y1, 5), ox + ml, ox + pw - mr,
                 "relative L2 distance");
    cv.text(ox + ml, 18, panel == 0 ? "keys" : "values", "start", 12, 0, "", "600");
    for (const auto& d : div) {
      const auto& v = panel == 0 ? d.key : d.value;
      const char* colour = svg::palette(colour_of.at(d.condition));
      std::vector<std::pair<double, double>> pts;
      for (size_t il = 0; il < v.size(); ++il)
        pts.push_back({x(static_cast<double>(il)), y(v[il])});
      if (pts.size() > 1) cv.polyline(pts, colour, 1.8);
      if (v.size() <= 64)
        for (const auto& [px, py] : pts) cv.circle(px, py, 2.5, colour);
    }
  }
  for (size_t i = 0; i < div.size(); ++i) {
    const double lx = ml + static_cast<double>(i % legend_cols) * 260;
    const double ly = ph + 10 + legend_row * static_cast<double>(i / legend_cols);
    cv.rect(lx, ly - 9, 14, 10, svg::palette(colour_of.at(div[i].condition)));
    cv.text(lx + 20, ly, svg::shorten(div[i].condition, 34), "start", 11, 0, div[i].condition);
  }
  return cv.str();
}

// ---------------------------------------------------------------------------------------------
// JSON

json correlation_json(const stats::Correlation& c) {
  json j = {{"n", c.n}, {"r", num_or_null(c.r)}, {"p", num_or_null(c.p)}};
  if (!c.undefined.empty()) j["undefined"] = c.undefined;
  return j;
}

const std::string kCohensDUndefined =
    "every paired difference is the same (standard deviation 0): Cohen's d is undefined";

json comparison_json(const Comparison& c) {
  json j = {{"condition", c.condition},
            {"n", c.n()},
            {"only_condition", c.only_condition},
            {"only_baseline", c.only_baseline},
            {"computed", c.computed}};
  if (!c.computed) {
    j["undefined"] = c.why_not;
    return j;
  }
  const auto& s = c.s;
  j["mean_baseline"] = s.mean_baseline;
  j["mean_condition"] = s.mean_condition;
  j["mean_delta"] = s.mean_delta;
  j["sd_delta"] = s.sd_delta;
  j["ci"] = {{"lower", s.delta_ci.lower},
             {"upper", s.delta_ci.upper},
             {"confidence", s.delta_ci.confidence},
             {"resamples", s.delta_ci.resamples},
             {"seed", s.delta_ci.seed}};
  j["cohens_d"] = num_or_null(s.cohens_d);
  if (!std::isfinite(s.cohens_d)) j["cohens_d_undefined"] = kCohensDUndefined;
  j["win_rate"] = s.win_rate;
  j["tie_rate"] = s.tie_rate;
  j["loss_rate"] = s.loss_rate;
  json t = {{"t", num_or_null(s.t_test.t)},
            {"df", s.t_test.df},
            {"p", num_or_null(s.t_test.p)},
            {"p_bonferroni", num_or_null(s.t_test.p_bonferroni)},
            {"p_holm", num_or_null(s.t_test.p_holm)}};
  if (!s.t_test.undefined.empty()) t["undefined"] = s.t_test.undefined;
  j["t_test"] = t;
  json w = {{"statistic", s.wilcoxon.statistic},
            {"r_plus", s.wilcoxon.r_plus},
            {"r_minus", s.wilcoxon.r_minus},
            {"n_zero", s.wilcoxon.n_zero},
            {"n_used", s.wilcoxon.n_used},
            {"method", stats::to_string(s.wilcoxon.method)},
            {"z", num_or_null(s.wilcoxon.z)},
            {"p", num_or_null(s.wilcoxon.p)},
            {"p_bonferroni", num_or_null(s.wilcoxon.p_bonferroni)},
            {"p_holm", num_or_null(s.wilcoxon.p_holm)}};
  if (!s.wilcoxon.undefined.empty()) w["undefined"] = s.wilcoxon.undefined;
  j["wilcoxon"] = w;
  j["benefit_vs_difficulty"] = {{"pearson", correlation_json(s.benefit_vs_difficulty_pearson)},
                                {"spearman", correlation_json(s.benefit_vs_difficulty_spearman)}};
  return j;
}

json ranking_json(const Ranking& r) {
  json j = {{"condition", r.condition},
            {"n_queries", r.s.n_queries},
            {"skipped", r.skipped},
            {"computed", r.computed}};
  if (!r.computed) {
    j["undefined"] = r.why_not;
    return j;
  }
  j["min_candidates"] = r.min_candidates;
  j["max_candidates"] = r.max_candidates;
  j["auc"] = r.s.auc;
  j["mrr_cutoff"] = r.s.mrr_cutoff;
  j["mrr"] = r.s.mrr;
  json hits = json::object();
  for (size_t i = 0; i < r.s.ks.size(); ++i) hits[std::to_string(r.s.ks[i])] = r.s.hit_at_k[i];
  j["hit_at_k"] = hits;
  return j;
}

// ---------------------------------------------------------------------------------------------
// Files


// ---------------------------------------------------------------------------------------------

const char* kCss = R"css(
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; color: #1b1b1b;
       margin: 0; background: #fafafa; }
main { max-width: 1120px; margin: 0 auto; padding: 24px 28px 48px; background: #fff; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
.lede { color: #555; margin-top: 0; }
.scroll { overflow-x: auto; margin: 1em 0; }
table { border-collapse: collapse; font-size: 0.86em; font-variant-numeric: tabular-nums; }
caption { text-align: left; font-weight: 600; padding: 4px 0; }
th, td { border-bottom: 1px solid #e3e3e3; padding: 4px 10px; text-align: left;
         white-space: nowrap; }
th { background: #f3f3f3; }
td.num, th.num { text-align: right; }
td.na { color: #888; }
sup a { text-decoration: none; }
figure { margin: 1.5em 0; }
figcaption { font-size: 0.85em; color: #555; max-width: 900px; }
svg { max-width: 100%; height: auto; }
pre { background: #f5f5f5; padding: 10px; overflow-x: auto; font-size: 0.82em; }
ol.notes, ul.method { font-size: 0.88em; color: #333; }
)css";

// Everything build_report computes before rendering. ConditionRows point into input.rows.
struct Analysis {
  const ReportInput* input = nullptr;
  std::vector<std::string> conditions;   // display order
  std::map<std::string, size_t> index;   // name -> position in `conditions`
  size_t ib = 0;                         // the baseline's position
  std::vector<ConditionRows> data;       // per condition
  std::set<std::string> sample_ids;
  bool any_pmi = false, any_candidates = false, any_candidate_pmi = false;
  std::vector<LayerDivergence> divergence;  // display order, non-empty entries
  std::vector<Score> scores;                // NLL, and PMI when rows carry it
  std::map<Score, std::vector<Comparison>> comparisons;  // conditions other than the baseline
  std::map<Score, std::vector<Ranking>> rankings;        // every condition
};

void check_options(const ReportInput& in) {
  KVP_CHECK(in.resamples >= 2, "build_report: ReportInput.resamples = ", in.resamples,
            "; the bootstrap needs at least 2 resamples (10000 is the default)");
  KVP_CHECK(in.mrr_cutoff >= 1, "build_report: ReportInput.mrr_cutoff = ", in.mrr_cutoff,
            "; use a cutoff >= 1 (10 for MRR@10)");
  KVP_CHECK(in.max_plot_points >= 1, "build_report: ReportInput.max_plot_points = ",
            in.max_plot_points, "; use a value >= 1 (2000 is the default)");
  for (int64_t k : in.hit_ks)
    KVP_CHECK(k >= 1, "build_report: ReportInput.hit_ks contains ", k,
              "; Hit@k needs k >= 1 (e.g. {1, 3, 5, 10})");
  KVP_CHECK(in.meta.is_null() || in.meta.is_object(), "build_report: ReportInput.meta is a ",
            in.meta.type_name(),
            "; pass a JSON object of header fields (model, dtype, dataset, run id...) or null");
  KVP_CHECK(!in.baseline.empty(),
            "build_report: ReportInput.baseline is empty; name the baseline condition (\"bare\")");
}

// Validates and indexes the rows, pairs every condition with the baseline and runs the
// statistics (Holm/Bonferroni within each score and test), ranks per condition.
Analysis analyze(const ReportInput& in) {
  check_options(in);
  Analysis a;
  a.input = &in;
  // Conditions, in display order.
  std::vector<std::string> conditions = in.conditions;
  if (conditions.empty()) {
    conditions.push_back(in.baseline);
    for (const auto& row : in.rows)
      if (std::find(conditions.begin(), conditions.end(), row.condition) == conditions.end())
        conditions.push_back(row.condition);
  }
  std::map<std::string, size_t> index;
  for (size_t i = 0; i < conditions.size(); ++i)
    KVP_CHECK(index.emplace(conditions[i], i).second, "build_report: condition '",
              conditions[i], "' is listed twice in ReportInput.conditions; list each once");
  KVP_CHECK(index.count(in.baseline), "build_report: the baseline '", in.baseline,
            "' is not in ReportInput.conditions; add it (the baseline is compared against)");
  const size_t ib = index.at(in.baseline);

  std::vector<ConditionRows> data(conditions.size());
  for (size_t i = 0; i < conditions.size(); ++i) data[i].name = conditions[i];
  std::set<std::string> sample_ids;
  bool any_pmi = false, any_candidates = false, any_candidate_pmi = false;
  for (size_t i = 0; i < in.rows.size(); ++i) {
    const ReportRow& row = in.rows[i];
    const auto it = index.find(row.condition);
    KVP_CHECK(it != index.end(), "build_report: rows[", i, "] (sample '", row.sample_id,
              "') has condition '", row.condition,
              "', which is not in ReportInput.conditions; add the condition or drop its rows");
    KVP_CHECK(!row.sample_id.empty(), "build_report: rows[", i, "] (condition '", row.condition,
              "') has an empty sample_id; every row needs the id of its sample");
    KVP_CHECK(std::isfinite(row.nll), "build_report: rows[", i, "] (sample '", row.sample_id,
              "', condition '", row.condition, "') has nll = ", row.nll,
              "; a stored NLL must be finite (re-run the sample or drop the row)");
    KVP_CHECK(!row.pmi || std::isfinite(*row.pmi), "build_report: rows[", i, "] (sample '",
              row.sample_id, "', condition '", row.condition, "') has pmi = ", *row.pmi,
              "; a stored PMI must be finite (re-run the sample or leave pmi empty)");
    KVP_CHECK(row.candidate >= -1, "build_report: rows[", i, "] (sample '", row.sample_id,
              "', condition '", row.condition, "') has candidate = ", row.candidate,
              "; use -1 for the sample's own passage and k >= 0 for irrelevant passage k");
    ConditionRows& c = data[it->second];
    const bool fresh = row.candidate == -1
                           ? c.own.emplace(row.sample_id, &row).second
                           : c.candidates[row.sample_id].emplace(row.candidate, &row).second;
    KVP_CHECK(fresh, "build_report: rows[", i, "] repeats (sample '", row.sample_id,
              "', condition '", row.condition, "', candidate ", row.candidate,
              "); each is scored once: drop the duplicate");
    ++c.n_rows;
    sample_ids.insert(row.sample_id);
    any_pmi = any_pmi || row.pmi.has_value();
    any_candidates = any_candidates || row.candidate >= 0;
    any_candidate_pmi = any_candidate_pmi || (row.candidate >= 0 && row.pmi.has_value());
  }

  std::set<std::string> div_seen;
  for (size_t i = 0; i < in.divergence.size(); ++i) {
    const LayerDivergence& d = in.divergence[i];
    KVP_CHECK(index.count(d.condition), "build_report: divergence[", i, "] is for condition '",
              d.condition, "', which is not in ReportInput.conditions; add it or drop the entry");
    KVP_CHECK(div_seen.insert(d.condition).second, "build_report: divergence[", i,
              "] repeats condition '", d.condition, "'; give one entry per condition");
    KVP_CHECK(d.key.empty() || d.value.empty() || d.key.size() == d.value.size(),
              "build_report: divergence[", i, "] (condition '", d.condition, "') has ",
              d.key.size(), " key layers but ", d.value.size(),
              " value layers; give one entry per layer for both (or leave one empty)");
    for (const auto* v : {&d.key, &d.value})
      for (size_t il = 0; il < v->size(); ++il)
        KVP_CHECK(std::isfinite((*v)[il]) && (*v)[il] >= 0, "build_report: divergence[", i,
                  "] (condition '", d.condition, "') ", v == &d.key ? "key" : "value", "[", il,
                  "] = ", (*v)[il], "; a relative L2 distance is finite and >= 0");
  }
  std::vector<LayerDivergence> divergence;  // display order, non-empty entries
  for (const auto& name : conditions)
    for (const auto& d : in.divergence)
      if (d.condition == name && (!d.key.empty() || !d.value.empty())) divergence.push_back(d);

  // Paired comparisons, per score; Holm/Bonferroni within each (score, test) family.
  std::vector<Score> scores = {Score::Nll};
  if (any_pmi) scores.push_back(Score::Pmi);
  stats::PairedOptions options;
  options.bootstrap_resamples = in.resamples;
  options.confidence = kConfidence;
  options.seed = in.seed;
  std::map<Score, std::vector<Comparison>> comparisons;
  for (Score score : scores) {
    auto& comps = comparisons[score];
    for (size_t i = 0; i < conditions.size(); ++i) {
      if (i == ib) continue;
      Comparison c = pair_up(data[ib], data[i], score);
      c.condition_index = i;
      if (c.n() >= 2) {
        c.s = stats::compare_paired(c.base, c.cond, options);
        c.computed = true;
      } else {
        c.why_not = c.n() == 0 ? "no sample is scored under both this condition and the baseline"
                               : "only 1 sample is scored under both this condition and the "
                                 "baseline; a paired comparison needs at least 2";
        if (score == Score::Pmi && c.n() == 0)
          c.why_not = "no sample has a PMI under both this condition and the baseline";
      }
      comps.push_back(std::move(c));
    }
    std::vector<stats::PairedComparison> family;
    for (const auto& c : comps)
      if (c.computed) family.push_back(c.s);
    stats::adjust_p_values(family);
    size_t k = 0;
    for (auto& c : comps)
      if (c.computed) c.s = family[k++];
  }
  // Ranking, per condition (the baseline included).
  std::map<Score, std::vector<Ranking>> rankings;
  if (any_candidates) {
    std::vector<Score> rank_scores = {Score::Nll};
    if (any_candidate_pmi) rank_scores.push_back(Score::Pmi);
    for (Score score : rank_scores)
      for (const auto& c : data)
        rankings[score].push_back(rank_condition(c, score, in.hit_ks, in.mrr_cutoff));
  }
  a.conditions = std::move(conditions);
  a.index = std::move(index);
  a.ib = ib;
  a.data = std::move(data);
  a.sample_ids = std::move(sample_ids);
  a.any_pmi = any_pmi;
  a.any_candidates = any_candidates;
  a.any_candidate_pmi = any_candidate_pmi;
  a.divergence = std::move(divergence);
  a.scores = std::move(scores);
  a.comparisons = std::move(comparisons);
  a.rankings = std::move(rankings);
  return a;
}

int64_t count_tests(const std::vector<Comparison>& comps, bool wilcoxon) {
  int64_t m = 0;
  for (const auto& c : comps)
    m += c.computed && std::isfinite(wilcoxon ? c.s.wilcoxon.p : c.s.t_test.p);
  return m;
}

// The tables of both outputs, and the footnotes their cells cite.
struct Tables {
  Notes notes;
  Table run_table;
  std::vector<std::pair<std::string, std::string>> big_meta;  // meta objects/arrays in full
  std::vector<std::pair<Score, Table>> main_tables, detail_tables;  // per Analysis::scores
  std::vector<std::pair<Score, Table>> ranking_tables;
  Table div_table;  // empty without divergences
  Table failures;   // no rows without failures
};

Tables make_tables(const Analysis& a) {
  const ReportInput& in = *a.input;
  const auto& conditions = a.conditions;
  const auto& data = a.data;
  const size_t ib = a.ib;
  Tables tables;
  Notes& notes = tables.notes;
  auto& main_tables = tables.main_tables;
  auto& detail_tables = tables.detail_tables;
  auto& ranking_tables = tables.ranking_tables;
  Table& div_table = tables.div_table;
  Table& run_table = tables.run_table;
  auto& big_meta = tables.big_meta;

  tables.failures.caption = std::to_string(in.failures.size()) +
                            " score(s) came out NaN or infinite: they are not results and are in no "
                            "statistic below (a failed sample drops out of its pairs)";
  tables.failures.header = {"sample", "condition", "candidate", "what", "detail"};
  for (const auto& f : in.failures)
    tables.failures.rows.push_back({name_cell(f.sample_id), name_cell(f.condition),
                                    text_cell(f.candidate < 0 ? "own" : std::to_string(f.candidate)),
                                    text_cell(f.what), name_cell(f.detail)});
  const auto& [scores, comparisons, rankings, divergence, sample_ids] =
      std::tie(a.scores, a.comparisons, a.rankings, a.divergence, a.sample_ids);

  for (Score score : scores) {
    const std::string S = score_label(score);
    const auto& comps = comparisons.at(score);
    Table t;
    t.caption = S + " of the sample's own passage, each condition against " + in.baseline;
    t.header = {"condition", "n",
                "mean " + S,
                "Δ" + S + " [95% CI]",
                "d",
                "win rate",
                "p_t (Holm)",
                "p_W (Holm)",
                "r(benefit, difficulty)"};
    t.numeric = {false, true, true, true, true, true, true, true, true};
    {
      const auto own = data[ib].own_scores(score);
      std::vector<Cell> row = {name_cell(in.baseline + " (baseline)"), text_cell(fmt_count(
                                   static_cast<int64_t>(own.size())))};
      row.push_back(own.empty() ? na_cell(notes, "the baseline has no rows with this score")
                                : text_cell(fmt_nll(stats::mean(own))));
      for (int k = 0; k < 6; ++k) row.push_back(dash_cell());
      t.rows.push_back(std::move(row));
    }
    for (const auto& c : comps) {
      std::vector<Cell> row = {name_cell(c.condition)};
      const int64_t dropped = c.only_condition + c.only_baseline;
      row.push_back(text_cell(fmt_count(c.n()) +
                              (dropped ? " (" + std::to_string(dropped) + " dropped)" : "")));
      if (!c.computed) {
        for (int k = 0; k < 7; ++k) row.push_back(na_cell(notes, c.why_not));
        t.rows.push_back(std::move(row));
        continue;
      }
      const auto& s = c.s;
      row.push_back(text_cell(fmt_nll(s.mean_condition)));
      row.push_back(text_cell(fmt_delta(s.mean_delta) + " [" + fmt_delta(s.delta_ci.lower) +
                              ", " + fmt_delta(s.delta_ci.upper) + "]"));
      row.push_back(value_cell(s.cohens_d, fmt_d, notes, kCohensDUndefined));
      row.push_back(text_cell(fmt_percent(s.win_rate)));
      row.push_back(value_cell(s.t_test.p_holm, fmt_p, notes, s.t_test.undefined));
      row.push_back(value_cell(s.wilcoxon.p_holm, fmt_p, notes, s.wilcoxon.undefined));
      row.push_back(value_cell(s.benefit_vs_difficulty_pearson.r, fmt_r, notes,
                               s.benefit_vs_difficulty_pearson.undefined));
      t.rows.push_back(std::move(row));
    }
    main_tables.push_back({score, std::move(t)});

    Table d;
    const int64_t m_t = count_tests(comps, false), m_w = count_tests(comps, true);
    d.caption = S + ": pairing and test details (p: raw, then Bonferroni and Holm over " +
                std::to_string(m_t) + (m_t == 1 ? " t-test" : " t-tests") + " and " +
                std::to_string(m_w) + (m_w == 1 ? " Wilcoxon test" : " Wilcoxon tests") + ")";
    d.header = {"condition", "pairs", "only in condition", "only in baseline",
                "baseline mean (pairs)", "sd Δ", "win / tie / loss", "t (df)", "p_t", "p_t Bonf.",
                "p_t Holm", "W (method)", "p_W", "p_W Bonf.", "p_W Holm", "Pearson r (p)",
                "Spearman ρ (p)"};
    d.numeric = {false, true, true, true, true, true, true, true, true,
                 true,  true, true, true, true, true, true, true};
    for (const auto& c : comps) {
      std::vector<Cell> row = {name_cell(c.condition), text_cell(fmt_count(c.n())),
                               text_cell(fmt_count(c.only_condition)),
                               text_cell(fmt_count(c.only_baseline))};
      if (!c.computed) {
        for (int k = 0; k < 13; ++k) row.push_back(na_cell(notes, c.why_not));
        d.rows.push_back(std::move(row));
        continue;
      }
      const auto& s = c.s;
      row.push_back(text_cell(fmt_nll(s.mean_baseline)));
      row.push_back(text_cell(fmt_nll(s.sd_delta)));
      row.push_back(text_cell(fmt_percent(s.win_rate) + " / " + fmt_percent(s.tie_rate) + " / " +
                              fmt_percent(s.loss_rate)));
      if (std::isfinite(s.t_test.t))
        row.push_back(text_cell(fmt_stat(s.t_test.t) + " (" + printf_str("%.0f", s.t_test.df) +
                                ")"));
      else
        row.push_back(na_cell(notes, s.t_test.undefined));
      row.push_back(value_cell(s.t_test.p, fmt_p, notes, s.t_test.undefined));
      row.push_back(value_cell(s.t_test.p_bonferroni, fmt_p, notes, s.t_test.undefined));
      row.push_back(value_cell(s.t_test.p_holm, fmt_p, notes, s.t_test.undefined));
      if (std::isfinite(s.wilcoxon.p))
        row.push_back(text_cell(printf_str("%g", s.wilcoxon.statistic) + " (" +
                                stats::to_string(s.wilcoxon.method) + ")"));
      else
        row.push_back(na_cell(notes, s.wilcoxon.undefined));
      row.push_back(value_cell(s.wilcoxon.p, fmt_p, notes, s.wilcoxon.undefined));
      row.push_back(value_cell(s.wilcoxon.p_bonferroni, fmt_p, notes, s.wilcoxon.undefined));
      row.push_back(value_cell(s.wilcoxon.p_holm, fmt_p, notes, s.wilcoxon.undefined));
      for (const auto* r : {&s.benefit_vs_difficulty_pearson, &s.benefit_vs_difficulty_spearman}) {
        if (std::isfinite(r->r))
          row.push_back(text_cell(fmt_r(r->r) + " (" + fmt_p(r->p) + ")"));
        else
          row.push_back(na_cell(notes, r->undefined));
      }
      d.rows.push_back(std::move(row));
    }
    detail_tables.push_back({score, std::move(d)});
  }

  for (const auto& [score, ranks] : rankings) {
    const std::string S = score_label(score);
    Table t;
    t.caption = "Ranking by " + S +
                ": the sample's own passage against its irrelevant passages (lower " + S +
                " ranks higher)";
    t.header = {"condition", "queries", "skipped", "irrelevant per query", "AUC",
                "MRR@" + std::to_string(in.mrr_cutoff)};
    for (int64_t k : in.hit_ks) t.header.push_back("Hit@" + std::to_string(k));
    t.numeric.assign(t.header.size(), true);
    t.numeric[0] = false;
    for (const auto& r : ranks) {
      std::vector<Cell> row = {name_cell(r.condition), text_cell(fmt_count(r.s.n_queries)),
                               text_cell(fmt_count(r.skipped))};
      if (!r.computed) {
        for (size_t k = 3; k < t.header.size(); ++k) row.push_back(na_cell(notes, r.why_not));
      } else {
        row.push_back(text_cell(r.min_candidates == r.max_candidates
                                    ? fmt_count(r.min_candidates)
                                    : fmt_count(r.min_candidates) + "–" +
                                          fmt_count(r.max_candidates)));
        row.push_back(text_cell(fmt_unit(r.s.auc)));
        row.push_back(text_cell(fmt_unit(r.s.mrr)));
        for (double h : r.s.hit_at_k) row.push_back(text_cell(fmt_unit(h)));
      }
      t.rows.push_back(std::move(row));
    }
    ranking_tables.push_back({score, std::move(t)});
  }

  if (!divergence.empty()) {
    size_t layers = 0;
    for (const auto& d : divergence) layers = std::max({layers, d.key.size(), d.value.size()});
    div_table.caption = "Mean relative L2 distance of each condition's cache to the bare cache, "
                        "per layer (K: keys, V: values)";
    div_table.header = {"layer"};
    for (const auto& d : divergence) {
      if (!d.key.empty()) div_table.header.push_back(d.condition + " K");
      if (!d.value.empty()) div_table.header.push_back(d.condition + " V");
    }
    div_table.numeric.assign(div_table.header.size(), true);
    for (size_t il = 0; il < layers; ++il) {
      std::vector<Cell> row = {text_cell(std::to_string(il))};
      for (const auto& d : divergence)
        for (const auto* v : {&d.key, &d.value}) {
          if (v->empty()) continue;
          row.push_back(il < v->size() ? text_cell(fmt_div((*v)[il])) : dash_cell());
        }
      div_table.rows.push_back(std::move(row));
    }
  }

  // Header facts (the run and the pairing).
  run_table.caption = "Run";
  run_table.header = {"field", "value"};
  if (in.meta.is_object()) {
    for (const auto& [key, value] : in.meta.items()) {
      std::string text;
      if (value.is_string()) {
        text = value.get<std::string>();
      } else {
        text = value.dump(-1, ' ', false, json::error_handler_t::replace);
        if ((value.is_object() || value.is_array()) && text.size() > 100) {
          big_meta.push_back({key, value.dump(2, ' ', false, json::error_handler_t::replace)});
          text = "(below)";
        }
      }
      run_table.rows.push_back({name_cell(key), name_cell(text)});
    }
  }
  std::string cond_list;
  for (size_t i = 0; i < conditions.size(); ++i) cond_list += (i ? ", " : "") + conditions[i];
  run_table.rows.push_back({text_cell("baseline"), name_cell(in.baseline)});
  run_table.rows.push_back({text_cell("conditions"), name_cell(cond_list)});
  run_table.rows.push_back({text_cell("samples / rows"),
                            text_cell(std::to_string(sample_ids.size()) + " / " +
                                      std::to_string(in.rows.size()))});
  run_table.rows.push_back(
      {text_cell("bootstrap"), text_cell(std::to_string(in.resamples) +
                                         " resamples, percentile 95% CI, seed " +
                                         std::to_string(in.seed))});
  return tables;
}

std::vector<std::string> method_notes(const ReportInput& in) {
  // Method notes (shown in both outputs).
  return {
      "ΔNLL = condition − baseline for the same sample; negative means the condition lowers the "
      "answer NLL (helps). Win rate: fraction of pairs with Δ < 0.",
      "Only samples scored under both the condition and the baseline are paired; \"dropped\" "
      "counts samples that one side has and the other lacks.",
      "95% CI: percentile bootstrap of the mean Δ (" + std::to_string(in.resamples) +
          " resamples, seed " + std::to_string(in.seed) +
          ", the same stream for every comparison).",
      "d: paired Cohen's d (mean Δ / sd Δ).",
      "p_t: paired t-test; p_W: Wilcoxon signed-rank test (zeros dropped; exact or normal "
      "approximation by scipy's 'auto' rule). Both two-sided. Holm and Bonferroni adjust over "
      "the comparisons of one table, t-tests and Wilcoxon tests as separate families.",
      "r(benefit, difficulty): Pearson r of benefit = baseline − condition with the baseline "
      "score. The benefit shares the baseline's noise, which alone makes r positive (regression "
      "to the mean): compare conditions with each other, not r with 0.",
      "Ranking: per sample, the own passage against its irrelevant passages scored under the "
      "same condition; ties count at their expectation. AUC: fraction of irrelevant passages "
      "the own passage beats (ties 1/2), averaged over samples.",
  };
}

std::string markdown_report(const Analysis& a, const Tables& tables,
                            const std::vector<std::string>& method) {
  const ReportInput& in = *a.input;
  const auto& scores = a.scores;
  const auto& notes = tables.notes;
  const auto& [run_table, big_meta, main_tables, detail_tables, ranking_tables, div_table] =
      std::tie(tables.run_table, tables.big_meta, tables.main_tables, tables.detail_tables,
               tables.ranking_tables, tables.div_table);
  const auto& divergence = a.divergence;

  std::string md = "# " + md_escape(in.title, true) + "\n\n";
  md += render_markdown(run_table);
  // Large meta values (the config) in full: an HTML <pre> block (CommonMark HTML block type 1,
  // which may hold blank lines) with &, < and > as entities, so nothing in them is markup.
  for (const auto& [key, text] : big_meta) {
    md += "**" + md_escape(key, true) + "**\n\n<pre>";
    for (char c : text) {
      if (c == '&') md += "&amp;";
      else if (c == '<') md += "&lt;";
      else if (c == '>') md += "&gt;";
      else md += c;
    }
    md += "</pre>\n\n";
  }
  md += "Plots: see report.html.\n\n";
  if (!tables.failures.rows.empty()) {
    md += "## Failed scores\n\n";
    md += render_markdown(tables.failures);
  }
  for (size_t i = 0; i < scores.size(); ++i) {
    md += std::string("## ") + (scores[i] == Score::Nll ? "Answer NLL" : "PMI") +
          " against the baseline\n\n";
    md += render_markdown(main_tables[i].second);
    md += render_markdown(detail_tables[i].second);
  }
  if (!ranking_tables.empty()) {
    md += "## Ranking with irrelevant passages\n\n";
    for (const auto& [score, t] : ranking_tables) md += render_markdown(t);
  }
  if (!divergence.empty()) {
    md += "## Per-layer key/value divergence\n\n" + render_markdown(div_table);
  }
  md += "## Method\n\n";
  for (const auto& m : method) md += "- " + md_escape(m, false) + "\n";
  md += "\n";
  if (!notes.texts().empty()) {
    for (size_t i = 0; i < notes.texts().size(); ++i)
      md += "[^" + std::to_string(i + 1) + "]: " + md_escape(notes.texts()[i], true) + "\n";
  }
  return md;
}

std::string html_report(const Analysis& a, const Tables& tables,
                        const std::vector<std::string>& method) {
  const ReportInput& in = *a.input;
  const auto& scores = a.scores;
  const auto& notes = tables.notes;
  const auto& [run_table, big_meta, main_tables, detail_tables, ranking_tables, div_table] =
      std::tie(tables.run_table, tables.big_meta, tables.main_tables, tables.detail_tables,
               tables.ranking_tables, tables.div_table);
  const auto& divergence = a.divergence;
  const auto& comparisons = a.comparisons;
  const auto& conditions = a.conditions;
  const auto& sample_ids = a.sample_ids;
  const auto& index = a.index;
  // Plots
  std::map<std::string, std::vector<std::string>> figures;  // section -> figures
  for (Score score : scores) {
    std::vector<const Comparison*> computed;
    for (const auto& c : comparisons.at(score))
      if (c.computed) computed.push_back(&c);
    if (computed.empty() || score != Score::Nll) continue;
    const std::string S = score_label(score);
    figures["nll"].push_back(figure(
        plot_deltas(computed, in.max_plot_points),
        "Δ" + S + " = condition − " + in.baseline +
            " per sample (left of the dashed line: the condition lowers the NLL). Box: "
            "quartiles and median; whiskers: minimum to maximum; diamond: mean; dots: samples." +
            subsample_note(computed, in.max_plot_points)));
    figures["nll"].push_back(figure(
        plot_benefit(computed, in.max_plot_points),
        "Benefit (" + in.baseline + " − condition) against difficulty (" + in.baseline +
            " " + S + ") per sample, with the least-squares line and Pearson r. Regression to "
            "the mean alone tilts these lines upward: compare conditions, not slopes with 0." +
            subsample_note(computed, in.max_plot_points)));
  }
  if (!divergence.empty())
    figures["divergence"].push_back(figure(
        plot_divergence(divergence, index),
        "Mean relative L2 distance ||K_c − K_bare|| / ||K_bare|| (left) and the same for values "
        "(right) per layer, over the samples measured."));


  using svg::xml_escape;
  std::string html = "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                     "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
                     "<title>" + xml_escape(in.title) + "</title>\n<style>" + kCss +
                     "</style>\n</head>\n<body>\n<main>\n";
  html += "<h1>" + xml_escape(in.title) + "</h1>\n";
  html += "<p class=\"lede\">Each condition against the baseline <b>" + xml_escape(in.baseline) +
          "</b>: " + std::to_string(sample_ids.size()) + " samples, " +
          std::to_string(in.rows.size()) + " rows, " + std::to_string(conditions.size()) +
          " conditions.</p>\n";
  html += "<section id=\"run\">\n" + render_html(run_table);
  for (const auto& [key, text] : big_meta)
    html += "<details><summary>" + xml_escape(key) + "</summary><pre>" + xml_escape(text) +
            "</pre></details>\n";
  html += "</section>\n";
  if (!tables.failures.rows.empty())
    html += "<section id=\"failures\">\n<h2>Failed scores</h2>\n" + render_html(tables.failures) +
            "</section>\n";
  for (size_t i = 0; i < scores.size(); ++i) {
    const bool nll = scores[i] == Score::Nll;
    html += std::string("<section id=\"") + score_key(scores[i]) + "\">\n<h2>" +
            (nll ? "Answer NLL" : "PMI") + " against the baseline</h2>\n";
    html += render_html(main_tables[i].second);
    if (nll)
      for (const auto& f : figures["nll"]) html += f;
    html += render_html(detail_tables[i].second);
    html += "</section>\n";
  }
  if (!ranking_tables.empty()) {
    html += "<section id=\"ranking\">\n<h2>Ranking with irrelevant passages</h2>\n";
    for (const auto& [score, t] : ranking_tables) html += render_html(t);
    html += "</section>\n";
  }
  if (!divergence.empty()) {
    html += "<section id=\"divergence\">\n<h2>Per-layer key/value divergence</h2>\n";
    for (const auto& f : figures["divergence"]) html += f;
    html += render_html(div_table) + "</section>\n";
  }
  html += "<section id=\"method\">\n<h2>Method</h2>\n<ul class=\"method\">\n";
  for (const auto& m : method) html += "<li>" + xml_escape(m) + "</li>\n";
  html += "</ul>\n";
  if (!notes.texts().empty()) {
    html += "<h2>Notes</h2>\n<ol class=\"notes\">\n";
    for (size_t i = 0; i < notes.texts().size(); ++i)
      html += "<li id=\"note-" + std::to_string(i + 1) + "\">" + xml_escape(notes.texts()[i]) +
              "</li>\n";
    html += "</ol>\n";
  }
  html += "</section>\n</main>\n</body>\n</html>\n";
  return html;
}

json summary_json(const Analysis& a, const Notes& notes) {
  const ReportInput& in = *a.input;
  const auto& [conditions, data, ib, scores, comparisons, rankings, divergence, sample_ids] =
      std::tie(a.conditions, a.data, a.ib, a.scores, a.comparisons, a.rankings, a.divergence,
               a.sample_ids);

  json summary;
  summary["title"] = in.title;
  summary["baseline"] = in.baseline;
  summary["meta"] = in.meta;
  summary["seed"] = in.seed;
  summary["resamples"] = in.resamples;
  summary["confidence"] = kConfidence;
  summary["n_rows"] = in.rows.size();
  summary["n_samples"] = sample_ids.size();
  summary["conditions"] = json::array();
  for (size_t i = 0; i < conditions.size(); ++i) {
    const auto nll = data[i].own_scores(Score::Nll);
    const auto pmi = data[i].own_scores(Score::Pmi);
    summary["conditions"].push_back(
        {{"name", conditions[i]},
         {"is_baseline", i == ib},
         {"n_rows", data[i].n_rows},
         {"n_own", nll.size()},
         {"mean_nll", nll.empty() ? json(nullptr) : json(stats::mean(nll))},
         {"mean_pmi", pmi.empty() ? json(nullptr) : json(stats::mean(pmi))}});
  }
  summary["comparisons"] = json::object();
  for (Score score : scores) {
    json arr = json::array();
    for (const auto& c : comparisons.at(score)) arr.push_back(comparison_json(c));
    summary["comparisons"][score_key(score)] = arr;
  }
  summary["ranking"] = json::object();
  for (const auto& [score, ranks] : rankings) {
    json arr = json::array();
    for (const auto& r : ranks) arr.push_back(ranking_json(r));
    summary["ranking"][score_key(score)] = arr;
  }
  summary["divergence"] = json::array();
  for (const auto& d : divergence)
    summary["divergence"].push_back(
        {{"condition", d.condition}, {"key", d.key}, {"value", d.value}});
  summary["failures"] = json::array();
  for (const auto& f : in.failures)
    summary["failures"].push_back({{"sample_id", f.sample_id},
                                   {"condition", f.condition},
                                   {"candidate", f.candidate},
                                   {"what", f.what},
                                   {"detail", f.detail}});
  summary["notes"] = notes.texts();
  return summary;
}

// results.csv: one line per input row, with the baseline's NLL for the same sample and candidate.
std::string results_csv(const Analysis& a) {
  const ReportInput& in = *a.input;
  const auto& data = a.data;
  const size_t ib = a.ib;

  std::string csv_rows = csv_line({"sample_id", "condition", "candidate", "nll", "pmi",
                                   "baseline_nll", "delta_nll"});
  for (const auto& row : in.rows) {
    const ConditionRows& b = data[ib];
    const ReportRow* base = nullptr;
    if (row.candidate == -1) {
      const auto it = b.own.find(row.sample_id);
      if (it != b.own.end()) base = it->second;
    } else {
      const auto it = b.candidates.find(row.sample_id);
      if (it != b.candidates.end()) {
        const auto jt = it->second.find(row.candidate);
        if (jt != it->second.end()) base = jt->second;
      }
    }
    csv_rows += csv_line({row.sample_id, row.condition, std::to_string(row.candidate),
                          fmt_exact(row.nll), row.pmi ? fmt_exact(*row.pmi) : "",
                          base ? fmt_exact(base->nll) : "",
                          base ? fmt_exact(row.nll - base->nll) : ""});
  }
  return csv_rows;
}

// summary.csv: one line per condition; the columns are decided once for all lines.
std::string summary_csv(const Analysis& a) {
  const ReportInput& in = *a.input;
  const auto& [conditions, data, ib, scores, comparisons, rankings, divergence] =
      std::tie(a.conditions, a.data, a.ib, a.scores, a.comparisons, a.rankings, a.divergence);

  std::vector<std::string> header;
  std::vector<std::vector<std::string>> lines(conditions.size());
  auto put = [&](size_t i, const std::string& name, const std::string& value) {
    if (i == 0) header.push_back(name);
    lines[i].push_back(value);
  };
  auto exact = [](double v) { return std::isfinite(v) ? fmt_exact(v) : std::string(); };
  const Comparison* none = nullptr;
  for (size_t i = 0; i < conditions.size(); ++i) {
    const auto nll = data[i].own_scores(Score::Nll);
    put(i, "condition", conditions[i]);
    put(i, "is_baseline", i == ib ? "1" : "0");
    put(i, "n_rows", std::to_string(data[i].n_rows));
    put(i, "n_own", std::to_string(nll.size()));
    put(i, "mean_nll", nll.empty() ? "" : fmt_exact(stats::mean(nll)));
    for (Score score : scores) {
      const std::string p = std::string(score_key(score)) + "_";
      const Comparison* c = none;
      for (const auto& x : comparisons.at(score))
        if (x.condition == conditions[i]) c = &x;
      const bool ok = c && c->computed;
      const stats::PairedComparison s = ok ? c->s : stats::PairedComparison{};
      auto v = [&](double x) { return ok ? exact(x) : std::string(); };
      put(i, p + "n", c ? std::to_string(c->n()) : "");
      put(i, p + "only_condition", c ? std::to_string(c->only_condition) : "");
      put(i, p + "only_baseline", c ? std::to_string(c->only_baseline) : "");
      put(i, p + "mean_baseline", v(s.mean_baseline));
      put(i, p + "mean_condition", v(s.mean_condition));
      put(i, p + "mean_delta", v(s.mean_delta));
      put(i, p + "ci_lower", v(s.delta_ci.lower));
      put(i, p + "ci_upper", v(s.delta_ci.upper));
      put(i, p + "sd_delta", v(s.sd_delta));
      put(i, p + "cohens_d", v(s.cohens_d));
      put(i, p + "win_rate", v(s.win_rate));
      put(i, p + "tie_rate", v(s.tie_rate));
      put(i, p + "loss_rate", v(s.loss_rate));
      put(i, p + "t", v(s.t_test.t));
      put(i, p + "df", v(s.t_test.df));
      put(i, p + "p_t", v(s.t_test.p));
      put(i, p + "p_t_bonferroni", v(s.t_test.p_bonferroni));
      put(i, p + "p_t_holm", v(s.t_test.p_holm));
      put(i, p + "wilcoxon_statistic",
          ok && std::isfinite(s.wilcoxon.p) ? exact(s.wilcoxon.statistic) : "");
      put(i, p + "wilcoxon_method", ok ? stats::to_string(s.wilcoxon.method) : "");
      put(i, p + "p_w", v(s.wilcoxon.p));
      put(i, p + "p_w_bonferroni", v(s.wilcoxon.p_bonferroni));
      put(i, p + "p_w_holm", v(s.wilcoxon.p_holm));
      put(i, p + "pearson_r", v(s.benefit_vs_difficulty_pearson.r));
      put(i, p + "pearson_p", v(s.benefit_vs_difficulty_pearson.p));
      put(i, p + "spearman_rho", v(s.benefit_vs_difficulty_spearman.r));
      put(i, p + "spearman_p", v(s.benefit_vs_difficulty_spearman.p));
    }
    for (const auto& [score, ranks] : rankings) {
      const std::string p = std::string("rank_") + score_key(score) + "_";
      const Ranking& r = ranks[i];
      auto v = [&](double x) { return r.computed ? exact(x) : std::string(); };
      put(i, p + "queries", std::to_string(r.s.n_queries));
      put(i, p + "auc", v(r.s.auc));
      put(i, p + "mrr_at_" + std::to_string(in.mrr_cutoff), v(r.s.mrr));
      for (size_t k = 0; k < in.hit_ks.size(); ++k)
        put(i, p + "hit_at_" + std::to_string(in.hit_ks[k]),
            r.computed ? exact(r.s.hit_at_k[k]) : "");
    }
    if (!divergence.empty()) {
      const LayerDivergence* d = nullptr;
      for (const auto& x : divergence)
        if (x.condition == conditions[i]) d = &x;
      put(i, "key_divergence_mean", d && !d->key.empty() ? exact(stats::mean(d->key)) : "");
      put(i, "value_divergence_mean", d && !d->value.empty() ? exact(stats::mean(d->value)) : "");
    }
  }
  std::string csv_summary = csv_line(header);
  for (const auto& l : lines) csv_summary += csv_line(l);
  return csv_summary;
}

}  // namespace

Report build_report(const ReportInput& in) {
  const Analysis a = analyze(in);
  Tables tables = make_tables(a);
  const auto method = method_notes(in);
  Report report;
  report.markdown = markdown_report(a, tables, method);
  report.html = html_report(a, tables, method);
  report.summary = summary_json(a, tables.notes);
  report.csv_rows = results_csv(a);
  report.csv_summary = summary_csv(a);
  return report;
}

void write_report(const Report& report, const std::string& out_dir) {
  KVP_CHECK(!out_dir.empty(), "write_report: the output directory is empty; name a directory");
  std::error_code ec;
  KVP_CHECK(!std::filesystem::exists(out_dir, ec) || std::filesystem::is_directory(out_dir, ec),
            "write_report: '", out_dir,
            "' exists and is not a directory; choose a directory for the report");
  std::filesystem::create_directories(out_dir, ec);
  KVP_CHECK(!ec, "write_report: cannot create the output directory '", out_dir, "': ",
            ec.message(), "; choose a writable location");
  const std::filesystem::path dir(out_dir);
  write_file_atomically((dir / "report.md").string(), report.markdown, "write_report");
  write_file_atomically((dir / "report.html").string(), report.html, "write_report");
  write_file_atomically((dir / "results.csv").string(), report.csv_rows, "write_report");
  write_file_atomically((dir / "summary.csv").string(), report.csv_summary, "write_report");
}

}  // namespace kvprime
