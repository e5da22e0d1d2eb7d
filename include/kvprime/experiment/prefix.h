// Prefix texts of the declared prefix sources (experiment/spec.h PrefixKind), per sample.
//
// Deterministic: every random choice draws from a generator seeded by (experiment seed, sample id,
// what is drawn), with our own index draw (std::uniform_int_distribution differs between standard
// libraries), so a resumed or re-run experiment gets the same prefixes on any machine.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "kvprime/experiment/spec.h"

namespace kvprime {

class Model;
class Tokenizer;

// Words of a text: maximal runs of non-space characters (punctuation stays attached).
std::vector<std::string> split_words(const std::string& text);
// Lower-case ASCII letter/digit terms (for TF-IDF); other bytes separate terms.
std::vector<std::string> terms(const std::string& text);
// Up to and including the first '.', '!' or '?' followed by whitespace or the end (whole text if none).
std::string first_sentence(const std::string& text);

// A seeded index in [0, n): splitmix64 of the seed, then a multiply-shift range reduction.
class SeededDraw {
 public:
  explicit SeededDraw(uint64_t seed) : state_(seed) {}
  uint64_t next();
  size_t below(size_t n);

 private:
  uint64_t state_;
};
uint64_t seed_for(uint64_t seed, const std::string& sample_id, const std::string& what);

struct PrefixSample {
  std::string id, passage, query;
  std::vector<std::string> surrogates;
};

class PrefixMaker {
 public:
  // `corpus`: every sample's passage (IDF for keywords, unrelated passages for random words).
  PrefixMaker(std::vector<std::string> corpus, uint64_t seed);

  // The prefix text of `spec` for sample `index` (before prefix_template / repetitions); empty
  // for PrefixKind::None. Generated prefixes need `model` and `tokenizer` (else an Error).
  std::string make(const PrefixSpec& spec, const PrefixSample& s, size_t index,
                   const Model* model = nullptr, const Tokenizer* tokenizer = nullptr) const;

  // The top_k terms of passage `index` by TF-IDF (smooth idf = ln((1+N)/(1+df)) + 1, as
  // scikit-learn's default), ties broken by first occurrence; common English stop words skipped.
  std::vector<std::string> keywords(size_t index, int64_t top_k) const;

  // Text of unrelated passages (never `index`'s own), in a seeded order, to pad a document.
  std::string unrelated_text(size_t index, const std::string& sample_id, size_t min_bytes) const;

 private:
  std::vector<std::string> corpus_;
  uint64_t seed_;
  std::map<std::string, int64_t> df_;  // term -> passages containing it
};

// Applies prefix_template and repetitions: the segments of a prefix (one per repetition).
std::vector<std::string> prefix_segments(const PrefixSpec& spec, const std::string& prefix_text);

}  // namespace kvprime
