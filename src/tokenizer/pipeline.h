// Internal types shared by the tokenizer pipeline: the normalized string with its alignments to
// the original input, the pre-tokenized pieces, and the interfaces of each stage.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace kvprime::tok {

using json = nlohmann::json;

// A span [b, e) of the ORIGINAL input in bytes.
struct Span {
  uint32_t b, e;
};

// Normalized text; align[i] is the original span of normalized byte i (HF NormalizedString).
struct NormStr {
  std::string s;
  std::vector<Span> align;
  Span orig{0, 0};  // original span this string came from (kept for empty strings)
};

NormStr make_norm(std::string_view original, uint32_t base);
// Replace every non-overlapping occurrence of `pat` (left to right) by `content`.
void ns_replace(NormStr& n, std::string_view pat, std::string_view content);
// Replace the given normalized byte ranges (sorted, non-overlapping) by `content`.
void ns_replace_ranges(NormStr& n, const std::vector<std::pair<size_t, size_t>>& ranges,
                       std::string_view content);
void ns_prepend(NormStr& n, std::string_view p);
void ns_append(NormStr& n, std::string_view p);
void ns_nfc(NormStr& n, bool compose);  // compose=false: NFD

// PCRE2 regex (UTF + UCP, \s -> White_Space), JIT-compiled when available.
class Regex {
 public:
  explicit Regex(const std::string& pattern, const std::string& what);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;
  // All non-overlapping matches [b, e) in subject, left to right (empty matches skipped).
  void find_all(std::string_view subject, std::vector<std::pair<size_t, size_t>>& out) const;

 private:
  void* code_ = nullptr;
};

// Match (true) / non-match (false) segments covering `s` for a Split pattern.
struct PatternMatcher {
  std::string literal;        // String pattern
  std::unique_ptr<Regex> re;  // Regex pattern
  void segments(std::string_view s, std::vector<std::pair<std::pair<size_t, size_t>, bool>>& out) const;
};
PatternMatcher make_pattern(const json& pattern, const std::string& what);

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual void normalize(NormStr& n) const = 0;
};
std::unique_ptr<Normalizer> make_normalizer(const json& j);  // null -> nullptr

// Pre-tokenized pieces: one buffer with alignments, and the ranges [a, b) of its pieces.
struct Piece {
  uint32_t a, b;
  uint32_t seg;  // which input segment the piece belongs to
};
struct Pieces {
  std::string s;
  std::vector<Span> align;
  std::vector<Piece> ranges;
};

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  virtual void pre_tokenize(Pieces& p) const = 0;
};
std::unique_ptr<PreTokenizer> make_pre_tokenizer(const json& j);

struct ModelToken {
  int32_t id;
  uint32_t b, e;  // byte range inside the word
};

class BpeModel {
 public:
  static std::unique_ptr<BpeModel> from_json(const json& model);
  ~BpeModel();
  // Appends the tokens of `word` (non-empty) to out.
  void tokenize(std::string_view word, std::vector<ModelToken>& out) const;
  const int32_t* find(std::string_view token) const;
  const std::string* token(int32_t id) const;
  size_t size() const;
  void for_each(const std::function<void(std::string_view, int32_t)>& f) const;

  struct Impl;

 private:
  BpeModel() = default;
  std::unique_ptr<Impl> impl_;
};

struct AddedToken {
  std::string content;
  int32_t id = 0;
  bool special = false, lstrip = false, rstrip = false, normalized = true, single_word = false;
};

class AddedVocabulary {
 public:
  AddedVocabulary(std::vector<AddedToken> tokens, const Normalizer* normalizer);
  ~AddedVocabulary();
  struct Match {
    size_t b, e;   // span in the searched text (includes stripped whitespace)
    int32_t id;    // -1: plain text between matches
  };
  // Splits text on the non-normalized (normalized=false) or the normalized tokens. Covers the
  // whole text; an empty text gives no segment.
  void split(std::string_view text, bool normalized_set, std::vector<Match>& out) const;
  bool has(bool normalized_set) const;
  const std::vector<AddedToken>& tokens() const { return tokens_; }

 private:
  struct Trie;
  std::vector<AddedToken> tokens_;
  std::unique_ptr<Trie> raw_, norm_;
};

struct EncodingData {
  std::vector<int32_t> ids;
  std::vector<std::string> tokens;
  std::vector<std::pair<size_t, size_t>> offsets;
  std::vector<uint8_t> special;
  bool details = true;  // false: ids and offsets only, `tokens` stays empty
};

class PostProcessor {
 public:
  virtual ~PostProcessor() = default;
  virtual void process(EncodingData& e, bool add_special_tokens) const = 0;
};
using TokenLookup = std::function<const int32_t*(std::string_view)>;
std::unique_ptr<PostProcessor> make_post_processor(const json& j);
// Template "[bos] $A [eos]" from tokenizer_config.json flags (ids resolved by the caller).
std::unique_ptr<PostProcessor> make_bos_eos_template(const std::string* bos, int32_t bos_id,
                                                     const std::string* eos, int32_t eos_id);
std::unique_ptr<PostProcessor> make_sequence_post_processor(
    std::vector<std::unique_ptr<PostProcessor>> parts);
bool is_byte_level_post_processor(const json& j);
// The special tokens a TemplateProcessing puts before / after $A in `single`.
void template_bos_eos(const json& j, std::vector<int32_t>& before, std::vector<int32_t>& after);

class Decoder {
 public:
  virtual ~Decoder() = default;
  virtual void decode_chain(std::vector<std::string>& tokens) const = 0;
};
std::unique_ptr<Decoder> make_decoder(const json& j);

}  // namespace kvprime::tok
