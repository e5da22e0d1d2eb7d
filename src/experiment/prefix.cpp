#include "kvprime/experiment/prefix.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "kvprime/core/error.h"
#include "kvprime/core/hash.h"
#include "kvprime/model/generate.h"
#include "kvprime/model/model.h"
#include "kvprime/prime/experiment_config.h"
#include "kvprime/tokenizer/tokenizer.h"

namespace kvprime {

namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

std::string join(const std::vector<std::string>& w, const std::string& sep = " ") {
  std::string out;
  for (size_t i = 0; i < w.size(); ++i) out += (i ? sep : "") + w[i];
  return out;
}

// A small English stop-word list: keywords should be content words.
const std::set<std::string>& stop_words() {
  static const std::set<std::string> s{
      "a", "about", "after", "all", "also", "an", "and", "any", "are", "as", "at", "be", "because",
      "been", "before", "but", "by", "can", "could", "did", "do", "does", "each", "for", "from",
      "had", "has", "have", "he", "her", "his", "how", "i", "if", "in", "into", "is", "it", "its",
      "more", "most", "much", "no", "not", "of", "on", "one", "only", "or", "other", "our", "out",
      "over", "so", "some", "such", "than", "that", "the", "their", "them", "then", "there",
      "these", "they", "this", "those", "through", "to", "up", "was", "we", "were", "what", "when",
      "where", "which", "while", "who", "why", "will", "with", "would", "you", "your"};
  return s;
}

}  // namespace

std::vector<std::string> split_words(const std::string& text) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && is_space(text[i])) ++i;
    size_t j = i;
    while (j < text.size() && !is_space(text[j])) ++j;
    if (j > i) out.push_back(text.substr(i, j - i));
    i = j;
  }
  return out;
}

std::vector<std::string> terms(const std::string& text) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : text) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (std::isalnum(u) && u < 128) {
      cur += static_cast<char>(std::tolower(u));
    } else if (!cur.empty()) {
      out.push_back(cur);
      cur.clear();
    }
  }
  if (!cur.empty()) out.push_back(cur);
  return out;
}

std::string first_sentence(const std::string& text) {
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if ((c == '.' || c == '!' || c == '?') && (i + 1 == text.size() || is_space(text[i + 1]))) {
      // "5.000" or "e.g. x" style false ends are rare in passages; a sentence ends at ". ".
      return text.substr(0, i + 1);
    }
  }
  return text;
}

