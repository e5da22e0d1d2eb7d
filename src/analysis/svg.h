// A small SVG writer for the report's plots (src/analysis/report.cpp): primitives, linear
// scales with "nice" ticks, axes and a categorical palette. Private to the library.
//
// Every piece of text that reaches the output goes through xml_escape, so names from a run
// (conditions, titles) can never inject markup. Coordinates are written with one decimal:
// enough for a screen, and it keeps plots of thousands of points small.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kvprime::svg {

// &, <, >, " and ' as entities; control characters other than tab/newline become U+FFFD
// (they are not allowed in XML 1.0).
std::string xml_escape(std::string_view text);

// Maps [d0, d1] linearly onto [r0, r1] (r1 < r0 for a y axis that grows upward).
struct Scale {
  double d0 = 0, d1 = 1, r0 = 0, r1 = 1;
  double operator()(double v) const;
};

// About `target` round tick values (steps of 1, 2 or 5 times a power of ten) covering [lo, hi].
// lo == hi gives one tick.
std::vector<double> nice_ticks(double lo, double hi, int target = 5);
// [lo, hi] widened outward to the nearest ticks of nice_ticks (so the data fill the axis).
std::pair<double, double> nice_domain(double lo, double hi, int target = 5);
// A tick label with as many decimals as the tick step needs ("0.25", "-1", "1e-05").
std::string tick_label(double v, double step);

// Colour i of a categorical palette (colour-blind friendly, repeats after 10).
const char* palette(size_t i);

class Canvas {
 public:
  Canvas(double width, double height, const std::string& label);

  double width() const { return width_; }
  double height() const { return height_; }

  void line(double x1, double y1, double x2, double y2, const char* stroke, double stroke_width = 1,
            const char* dash = nullptr);
  void rect(double x, double y, double w, double h, const char* fill, const char* stroke = nullptr,
            double opacity = 1);
  void circle(double cx, double cy, double r, const char* fill, double opacity = 1);
  // A diamond (mean marker) centred at (cx, cy).
  void diamond(double cx, double cy, double r, const char* fill, const char* stroke);
  void polyline(const std::vector<std::pair<double, double>>& points, const char* stroke,
                double stroke_width = 1.5);
  // anchor: "start", "middle" or "end"; rotate in degrees about (x, y); `tooltip` (if not
  // empty) becomes a <title> child shown on hover (e.g. the full name of a shortened label).
  void text(double x, double y, const std::string& content, const char* anchor = "start",
            double size = 11, double rotate = 0, const std::string& tooltip = "",
            const char* weight = nullptr);

  // Horizontal axis at y = `y` from x.r0 to x.r1 with tick marks, labels and grid lines up to
  // `grid_top` (grid_top == y: no grid).
  void axis_bottom(const Scale& x, const std::vector<double>& ticks, double y, double grid_top,
                   const std::string& title);
  // Vertical axis at x = `x` with ticks, labels and grid lines to `grid_right`.
  void axis_left(const Scale& y, const std::vector<double>& ticks, double x, double grid_right,
                 const std::string& title);

  // The complete <svg> element.
  std::string str() const;

 private:
  double width_, height_;
  std::string label_;
  std::string body_;
};

// `text` shortened to at most `max_chars` code points (UTF-8 aware), with "…" when cut.
std::string shorten(const std::string& text, size_t max_chars);

}  // namespace kvprime::svg
