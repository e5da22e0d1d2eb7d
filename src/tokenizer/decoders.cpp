// Decoders: Sequence, ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace.
#include "kvprime/core/error.h"
#include "tokenizer/pipeline.h"
#include "tokenizer/utf8.h"

namespace kvprime::tok {

namespace {

class SequenceDec : public Decoder {
 public:
  std::vector<std::unique_ptr<Decoder>> parts;
  void decode_chain(std::vector<std::string>& t) const override {
    for (const auto& p : parts) p->decode_chain(t);
  }
};

class ByteLevelDec : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::string bytes;
    for (const auto& t : tokens) {
      size_t mark = bytes.size();
      bool ok = true;
      for (size_t i = 0; i < t.size();) {
        int b = byte_level_byte(utf8_next(t, i));
        if (b < 0) {
          ok = false;
          break;
        }
        bytes.push_back(static_cast<char>(b));
      }
      if (!ok) {
        bytes.resize(mark);
        bytes += t;
      }
    }
    tokens.assign(1, utf8_lossy(bytes));
  }
};

class ReplaceDec : public Decoder {
 public:
  PatternMatcher pattern;
  std::string content;
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::vector<std::pair<std::pair<size_t, size_t>, bool>> segs;
    for (auto& t : tokens) {
      pattern.segments(t, segs);
      std::string out;
      for (const auto& [r, m] : segs) {
        if (m) out += content;
        else out.append(t, r.first, r.second - r.first);
      }
      t.swap(out);
    }
  }
};

class ByteFallbackDec : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::vector<std::string> out;
    std::string pending;
    auto flush = [&] {
      if (pending.empty()) return;
      if (utf8_valid(pending)) {
        out.push_back(pending);
      } else {
        for (size_t k = 0; k < pending.size(); ++k) out.emplace_back("\xEF\xBF\xBD");
      }
      pending.clear();
    };
    auto hex = [](char c) -> int {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'A' && c <= 'F') return c - 'A' + 10;
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      return -1;
    };
    for (auto& t : tokens) {
      if (t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>' && hex(t[3]) >= 0 &&
          hex(t[4]) >= 0) {
        pending.push_back(static_cast<char>(hex(t[3]) * 16 + hex(t[4])));
        continue;
      }
      flush();
      out.push_back(std::move(t));
    }
    flush();
    tokens.swap(out);
  }
};

class FuseDec : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::string all;
    for (const auto& t : tokens) all += t;
    tokens.assign(1, std::move(all));
  }
};

class StripDec : public Decoder {
 public:
  uint32_t content = ' ';
  size_t start = 0, stop = 0;
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (auto& t : tokens) {
      std::vector<std::pair<uint32_t, size_t>> cps;  // cp, byte start
      for (size_t i = 0; i < t.size();) {
        size_t at = i;
        cps.emplace_back(utf8_next(t, i), at);
      }
      size_t b = 0, e = cps.size();
      while (b < start && b < cps.size() && cps[b].first == content) ++b;
      size_t k = 0;
      while (k < stop && e > b && cps[e - 1].first == content) {
        --e;
        ++k;
      }
      size_t bb = b < cps.size() ? cps[b].second : t.size();
      size_t eb = e < cps.size() ? cps[e].second : t.size();
      t = t.substr(bb, eb > bb ? eb - bb : 0);
    }
  }
};

class MetaspaceDec : public Decoder {
 public:
  std::string replacement = "\xE2\x96\x81";
  bool prepend = true;  // prepend_scheme != never
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      std::string out;
      const std::string& t = tokens[i];
      size_t pos = 0, prev = 0;
      while ((pos = t.find(replacement, prev)) != std::string::npos) {
        out.append(t, prev, pos - prev);
        if (!(i == 0 && prepend)) out.push_back(' ');
        prev = pos + replacement.size();
      }
      out.append(t, prev, std::string::npos);
      tokens[i].swap(out);
    }
  }
};

}  // namespace

std::unique_ptr<Decoder> make_decoder(const json& j) {
  if (j.is_null()) return nullptr;
  KVP_CHECK(j.is_object() && j.contains("type"), "tokenizer.json: decoder without \"type\"");
  std::string type = j.at("type").get<std::string>();
  if (type == "Sequence") {
    auto s = std::make_unique<SequenceDec>();
    for (const auto& p : j.at("decoders"))
      if (auto x = make_decoder(p)) s->parts.push_back(std::move(x));
    return s;
  }
  if (type == "ByteLevel") return std::make_unique<ByteLevelDec>();
  if (type == "Replace") {
    auto r = std::make_unique<ReplaceDec>();
    r->pattern = make_pattern(j.at("pattern"), "decoder Replace");
    r->content = j.at("content").get<std::string>();
    return r;
  }
  if (type == "ByteFallback") return std::make_unique<ByteFallbackDec>();
  if (type == "Fuse") return std::make_unique<FuseDec>();
  if (type == "Strip") {
    auto s = std::make_unique<StripDec>();
    std::string c = j.at("content").get<std::string>();
    KVP_CHECK(!c.empty() && utf8_valid(c), "tokenizer.json: Strip decoder content must be one character");
    size_t i = 0;
    s->content = utf8_next(c, i);
    s->start = j.value("start", 0);
    s->stop = j.value("stop", 0);
    return s;
  }
  if (type == "Metaspace") {
    auto m = std::make_unique<MetaspaceDec>();
    if (j.contains("replacement")) m->replacement = j.at("replacement").get<std::string>();
    if (j.contains("prepend_scheme")) m->prepend = j.at("prepend_scheme").get<std::string>() != "never";
    else if (j.contains("add_prefix_space")) m->prepend = j.at("add_prefix_space").get<bool>();
    return m;
  }
  KVP_FAIL("tokenizer.json: decoder type \"", type,
           "\" is not supported (supported: Sequence, ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace)");
}

}  // namespace kvprime::tok
