// PCRE2 wrapper and Split patterns (String or Regex), HF `Pattern` semantics.
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "kvprime/core/error.h"
#include "tokenizer/pipeline.h"
#include "tokenizer/utf8.h"

namespace kvprime::tok {

namespace {
// Oniguruma's \s is Unicode White_Space; PCRE2's (UCP) is Z + \t\n\v\f\r, without U+0085.
std::string rewrite_spaces(const std::string& p) {
  std::string out;
  bool in_class = false;
  size_t class_start = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      char n = p[i + 1];
      if (n == 's') {
        out += in_class ? std::string(white_space_class_body())
                        : std::string("[") + white_space_class_body() + "]";
      } else if (n == 'S' && !in_class) {
        out += std::string("[^") + white_space_class_body() + "]";
      } else {
        out += c;
        out += n;
      }
      ++i;
      continue;
    }
    if (!in_class && c == '[') {
      in_class = true;
      class_start = out.size() + 1;
    } else if (in_class && c == ']') {
      size_t body = out.size() - class_start;
      bool literal = body == 0 || (body == 1 && out[class_start] == '^');
      if (!literal) in_class = false;
    }
    out += c;
  }
  return out;
}

struct MatchState {
  pcre2_match_data* md = nullptr;
  pcre2_match_context* mc = nullptr;
  pcre2_jit_stack* js = nullptr;
  MatchState() {
    md = pcre2_match_data_create(1, nullptr);
    mc = pcre2_match_context_create(nullptr);
    js = pcre2_jit_stack_create(32 * 1024, 4 * 1024 * 1024, nullptr);
    if (js) pcre2_jit_stack_assign(mc, nullptr, js);
  }
  ~MatchState() {
    pcre2_match_data_free(md);
    pcre2_match_context_free(mc);
    if (js) pcre2_jit_stack_free(js);
  }
};
MatchState& match_state() {
  thread_local MatchState st;
  return st;
}
}  // namespace

Regex::Regex(const std::string& pattern, const std::string& what) {
  std::string p = rewrite_spaces(pattern);
  int err = 0;
  PCRE2_SIZE off = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(p.data()), p.size(),
                                   PCRE2_UTF | PCRE2_UCP, &err, &off, nullptr);
  if (!code) {
    PCRE2_UCHAR buf[256];
    pcre2_get_error_message(err, buf, sizeof buf);
    KVP_FAIL(what, ": cannot compile regex ", json(pattern).dump(), " (PCRE2 at offset ", off, ": ",
             reinterpret_cast<const char*>(buf), ")");
  }
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // falls back to the interpreter if unavailable
  code_ = code;
}

Regex::~Regex() { pcre2_code_free(static_cast<pcre2_code*>(code_)); }

void Regex::find_all(std::string_view s, std::vector<std::pair<size_t, size_t>>& out) const {
  auto* code = static_cast<pcre2_code*>(code_);
  MatchState& st = match_state();
  size_t start = 0;
  while (start <= s.size()) {
    int rc = pcre2_match(code, reinterpret_cast<PCRE2_SPTR>(s.data()), s.size(), start,
                         PCRE2_NO_UTF_CHECK, st.md, st.mc);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    KVP_CHECK(rc >= 0, "tokenizer regex match failed (PCRE2 error ", rc, ")");
    PCRE2_SIZE* ov = pcre2_get_ovector_pointer(st.md);
    size_t b = ov[0], e = ov[1];
    if (e == b) {
      if (b >= s.size()) break;
      start = b + utf8_len(static_cast<unsigned char>(s[b]));
      continue;
    }
    out.emplace_back(b, e);
    start = e;
  }
}

void PatternMatcher::segments(std::string_view s,
                              std::vector<std::pair<std::pair<size_t, size_t>, bool>>& out) const {
  out.clear();
  if (!re) {
    if (literal.empty()) {
      out.push_back({{0, s.size()}, false});
      return;
    }
    size_t prev = 0, pos = 0;
    while ((pos = s.find(literal, pos)) != std::string_view::npos) {
      if (pos > prev) out.push_back({{prev, pos}, false});
      out.push_back({{pos, pos + literal.size()}, true});
      pos += literal.size();
      prev = pos;
    }
    if (prev < s.size()) out.push_back({{prev, s.size()}, false});
    return;
  }
  if (s.empty()) {
    out.push_back({{0, 0}, false});
    return;
  }
  thread_local std::vector<std::pair<size_t, size_t>> m;
  m.clear();
  re->find_all(s, m);
  size_t prev = 0;
  for (auto [b, e] : m) {
    if (b > prev) out.push_back({{prev, b}, false});
    out.push_back({{b, e}, true});
    prev = e;
  }
  if (prev < s.size()) out.push_back({{prev, s.size()}, false});
}

PatternMatcher make_pattern(const json& pattern, const std::string& what) {
  PatternMatcher pm;
  KVP_CHECK(pattern.is_object() && (pattern.contains("String") || pattern.contains("Regex")),
            what, ": \"pattern\" must be {\"String\": ...} or {\"Regex\": ...}, got ",
            pattern.dump());
  if (pattern.contains("String")) {
    pm.literal = pattern.at("String").get<std::string>();
  } else {
    pm.re = std::make_unique<Regex>(pattern.at("Regex").get<std::string>(), what);
  }
  return pm;
}

}  // namespace kvprime::tok
