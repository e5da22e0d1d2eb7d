// Building document caches: plain, with a suffix, primed by a prefix that is then cut away.
//
// Two layers:
//  * token-id functions (prefill, build_primed_cache, ...) take ids and a Model: exact, batched,
//    no tokenizer involved;
//  * the seed's text API on a `Primer` (model + tokenizer + ExperimentConfig) builds the prompts
//    from the templates, tokenizes, and calls the token-id layer.
//
// Token boundaries. A prefix tokenized on its own can end in a token that the joint tokenization
// merges into the document's first word ("text " -> "...", "Ġ"; joint "ĠDocument"). The seed
// counted prefix tokens on the prefix alone and so cut the wrong number of slots. Here the
// boundary is found in the JOINT tokenization by byte offsets: the document starts at the first
// token that ends after the prefix's bytes. A token straddling the boundary (the separator space
// merged into "ĠDocument") belongs to the document. Bare and primed caches of build_matched_caches
// are made from exactly those document ids.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <string>
#include <vector>

#include "kvprime/cache/kv_cache.h"
#include "kvprime/model/model.h"
#include "kvprime/prime/experiment_config.h"
#include "kvprime/tokenizer/tokenizer.h"

namespace kvprime {

using TokenIds = std::vector<int32_t>;

// ---- token-id layer ---------------------------------------------------------------------------

// One forward over `ids` at positions 0..n-1 into a fresh cache. `mask` (optional, [n, n] bool,
// true = may attend) replaces the causal mask, e.g. block_prefix_mask below.
KVCache prefill(const Model& model, const TokenIds& ids, const at::Tensor& mask = {});

// Many sequences in one forward, RIGHT-padded: row b's tokens take slots [0, n_b), padding slots
// after them are invalid (so the forward is plain causal attention, no mask). Row b, compacted
// (cache_row), equals prefill(model, docs[b]) (to float rounding of a different matmul shape).
// Score it directly with score_batch, or split it with cache_row / unstack_cache. `max_batch`
// rows per forward (0: all at once); with several forwards the rows are re-stacked left-padded
// (cache/batch.h).
KVCache prefill_batch(const Model& model, const std::vector<TokenIds>& docs, int64_t max_batch = 0);

// [T, T] bool mask for BOS + segments + document, T = 1 + sum(segment_lengths) + doc_len: every
// token sees BOS and causally its own segment; segments do not see each other; the document sees
// BOS, every segment and causally itself. segment_lengths may be empty (plain causal).
at::Tensor block_prefix_mask(const std::vector<int64_t>& segment_lengths, int64_t doc_len);

struct PrimeOptions {
  bool correct_rope = true;  // re-position document keys to 1..doc_len (BOS stays at 0)
  at::Tensor mask;           // optional [T, T] build mask over prefix_ids ++ doc_ids
};

// A primed document cache: forward prefix_ids ++ doc_ids (prefix_ids start with BOS), keep BOS +
// the doc_ids.size() document slots, and (by default) move the document keys back by
// prefix_ids.size() - 1 so they sit at positions 1..doc_len as in a bare cache.
KVCache build_primed_cache(const Model& model, const TokenIds& prefix_ids, const TokenIds& doc_ids,
                           const PrimeOptions& options = {});

// Batched and kept batched: one right-padded forward of prefixes[b] ++ docs[b]; the prefix slots
// are then marked invalid (the cut, without moving any tensor) and, with correct_rope, the
// document keys are moved back by prefixes[b].size() - 1 positions. Row b holds BOS, the invalid
// prefix slots, the document, then padding; compacted (cache_row) it equals
// build_primed_cache(prefixes[b], docs[b]). Score it directly with score_batch.
KVCache build_primed_batch(const Model& model, const std::vector<TokenIds>& prefixes,
                           const std::vector<TokenIds>& docs, const PrimeOptions& options = {});

// The same split into one compact cache per row, one forward per max_batch rows: equal to
// build_primed_cache one at a time.
std::vector<KVCache> build_primed_caches(const Model& model, const std::vector<TokenIds>& prefixes,
                                         const std::vector<TokenIds>& docs,
                                         const PrimeOptions& options = {}, int64_t max_batch = 0);

// ---- joint tokenization -----------------------------------------------------------------------

struct JointTokens {
  TokenIds ids;              // the joint tokenization of prefix + document (with BOS)
  int64_t boundary = 0;      // ids[0, boundary) are BOS + prefix, ids[boundary, ...) the document
  TokenIds prefix_ids() const { return TokenIds(ids.begin(), ids.begin() + boundary); }
  TokenIds doc_ids() const { return TokenIds(ids.begin() + boundary, ids.end()); }
};

// Tokenizes prefix + document together (special tokens added) and finds the boundary by offsets.
// The document must produce at least one token (else an Error naming the document).
JointTokens tokenize_joint(const Tokenizer& tokenizer, const std::string& prefix,
                           const std::string& document);

// ---- the seed's text API -----------------------------------------------------------------------

struct BuiltCache {
  int64_t length = 0;  // the seed's ctx_len / keep_len: number of slots, where a query starts
  KVCache cache;
};

struct TruncatedCache {
  int64_t keep_len = 0;          // 1 + document tokens
  KVCache cache;                 // BOS + document slots
  int64_t prefix_token_len = 0;  // BOS + prefix tokens in the joint tokenization (what was cut + BOS)
  // The seed's count: tokens of the prefix tokenized on its own (with BOS). Differs from
  // prefix_token_len exactly when the boundary token was merged (the trap the seed fell into).
  int64_t independent_prefix_token_len = 0;
  TokenIds doc_ids;              // the document token ids the cache holds
  int64_t offset = 0;            // how far the document keys were moved back (0 if uncorrected)
};

struct MatchedCaches {
  KVCache bare;     // BOS + doc_ids, one forward
  KVCache primed;   // BOS + prefix + doc_ids, truncated to BOS + doc_ids, corrected
  int64_t keep_len = 0;
  int64_t prefix_token_len = 0;
  TokenIds doc_ids;
};

class Primer {
 public:
  // Keeps references: model, tokenizer and config must outlive the Primer.
  Primer(const Model& model, const Tokenizer& tokenizer, const ExperimentConfig& config);