uint64_t SeededDraw::next() {
  // splitmix64: a fixed, portable generator (results must not depend on the standard library).
  uint64_t z = (state_ += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

size_t SeededDraw::below(size_t n) {
  KVP_ASSERT(n > 0);
  return static_cast<size_t>((static_cast<unsigned __int128>(next()) * n) >> 64);
}

uint64_t seed_for(uint64_t seed, const std::string& sample_id, const std::string& what) {
  return fnv1a64(std::to_string(seed) + "\x1f" + sample_id + "\x1f" + what);
}

PrefixMaker::PrefixMaker(std::vector<std::string> corpus, uint64_t seed)
    : corpus_(std::move(corpus)), seed_(seed) {
  for (const auto& p : corpus_) {
    auto t = terms(p);
    std::set<std::string> uniq(t.begin(), t.end());
    for (const auto& w : uniq) ++df_[w];
  }
}

std::vector<std::string> PrefixMaker::keywords(size_t index, int64_t top_k) const {
  KVP_ASSERT(index < corpus_.size());
  auto t = terms(corpus_[index]);
  std::map<std::string, int64_t> tf;
  std::map<std::string, size_t> first;
  for (size_t i = 0; i < t.size(); ++i) {
    if (stop_words().count(t[i]) || t[i].size() < 2) continue;
    if (!tf.count(t[i])) first[t[i]] = i;
    ++tf[t[i]];
  }
  const double N = static_cast<double>(corpus_.size());
  std::vector<std::pair<double, std::string>> scored;
  for (const auto& [w, n] : tf) {
    const double df = static_cast<double>(df_.count(w) ? df_.at(w) : 0);
    scored.emplace_back(static_cast<double>(n) * (std::log((1.0 + N) / (1.0 + df)) + 1.0), w);
  }
  std::stable_sort(scored.begin(), scored.end(), [&](const auto& a, const auto& b) {
    if (a.first != b.first) return a.first > b.first;
    return first.at(a.second) < first.at(b.second);
  });
  std::vector<std::string> out;
  for (size_t i = 0; i < scored.size() && static_cast<int64_t>(i) < top_k; ++i) out.push_back(scored[i].second);
  return out;
}

std::string PrefixMaker::unrelated_text(size_t index, const std::string& sample_id, size_t min_bytes) const {
  KVP_CHECK(corpus_.size() >= 2, "padding and random words need unrelated passages: the dataset has ",
            corpus_.size(), " passage(s); use at least 2 samples");
  SeededDraw d(seed_for(seed_, sample_id, "unrelated"));
  std::string out;
  while (out.size() < min_bytes) {
    size_t j = d.below(corpus_.size() - 1);
    if (j >= index) ++j;  // never the sample's own passage
    out += (out.empty() ? "" : " ") + corpus_[j];
  }
  return out;
}

std::string PrefixMaker::make(const PrefixSpec& spec, const PrefixSample& s, size_t index,
                              const Model* model, const Tokenizer* tokenizer) const {
  switch (spec.kind) {
    case PrefixKind::None:
      return "";
    case PrefixKind::Oracle:
      return s.query;
    case PrefixKind::Reversed: {
      auto w = split_words(s.query);
      std::reverse(w.begin(), w.end());
      return join(w);
    }
    case PrefixKind::Shuffled: {
      auto w = split_words(s.query);
      SeededDraw d(seed_for(seed_, s.id, "shuffle"));
      for (size_t i = w.size(); i > 1; --i) std::swap(w[i - 1], w[d.below(i)]);  // Fisher-Yates
      return join(w);
    }
    case PrefixKind::Surrogate:
      KVP_CHECK(spec.surrogate_index < static_cast<int64_t>(s.surrogates.size()), "sample '", s.id,
                "' has ", s.surrogates.size(), " surrogate(s), the condition asks for surrogate_index ",
                spec.surrogate_index, "; add surrogates to the dataset or lower surrogate_index");
      return s.surrogates[spec.surrogate_index];
    case PrefixKind::Static:
      return spec.text;
    case PrefixKind::FirstSentence:
      return first_sentence(s.passage);
    case PrefixKind::Keywords:
      return join(keywords(index, spec.top_k));
    case PrefixKind::RandomWords: {
      const size_t n = spec.length_matched ? split_words(s.query).size() : static_cast<size_t>(spec.n_words);
      auto pool = split_words(unrelated_text(index, s.id, 1));
      KVP_CHECK(!pool.empty(), "random_words: the unrelated passage for sample '", s.id, "' is empty");
      SeededDraw d(seed_for(seed_, s.id, "random_words"));
      std::vector<std::string> w;
      for (size_t i = 0; i < n; ++i) w.push_back(pool[d.below(pool.size())]);
      return join(w);
    }
    case PrefixKind::Generated: {
      KVP_CHECK(model && tokenizer, "prefix = \"generated\" needs the model and tokenizer");
      const std::string prompt = format_template(spec.generate_template, {{"document", s.passage}}, "generate_template");
      auto ids32 = tokenizer->encode(prompt, true);
      std::vector<int64_t> ids(ids32.begin(), ids32.end());
      KVCache cache = model->new_cache(1);
      GenerateOptions go;
      go.max_new_tokens = spec.max_new_tokens;
      auto r = generate_greedy(*model, ids, cache, go);
      std::vector<int32_t> out(r.tokens.begin(), r.tokens.end());
      std::string text = tokenizer->decode(out, /*skip_special_tokens=*/true);
      // One line: a generated question ends at its first newline.
      text = text.substr(0, text.find('\n'));
      auto w = split_words(text);
      return join(w);
    }
  }
  return "";
}

std::vector<std::string> prefix_segments(const PrefixSpec& spec, const std::string& prefix_text) {
  if (spec.kind == PrefixKind::None) return {};
  const std::string one = format_template(spec.template_, {{"prefix", prefix_text}}, "prefix_template");
  return std::vector<std::string>(static_cast<size_t>(spec.repetitions), one);
}

}  // namespace kvprime
