#include "analysis/svg.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace kvprime::svg {
namespace {

// One decimal, never "-0.0".
std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  std::string s = buf;
  if (s == "-0.0") s = "0.0";
  return s;
}

// An opacity: two decimals.
std::string fraction(double v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%.2f", std::clamp(v, 0.0, 1.0));
  return buf;
}

double tick_step(double lo, double hi, int target) {
  const double raw = (hi - lo) / std::max(target, 1);
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double f = raw / mag;
  return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * mag;
}

}  // namespace

std::string xml_escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default:
        if (c < 0x20 && c != '\t' && c != '\n' && c != '\r')
          out += "\xEF\xBF\xBD";  // U+FFFD: XML 1.0 allows no other control characters
        else
          out += ch;
    }
  }
  return out;
}

double Scale::operator()(double v) const {
  if (d1 == d0) return (r0 + r1) / 2;
  return r0 + (v - d0) / (d1 - d0) * (r1 - r0);
}

std::vector<double> nice_ticks(double lo, double hi, int target) {
  if (!(hi > lo)) return {lo};
  const double step = tick_step(lo, hi, target);
  const auto first = static_cast<long long>(std::ceil(lo / step - 1e-9));
  const auto last = static_cast<long long>(std::floor(hi / step + 1e-9));
  std::vector<double> ticks;
  for (long long i = first; i <= last; ++i) ticks.push_back(i == 0 ? 0.0 : i * step);
  return ticks;
}

std::pair<double, double> nice_domain(double lo, double hi, int target) {
  if (!(hi > lo)) {
    const double pad = lo == 0 ? 1 : std::fabs(lo) * 0.1;
    lo -= pad;
    hi += pad;
  }
  const double step = tick_step(lo, hi, target);
  return {std::floor(lo / step + 1e-9) * step, std::ceil(hi / step - 1e-9) * step};
}

std::string tick_label(double v, double step) {
  char buf[48];
  if (std::fabs(v) < step * 1e-6) v = 0;
  if (step > 0 && (step < 1e-4 || std::fabs(v) >= 1e6)) {
    std::snprintf(buf, sizeof buf, "%.3g", v);
  } else {
    const int decimals =
        step > 0 ? std::max(0, static_cast<int>(-std::floor(std::log10(step) + 1e-9))) : 2;
    std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  }
  std::string s = buf;
  if (s[0] == '-' && s.find_first_not_of("-0.") == std::string::npos) s.erase(0, 1);
  return s;
}

const char* palette(size_t i) {
  // Tableau 10.
  static const char* const colours[] = {"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
                                        "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"};
  return colours[i % 10];
}

Canvas::Canvas(double width, double height, const std::string& label)
    : width_(width), height_(height), label_(label) {}

void Canvas::line(double x1, double y1, double x2, double y2, const char* stroke,
                  double stroke_width, const char* dash) {
  body_ += "<line x1=\"" + num(x1) + "\" y1=\"" + num(y1) + "\" x2=\"" + num(x2) + "\" y2=\"" +
           num(y2) + "\" stroke=\"" + stroke + "\" stroke-width=\"" + num(stroke_width) + "\"";
  if (dash) body_ += std::string(" stroke-dasharray=\"") + dash + "\"";
  body_ += "/>\n";
}

void Canvas::rect(double x, double y, double w, double h, const char* fill, const char* stroke,
                  double opacity) {
  body_ += "<rect x=\"" + num(x) + "\" y=\"" + num(y) + "\" width=\"" + num(std::max(w, 0.0)) +
           "\" height=\"" + num(std::max(h, 0.0)) + "\" fill=\"" + fill + "\"";
  if (stroke) body_ += std::string(" stroke=\"") + stroke + "\"";
  if (opacity < 1) body_ += " fill-opacity=\"" + fraction(opacity) + "\"";
  body_ += "/>\n";
}

void Canvas::circle(double cx, double cy, double r, const char* fill, double opacity) {
  body_ += "<circle cx=\"" + num(cx) + "\" cy=\"" + num(cy) + "\" r=\"" + num(r) + "\" fill=\"" +
           fill + "\"";
  if (opacity < 1) body_ += " fill-opacity=\"" + fraction(opacity) + "\"";
  body_ += "/>\n";
}