  const Model& model() const { return model_; }
  const Tokenizer& tokenizer() const { return tok_; }
  const ExperimentConfig& config() const { return cfg_; }

  // BOS + text (tokenized with special tokens), one forward. Seed: build_kv_cache(context).
  BuiltCache build_kv_cache(const std::string& text) const;

  // The passage tokenized exactly as build_kv_cache(passage) does, then the suffix
  // (suffix_template, no special tokens) appended: slots [0, build_kv_cache(passage).length) hold
  // the same tokens as the bare cache. Seed: build_suffix_kv_cache(passage, suffix).
  BuiltCache build_suffix_kv_cache(const std::string& passage, const std::string& suffix) const;

  // surrogate_template(surrogate) + document_template(passage), truncated to BOS + document.
  // Seed: build_truncated_kv_cache (uncorrected: document keys keep their primed positions).
  TruncatedCache build_truncated_kv_cache(const std::string& surrogate,
                                          const std::string& passage) const;
  // The same, document keys moved back to 1..doc_len. Seed: build_truncated_kv_cache_corrected.
  TruncatedCache build_truncated_kv_cache_corrected(const std::string& surrogate,
                                                    const std::string& passage) const;
  // prefix + prefix_separator + document_template(passage), truncated and corrected.
  // Seed: build_truncated_cache_variable_prefix -> (keep_len, cache, prefix_token_len).
  TruncatedCache build_truncated_cache_variable_prefix(const std::string& prefix,
                                                       const std::string& passage) const;
  // Bare and primed caches over the same document ids (prefix + prefix_separator + document).
  MatchedCaches build_matched_caches(const std::string& prefix, const std::string& passage) const;

  // Tokens of a text without special tokens (query prompts, answers, suffixes).
  TokenIds tokenize(const std::string& text) const;
  // Tokens with special tokens, starting with a BOS (the model's bos_token_id is prepended when
  // the tokenizer adds none, as for Qwen).
  TokenIds tokenize_with_bos(const std::string& text) const;
  // tokenize_joint(prefix, document) with the same BOS rule.
  JointTokens tokenize_joint(const std::string& prefix, const std::string& document) const;

 private:
  TruncatedCache truncated(const std::string& prefix, const std::string& document, bool correct) const;

  const Model& model_;
  const Tokenizer& tok_;
  const ExperimentConfig& cfg_;
};

}  // namespace kvprime
