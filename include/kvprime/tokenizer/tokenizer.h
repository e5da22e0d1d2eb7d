// Hugging Face tokenizer.json in plain C++ (no ATen): the same ids as HF `tokenizers` (Rust).
//
// Supported pipeline pieces (anything else is a kvprime::Error naming the piece):
//   model          BPE (merges as "a b" strings or [a, b] pairs; byte_fallback, fuse_unk, unk_token,
//                  ignore_merges, continuing_subword_prefix, end_of_word_suffix; no dropout)
//   normalizer     Sequence, Prepend, Append, Replace (String or Regex pattern), NFC, NFD, Strip
//   pre_tokenizer  Sequence, Split (String or Regex, every behavior, invert), ByteLevel, Metaspace
//   post_processor TemplateProcessing, ByteLevel, Sequence
//   decoder        Sequence, ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace
//   added_tokens   special or not, lstrip / rstrip / normalized / single_word
// Regexes use PCRE2 (UTF + UCP); `\s` / `\S` are rewritten to Unicode White_Space, which is what
// the Oniguruma engine used by HF matches.
//
// tokenizer_config.json (optional): when it sets add_bos_token and/or add_eos_token explicitly the
// post-processor's template becomes [bos if add_bos] $A [eos if add_eos] (what transformers' Llama /
// Gemma fast tokenizers do); bos_token / eos_token (string or {"content": ...}) give bos_id()/eos_id().
//
// Offsets: BYTE offsets [begin, end) into the original UTF-8 input (HF's Python binding reports
// character offsets of the same spans). Tokens added by the post-processor (BOS/EOS) get {0, 0}.
// A token that covers only part of a character (byte-level or byte-fallback pieces of one emoji)
// gets the whole character's span, as in HF. To find where a prefix of the input ends, take the
// tokens whose end <= prefix.size().
//
// Input must be valid UTF-8 (HF rejects other bytes at its API boundary): encode throws a
// kvprime::Error naming the byte offset of the first invalid byte.
// Thread safety: a Tokenizer is immutable after loading except for an internal, mutex-guarded BPE
// word cache, so one instance may be shared by threads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kvprime {

struct Encoding {
  std::vector<int32_t> ids;
  std::vector<std::string> tokens;                 // the vocabulary strings (e.g. "Ġworld", "▁the")
  std::vector<std::pair<size_t, size_t>> offsets;  // byte [begin, end) in the input; see above
  std::vector<uint8_t> special_tokens_mask;        // 1 for tokens added by the post-processor
};

class Tokenizer {
 public:
  // tokenizer_json: path of a tokenizer.json. config: "" (none), a tokenizer_config.json path, or a
  // directory holding one (a directory without it is fine).
  static Tokenizer from_file(const std::string& tokenizer_json, const std::string& config = "");
  // A checkpoint's tokenizer: `path` is a checkpoint directory (its tokenizer.json and, when
  // present, tokenizer_config.json) or a tokenizer.json file (with the tokenizer_config.json next to
  // it, when present). A missing tokenizer.json is an error naming the path.
  static Tokenizer from_checkpoint(const std::string& path);
  // The same from JSON text (config_json may be empty). `origin` names the source in errors.
  static Tokenizer from_json(std::string_view tokenizer_json, std::string_view config_json = {},
                             const std::string& origin = "<memory>");

  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens = true) const;
  Encoding encode_with_offsets(std::string_view text, bool add_special_tokens = true) const;
  // Ids unknown to the vocabulary are skipped (as HF does). skip_special_tokens drops added tokens
  // marked special. Invalid UTF-8 produced by byte tokens becomes U+FFFD.
  std::string decode(const std::vector<int32_t>& ids, bool skip_special_tokens = false) const;

  std::optional<std::string> id_to_token(int32_t id) const;
  std::optional<int32_t> token_to_id(std::string_view token) const;
  size_t vocab_size() const;  // model vocabulary plus added tokens (HF get_vocab_size(True))
  std::optional<int32_t> bos_id() const;
  std::optional<int32_t> eos_id() const;
  bool is_special(int32_t id) const;

  struct Impl;

 private:
  explicit Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;
};

}  // namespace kvprime
