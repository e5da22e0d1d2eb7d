// Normalizers and the alignment-tracking string operations they use (HF NormalizedString).
#include "kvprime/core/error.h"
#include "tokenizer/pipeline.h"
#include "tokenizer/utf8.h"

namespace kvprime::tok {

NormStr make_norm(std::string_view original, uint32_t base) {
  NormStr n;
  n.s.assign(original.data(), original.size());
  n.align.resize(original.size());
  size_t i = 0;
  while (i < original.size()) {
    size_t len = utf8_len(static_cast<unsigned char>(original[i]));
    Span sp{static_cast<uint32_t>(base + i), static_cast<uint32_t>(base + i + len)};
    for (size_t k = 0; k < len; ++k) n.align[i + k] = sp;
    i += len;
  }
  n.orig = {base, static_cast<uint32_t>(base + original.size())};
  return n;
}

void ns_replace_ranges(NormStr& n, const std::vector<std::pair<size_t, size_t>>& ranges,
                       std::string_view content) {
  if (ranges.empty()) return;
  std::string s;
  std::vector<Span> al;
  s.reserve(n.s.size() + ranges.size() * content.size());
  al.reserve(s.capacity());
  size_t prev = 0;
  for (auto [b, e] : ranges) {
    s.append(n.s, prev, b - prev);
    al.insert(al.end(), n.align.begin() + prev, n.align.begin() + b);
    // New chars are insertions after the removed ones: they share the last removed byte's span.
    Span sp = n.align[e - 1];
    s.append(content);
    al.insert(al.end(), content.size(), sp);
    prev = e;
  }
  s.append(n.s, prev, std::string::npos);
  al.insert(al.end(), n.align.begin() + prev, n.align.end());
  n.s.swap(s);
  n.align.swap(al);
}

void ns_replace(NormStr& n, std::string_view pat, std::string_view content) {
  if (pat.empty()) return;
  std::vector<std::pair<size_t, size_t>> ranges;
  size_t pos = 0;
  std::string_view s(n.s);
  while ((pos = s.find(pat, pos)) != std::string_view::npos) {
    ranges.emplace_back(pos, pos + pat.size());
    pos += pat.size();
  }
  ns_replace_ranges(n, ranges, content);
}

void ns_prepend(NormStr& n, std::string_view p) {
  if (n.s.empty() || p.empty()) return;
  size_t first = utf8_len(static_cast<unsigned char>(n.s[0]));
  Span sp = n.align[first - 1];
  n.s.insert(0, p);
  n.align.insert(n.align.begin(), p.size(), sp);
  for (size_t k = 0; k < first; ++k) n.align[p.size() + k] = sp;
}

void ns_append(NormStr& n, std::string_view p) {
  if (n.s.empty() || p.empty()) return;
  size_t b = n.s.size();
  while (b > 0 && (static_cast<unsigned char>(n.s[b - 1]) & 0xC0) == 0x80) --b;
  if (b > 0) --b;
  Span first = n.align[b], last = n.align.back();
  for (size_t k = b; k < n.s.size(); ++k) n.align[k] = first;
  n.s.append(p);
  n.align.insert(n.align.end(), p.size(), last);
}

void ns_nfc(NormStr& n, bool compose) {
  if (nfc_quick_inert(n.s)) return;
  std::vector<SrcCp> cps;
  std::vector<uint32_t> starts;  // byte start of each source char
  size_t i = 0;
  while (i < n.s.size()) {
    starts.push_back(static_cast<uint32_t>(i));
    uint32_t cp = utf8_next(n.s, i);
    cps.push_back({cp, static_cast<uint32_t>(starts.size() - 1)});
  }
  starts.push_back(static_cast<uint32_t>(n.s.size()));
  nfd_decompose(cps);
  if (compose) nfc_compose(cps);
  std::string s;
  std::vector<Span> al;
  s.reserve(n.s.size() + 8);
  al.reserve(s.capacity());
  uint32_t last_src = UINT32_MAX;
  for (const auto& c : cps) {
    // First char produced from a source char replaces it; further ones are insertions.
    Span sp = c.src != last_src ? n.align[starts[c.src]] : n.align[starts[c.src + 1] - 1];
    last_src = c.src;
    size_t before = s.size();
    utf8_append(s, c.cp);
    al.insert(al.end(), s.size() - before, sp);
  }
  n.s.swap(s);
  n.align.swap(al);
}

namespace {

class SequenceNormalizer : public Normalizer {
 public:
  std::vector<std::unique_ptr<Normalizer>> parts;
  void normalize(NormStr& n) const override {
    for (const auto& p : parts) p->normalize(n);
  }
};

class PrependNormalizer : public Normalizer {
 public:
  std::string text;
  void normalize(NormStr& n) const override { ns_prepend(n, text); }
};

class AppendNormalizer : public Normalizer {
 public:
  std::string text;
  void normalize(NormStr& n) const override { ns_append(n, text); }
};

class ReplaceNormalizer : public Normalizer {
 public:
  PatternMatcher pattern;
  std::string content;
  void normalize(NormStr& n) const override {
    if (!pattern.re) {
      ns_replace(n, pattern.literal, content);
      return;
    }
    std::vector<std::pair<std::pair<size_t, size_t>, bool>> segs;
    pattern.segments(n.s, segs);
    std::vector<std::pair<size_t, size_t>> ranges;
    for (const auto& [r, m] : segs)
      if (m) ranges.push_back(r);
    ns_replace_ranges(n, ranges, content);
  }
};

class NfcNormalizer : public Normalizer {
 public:
  bool compose = true;
  void normalize(NormStr& n) const override { ns_nfc(n, compose); }
};

class StripNormalizer : public Normalizer {
 public:
  bool left = true, right = true;
  void normalize(NormStr& n) const override {
    size_t b = 0, e = n.s.size();
    if (left) {
      while (b < e) {
        size_t i = b;
        if (!is_white_space(utf8_next(n.s, i))) break;
        b = i;
      }
    }
    if (right) {
      while (e > b) {
        size_t k = e - 1;
        while (k > b && (static_cast<unsigned char>(n.s[k]) & 0xC0) == 0x80) --k;
        size_t i = k;
        if (!is_white_space(utf8_next(n.s, i))) break;
        e = k;
      }
    }
    n.s = n.s.substr(b, e - b);
    n.align = std::vector<Span>(n.align.begin() + b, n.align.begin() + e);
  }
};

}  // namespace

std::unique_ptr<Normalizer> make_normalizer(const json& j) {
  if (j.is_null()) return nullptr;
  KVP_CHECK(j.is_object() && j.contains("type"), "tokenizer.json: normalizer without \"type\": ",
            j.dump().substr(0, 200));
  std::string type = j.at("type").get<std::string>();
  if (type == "Sequence") {
    auto s = std::make_unique<SequenceNormalizer>();
    for (const auto& p : j.at("normalizers"))
      if (auto n = make_normalizer(p)) s->parts.push_back(std::move(n));
    return s;
  }
  if (type == "Prepend") {
    auto p = std::make_unique<PrependNormalizer>();
    p->text = j.at("prepend").get<std::string>();
    return p;
  }
  if (type == "Append") {
    auto p = std::make_unique<AppendNormalizer>();
    p->text = j.at("append").get<std::string>();
    return p;
  }
  if (type == "Replace") {
    auto r = std::make_unique<ReplaceNormalizer>();
    r->pattern = make_pattern(j.at("pattern"), "normalizer Replace");
    r->content = j.at("content").get<std::string>();
    return r;
  }
  if (type == "NFC" || type == "NFD") {
    auto r = std::make_unique<NfcNormalizer>();
    r->compose = type == "NFC";
    return r;
  }
  if (type == "Strip") {
    auto r = std::make_unique<StripNormalizer>();
    r->left = j.value("strip_left", true);
    r->right = j.value("strip_right", true);
    return r;
  }
  KVP_FAIL("tokenizer.json: normalizer type \"", type,
           "\" is not supported (supported: Sequence, Prepend, Append, Replace, NFC, NFD, Strip)");
}

}  // namespace kvprime::tok
