// Pre-tokenizers: Sequence, Split, ByteLevel, Metaspace (HF semantics, offsets tracked).
#include <algorithm>

#include "kvprime/core/error.h"
#include "tokenizer/pipeline.h"
#include "tokenizer/utf8.h"

namespace kvprime::tok {

namespace {

enum class Behavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

Behavior parse_behavior(const json& j) {
  std::string b = j.get<std::string>();
  if (b == "Removed") return Behavior::Removed;
  if (b == "Isolated") return Behavior::Isolated;
  if (b == "MergedWithPrevious") return Behavior::MergedWithPrevious;
  if (b == "MergedWithNext") return Behavior::MergedWithNext;
  if (b == "Contiguous") return Behavior::Contiguous;
  KVP_FAIL("tokenizer.json: Split behavior \"", b,
           "\" is unknown (Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous)");
}

using Seg = std::pair<std::pair<size_t, size_t>, bool>;

// HF NormalizedString::split: turns match/non-match segments into the kept ranges.
void apply_behavior(std::vector<Seg>& segs, Behavior beh, std::vector<std::pair<size_t, size_t>>& out) {
  out.clear();
  switch (beh) {
    case Behavior::Isolated:
      for (const auto& s : segs) out.push_back(s.first);
      break;
    case Behavior::Removed:
      for (const auto& s : segs)
        if (!s.second) out.push_back(s.first);
      break;
    case Behavior::Contiguous: {
      bool prev = false;
      for (const auto& s : segs) {
        if (s.second == prev && !out.empty()) out.back().second = s.first.second;
        else out.push_back(s.first);
        prev = s.second;
      }
      break;
    }
    case Behavior::MergedWithPrevious: {
      bool prev = false;
      for (const auto& s : segs) {
        if (s.second && !prev && !out.empty()) out.back().second = s.first.second;
        else out.push_back(s.first);
        prev = s.second;
      }
      break;
    }
    case Behavior::MergedWithNext: {
      bool prev = false;
      for (size_t k = segs.size(); k-- > 0;) {
        const auto& s = segs[k];
        if (s.second && !prev && !out.empty()) out.back().first = s.first.first;
        else out.push_back(s.first);
        prev = s.second;
      }
      std::reverse(out.begin(), out.end());
      break;
    }
  }
}

void split_pieces(Pieces& p, const PatternMatcher& pat, Behavior beh, bool invert) {
  std::vector<Piece> ranges;
  ranges.reserve(p.ranges.size() * 2);
  thread_local std::vector<Seg> segs;
  thread_local std::vector<std::pair<size_t, size_t>> kept;
  for (const Piece& r : p.ranges) {
    std::string_view sv(p.s.data() + r.a, r.b - r.a);
    pat.segments(sv, segs);
    if (invert)
      for (auto& s : segs) s.second = !s.second;
    apply_behavior(segs, beh, kept);
    for (auto [b, e] : kept)
      if (e > b) ranges.push_back(Piece{static_cast<uint32_t>(r.a + b), static_cast<uint32_t>(r.a + e), r.seg});
  }
  p.ranges.swap(ranges);
}

// Rebuilds the buffer piece by piece through a NormStr transform.
template <typename F>
void transform_pieces(Pieces& p, F&& f) {
  Pieces out;
  out.s.reserve(p.s.size() + p.ranges.size() * 4);
  out.align.reserve(out.s.capacity());
  out.ranges.reserve(p.ranges.size());
  NormStr n;
  for (const Piece& r : p.ranges) {
    n.s.assign(p.s, r.a, r.b - r.a);
    n.align.assign(p.align.begin() + r.a, p.align.begin() + r.b);
    n.orig = {p.align[r.a].b, p.align[r.b - 1].e};
    f(n, out, r.seg);
  }
  p = std::move(out);
}

void emit(Pieces& out, const NormStr& n, size_t b, size_t e, uint32_t seg) {
  if (e <= b) return;
  uint32_t a = static_cast<uint32_t>(out.s.size());
  out.s.append(n.s, b, e - b);
  out.align.insert(out.align.end(), n.align.begin() + b, n.align.begin() + e);
  out.ranges.push_back(Piece{a, static_cast<uint32_t>(out.s.size()), seg});
}

class SequencePre : public PreTokenizer {
 public:
  std::vector<std::unique_ptr<PreTokenizer>> parts;
  void pre_tokenize(Pieces& p) const override {
    for (const auto& x : parts) x->pre_tokenize(p);
  }
};

class SplitPre : public PreTokenizer {
 public:
  PatternMatcher pattern;
  Behavior behavior = Behavior::Isolated;
  bool invert = false;
  void pre_tokenize(Pieces& p) const override { split_pieces(p, pattern, behavior, invert); }
};

const char* kGpt2Pattern =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

class ByteLevelPre : public PreTokenizer {
 public:
  bool add_prefix_space = false;
  std::unique_ptr<PatternMatcher> re;
  void pre_tokenize(Pieces& p) const override {
    if (add_prefix_space) {
      transform_pieces(p, [](NormStr& n, Pieces& out, uint32_t seg) {
        if (n.s.empty() || n.s[0] != ' ') ns_prepend(n, " ");
        emit(out, n, 0, n.s.size(), seg);
      });
    }
    if (re) split_pieces(p, *re, Behavior::Isolated, false);
    // Every byte becomes its byte-level char: the first keeps the char's span (replacement),
    // the others are insertions sharing the span of the char's last byte.
    const auto& table = byte_level_chars();
    Pieces out;
    out.s.reserve(p.s.size() * 3 / 2 + 16);
    out.align.reserve(out.s.capacity());
    out.ranges.reserve(p.ranges.size());
    for (const Piece& r : p.ranges) {
      uint32_t a = static_cast<uint32_t>(out.s.size());
      size_t i = r.a;
      while (i < r.b) {
        size_t len = utf8_len(static_cast<unsigned char>(p.s[i]));
        for (size_t k = 0; k < len; ++k) {
          const std::string& c = table[static_cast<unsigned char>(p.s[i + k])];
          out.s.append(c);
          out.align.insert(out.align.end(), c.size(), k == 0 ? p.align[i] : p.align[i + len - 1]);
        }
        i += len;
      }
      out.ranges.push_back(Piece{a, static_cast<uint32_t>(out.s.size()), r.seg});
    }
    p = std::move(out);
  }
};

enum class Prepend { Always, First, Never };

class MetaspacePre : public PreTokenizer {
 public:
  std::string replacement = "\xE2\x96\x81";
  Prepend scheme = Prepend::Always;
  bool split = true;
  void pre_tokenize(Pieces& p) const override {
    transform_pieces(p, [this](NormStr& n, Pieces& out, uint32_t seg) {
      ns_replace(n, " ", replacement);
      bool starts = n.s.compare(0, replacement.size(), replacement) == 0;
      if (!starts && (scheme == Prepend::Always || (scheme == Prepend::First && n.orig.b == 0)))
        ns_prepend(n, replacement);
      if (!split) {
        emit(out, n, 0, n.s.size(), seg);
        return;
      }
      // Split on the replacement, MergedWithNext.
      std::vector<size_t> cuts;
      size_t pos = 0;
      while ((pos = n.s.find(replacement, pos)) != std::string::npos) {
        cuts.push_back(pos);
        pos += replacement.size();
      }
      size_t prev = 0;
      for (size_t c : cuts) {
        if (c > prev) emit(out, n, prev, c, seg);
        prev = c;
      }
      emit(out, n, prev, n.s.size(), seg);
    });
  }
};

}  // namespace

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const json& j) {
  if (j.is_null()) return nullptr;
  KVP_CHECK(j.is_object() && j.contains("type"), "tokenizer.json: pre_tokenizer without \"type\": ",
            j.dump().substr(0, 200));
  std::string type = j.at("type").get<std::string>();
  if (type == "Sequence") {
    auto s = std::make_unique<SequencePre>();
    for (const auto& p : j.at("pretokenizers"))
      if (auto x = make_pre_tokenizer(p)) s->parts.push_back(std::move(x));
    return s;
  }
  if (type == "Split") {
    auto s = std::make_unique<SplitPre>();
    s->pattern = make_pattern(j.at("pattern"), "pre_tokenizer Split");
    s->behavior = parse_behavior(j.at("behavior"));
    s->invert = j.value("invert", false);
    return s;
  }
  if (type == "ByteLevel") {
    auto s = std::make_unique<ByteLevelPre>();
    s->add_prefix_space = j.value("add_prefix_space", false);
    if (j.value("use_regex", true)) {
      s->re = std::make_unique<PatternMatcher>();
      s->re->re = std::make_unique<Regex>(kGpt2Pattern, "pre_tokenizer ByteLevel");
    }
    return s;
  }
  if (type == "Metaspace") {
    auto s = std::make_unique<MetaspacePre>();
    if (j.contains("replacement")) s->replacement = j.at("replacement").get<std::string>();
    if (j.contains("prepend_scheme")) {
      std::string ps = j.at("prepend_scheme").get<std::string>();
      s->scheme = ps == "first" ? Prepend::First : ps == "never" ? Prepend::Never : Prepend::Always;
      KVP_CHECK(ps == "first" || ps == "never" || ps == "always",
                "tokenizer.json: Metaspace prepend_scheme \"", ps, "\" is unknown (always, first, never)");
    } else if (j.contains("add_prefix_space")) {
      s->scheme = j.at("add_prefix_space").get<bool>() ? Prepend::Always : Prepend::Never;
    }
    s->split = j.value("split", true);
    return s;
  }
  KVP_FAIL("tokenizer.json: pre_tokenizer type \"", type,
           "\" is not supported (supported: Sequence, Split, ByteLevel, Metaspace)");
}

}  // namespace kvprime::tok