void Canvas::diamond(double cx, double cy, double r, const char* fill, const char* stroke) {
  body_ += "<polygon points=\"" + num(cx) + "," + num(cy - r) + " " + num(cx + r) + "," +
           num(cy) + " " + num(cx) + "," + num(cy + r) + " " + num(cx - r) + "," + num(cy) +
           "\" fill=\"" + fill + "\" stroke=\"" + stroke + "\"/>\n";
}

void Canvas::polyline(const std::vector<std::pair<double, double>>& points, const char* stroke,
                      double stroke_width) {
  body_ += "<polyline fill=\"none\" stroke=\"" + std::string(stroke) + "\" stroke-width=\"" +
           num(stroke_width) + "\" points=\"";
  for (size_t i = 0; i < points.size(); ++i)
    body_ += (i ? " " : "") + num(points[i].first) + "," + num(points[i].second);
  body_ += "\"/>\n";
}

void Canvas::text(double x, double y, const std::string& content, const char* anchor, double size,
                  double rotate, const std::string& tooltip, const char* weight) {
  body_ += "<text x=\"" + num(x) + "\" y=\"" + num(y) + "\" font-size=\"" + num(size) +
           "\" text-anchor=\"" + anchor + "\"";
  if (weight) body_ += std::string(" font-weight=\"") + weight + "\"";
  if (rotate != 0)
    body_ += " transform=\"rotate(" + num(rotate) + " " + num(x) + " " + num(y) + ")\"";
  body_ += ">";
  if (!tooltip.empty()) body_ += "<title>" + xml_escape(tooltip) + "</title>";
  body_ += xml_escape(content) + "</text>\n";
}

void Canvas::axis_bottom(const Scale& x, const std::vector<double>& ticks, double y,
                         double grid_top, const std::string& title) {
  const double step = ticks.size() > 1 ? ticks[1] - ticks[0] : 1;
  for (double t : ticks) {
    const double px = x(t);
    if (grid_top < y) line(px, grid_top, px, y, "#e5e5e5");
    line(px, y, px, y + 4, "#555");
    text(px, y + 15, tick_label(t, step), "middle", 10);
  }
  line(x.r0, y, x.r1, y, "#555");
  if (!title.empty()) text((x.r0 + x.r1) / 2, y + 32, title, "middle", 11);
}

void Canvas::axis_left(const Scale& y, const std::vector<double>& ticks, double x,
                       double grid_right, const std::string& title) {
  const double step = ticks.size() > 1 ? ticks[1] - ticks[0] : 1;
  for (double t : ticks) {
    const double py = y(t);
    if (grid_right > x) line(x, py, grid_right, py, "#e5e5e5");
    line(x - 4, py, x, py, "#555");
    text(x - 6, py + 3.5, tick_label(t, step), "end", 10);
  }
  line(x, y.r0, x, y.r1, "#555");
  if (!title.empty()) text(x - 42, (y.r0 + y.r1) / 2, title, "middle", 11, -90);
}

std::string Canvas::str() const {
  return "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 " + num(width_) + " " +
         num(height_) + "\" width=\"" + num(width_) + "\" height=\"" + num(height_) +
         "\" role=\"img\" aria-label=\"" + xml_escape(label_) +
         "\" font-family=\"system-ui, sans-serif\">\n<title>" + xml_escape(label_) +
         "</title>\n" + body_ + "</svg>\n";
}

std::string shorten(const std::string& text, size_t max_chars) {
  size_t count = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    if ((static_cast<unsigned char>(text[i]) & 0xC0) == 0x80) continue;  // continuation byte
    if (count == max_chars - 1) {
      // Is there more than one more code point after this position?
      size_t rest = 0;
      for (size_t j = i; j < text.size(); ++j)
        rest += (static_cast<unsigned char>(text[j]) & 0xC0) != 0x80;
      if (rest > 1) return text.substr(0, i) + "\xE2\x80\xA6";  // "…"
      return text;
    }
    ++count;
  }
  return text;
}

}  // namespace kvprime::svg
