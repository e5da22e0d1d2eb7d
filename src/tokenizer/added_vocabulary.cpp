// Added tokens (HF tokenizer/added_vocabulary.rs): leftmost-longest matching of the added
// tokens' contents, with single_word / lstrip / rstrip; normalized tokens match the normalized text.
#include <array>

#include "kvprime/core/error.h"
#include "tokenizer/pipeline.h"
#include "tokenizer/utf8.h"

namespace kvprime::tok {

struct AddedVocabulary::Trie {
  struct Node {
    std::vector<std::pair<unsigned char, int32_t>> next;  // sorted by byte
    int32_t token = -1;                                     // index into tokens_
  };
  std::vector<Node> nodes{Node{}};
  std::array<bool, 256> first{};

  void insert(std::string_view key, int32_t token) {
    if (key.empty()) return;
    int32_t cur = 0;
    for (unsigned char c : key) {
      auto& nx = nodes[cur].next;
      auto it = std::lower_bound(nx.begin(), nx.end(), c,
                                 [](const auto& p, unsigned char v) { return p.first < v; });
      if (it != nx.end() && it->first == c) {
        cur = it->second;
      } else {
        int32_t idx = static_cast<int32_t>(nodes.size());
        nx.insert(it, {c, idx});
        nodes.emplace_back();
        cur = idx;
      }
    }
    if (nodes[cur].token < 0) nodes[cur].token = token;  // first one given wins
    first[static_cast<unsigned char>(key[0])] = true;
  }

  // Longest match starting at pos: (length, token index) or (0, -1).
  std::pair<size_t, int32_t> longest(std::string_view s, size_t pos) const {
    int32_t cur = 0;
    std::pair<size_t, int32_t> best{0, -1};
    for (size_t i = pos; i < s.size(); ++i) {
      const auto& nx = nodes[cur].next;
      unsigned char c = static_cast<unsigned char>(s[i]);
      auto it = std::lower_bound(nx.begin(), nx.end(), c,
                                 [](const auto& p, unsigned char v) { return p.first < v; });
      if (it == nx.end() || it->first != c) break;
      cur = it->second;
      if (nodes[cur].token >= 0) best = {i + 1 - pos, nodes[cur].token};
    }
    return best;
  }
};

namespace {
bool is_word_cp(uint32_t cp) {
  static const Regex re("^\\w$", "added token single_word");
  std::string s;
  utf8_append(s, cp);
  std::vector<std::pair<size_t, size_t>> m;
  re.find_all(s, m);
  return !m.empty();
}
}  // namespace

AddedVocabulary::AddedVocabulary(std::vector<AddedToken> tokens, const Normalizer* normalizer)
    : tokens_(std::move(tokens)), raw_(std::make_unique<Trie>()), norm_(std::make_unique<Trie>()) {
  // HF orders the special tokens first, then the others; on identical contents the first wins.
  for (int pass = 0; pass < 2; ++pass) {
    for (size_t k = 0; k < tokens_.size(); ++k) {
      const AddedToken& t = tokens_[k];
      if (t.special != (pass == 0)) continue;
      if (!t.normalized) {
        raw_->insert(t.content, static_cast<int32_t>(k));
      } else {
        NormStr n = make_norm(t.content, 0);
        if (normalizer) normalizer->normalize(n);
        norm_->insert(n.s, static_cast<int32_t>(k));
      }
    }
  }
}

AddedVocabulary::~AddedVocabulary() = default;

bool AddedVocabulary::has(bool normalized_set) const {
  return (normalized_set ? norm_ : raw_)->nodes.size() > 1;
}

void AddedVocabulary::split(std::string_view s, bool normalized_set, std::vector<Match>& out) const {
  out.clear();
  if (s.empty()) return;
  const Trie& trie = normalized_set ? *norm_ : *raw_;
  size_t start_offset = 0;  // end of the previous accepted match
  size_t pos = 0;           // where the search resumes
  while (pos < s.size()) {
    if (!trie.first[static_cast<unsigned char>(s[pos])]) {
      ++pos;
      continue;
    }
    auto [len, tk] = trie.longest(s, pos);
    if (tk < 0) {
      ++pos;
      continue;
    }
    size_t start = pos, stop = pos + len;
    pos = stop;  // matches never overlap, discarded ones included
    const AddedToken& t = tokens_[tk];
    if (t.single_word) {
      bool start_space = true, stop_space = true;
      if (start > 0) {
        size_t k = start - 1;
        while (k > 0 && (static_cast<unsigned char>(s[k]) & 0xC0) == 0x80) --k;
        size_t i = k;
        start_space = !is_word_cp(utf8_next(s, i));
      }
      if (stop < s.size()) {
        size_t i = stop;
        stop_space = !is_word_cp(utf8_next(s, i));
      }
      if (!start_space || !stop_space) continue;
    }
    if (t.lstrip) {
      size_t ns = start;
      while (ns > 0) {
        size_t k = ns - 1;
        while (k > 0 && (static_cast<unsigned char>(s[k]) & 0xC0) == 0x80) --k;
        size_t i = k;
        if (!is_white_space(utf8_next(s, i))) break;
        ns = k;
      }
      start = std::max(ns, start_offset);
    }
    if (t.rstrip) {
      while (stop < s.size()) {
        size_t i = stop;
        if (!is_white_space(utf8_next(s, i))) break;
        stop = i;
      }
      // (the search resumes at the end of the token itself, as HF's matcher iterator does)
    }
    if (start_offset < start) out.push_back(Match{start_offset, start, -1});
    out.push_back(Match{start, stop, tk});
    start_offset = stop;
  }
  if (start_offset < s.size()) out.push_back(Match{start_offset, s.size(), -1});
}

}  // namespace kvprime::tok
