// Scoring an answer against a cache: teacher-forced NLL of the answer after a query prompt.
//
// The seed's definition (kept deliberately): feed query_ids then answer_ids after the cache and
// average -log p(answer[i] | ..., answer[i-1]) over the answer tokens AFTER THE FIRST (i >= 1);
// the first answer token is not scored. An answer needs at least 2 tokens.
//
// Scoring never changes the cache it is given (it works on a shallow copy; no tensor of the input
// is written). The query starts at `start_position`; by default the seed's choice, the number of
// slots in the cache (HF's cache_position), which for a corrected or bare cache is also the next
// tracked position.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "kvprime/cache/kv_cache.h"
#include "kvprime/model/model.h"
#include "kvprime/prime/build.h"

namespace kvprime {

struct ScoreOptions {
  // Position of the first query token. nullopt: cache.length() (the seed / HF convention).
  std::optional<int64_t> start_position;
  // Query-time mask: [S] or [B, S] bool, true = this cache slot is hidden from the query and
  // answer tokens (they cannot attend to it). Undefined: everything visible.
  at::Tensor hidden_slots;
};

struct AnswerScore {
  double nll = 0.0;          // mean NLL over answer tokens after the first
  int64_t n_scored = 0;      // answer tokens scored (answer length - 1)
  std::vector<double> token_nll;  // per scored token
  // Scored positions whose logits hold a NaN or an infinity (anywhere in the vocabulary). A
  // non-zero count makes nll meaningless even when it happens to be finite; the experiment runner
  // records such a row as a failure instead of a result.
  int64_t nonfinite_logit_rows = 0;
};

// One (cache, query, answer) for a single-row cache.
AnswerScore score_answer(const Model& model, const KVCache& cache, const TokenIds& query_ids,
                         const TokenIds& answer_ids, const ScoreOptions& options = {});

struct ScoreRequest {
  const KVCache* cache = nullptr;  // single-row cache
  TokenIds query_ids, answer_ids;
  ScoreOptions options;
};

// Many requests, batched: caches are stacked (left-padded), query+answer right-padded, one forward
// per max_batch requests (0: all) through score_batch. Equal to score_answer one at a time (to
// float rounding).
std::vector<AnswerScore> score_answers(const Model& model, const std::vector<ScoreRequest>& requests,
                                       int64_t max_batch = 0);

struct BatchScoreOptions {
  // Position of each row's first query token. Empty: the row's number of valid slots, i.e. the
  // length of the row compacted (the seed's convention, computed on the device).
  std::vector<int64_t> start_positions;
  // [B, S] bool, true = this slot is hidden from row b's query and answer. Undefined: none.
  at::Tensor hidden_slots;
};

// Row b of a batched cache (any padding: prefill_batch, build_primed_batch, stack_caches) scored
// with query_ids[b] ++ answer_ids[b]: one forward, logits only at the scored answer positions, the
// NLLs copied to the host once. The cache is not changed. Row b's score equals score_answer on
// cache_row(cache, b) (to float rounding).
std::vector<AnswerScore> score_batch(const Model& model, const KVCache& cache,
                                     const std::vector<TokenIds>& query_ids,
                                     const std::vector<TokenIds>& answer_ids,
                                     const BatchScoreOptions& options = {});

// Scoring without keeping a cache: row b is ONE forward of contexts[b] ++ query_ids[b] ++
// answer_ids[b] (contexts start with BOS). Causal attention makes the context's K/V exactly those
// prefill(contexts[b]) would store, so this equals score_answer(prefill(contexts[b]), ...) to
// float rounding, with one forward instead of two and no cache held. Rows are right-padded, so
// the forward is plain causal attention (no mask).
std::vector<AnswerScore> score_full_batch(const Model& model, const std::vector<TokenIds>& contexts,
                                          const std::vector<TokenIds>& query_ids,
                                          const std::vector<TokenIds>& answer_ids);

// A cache holding only BOS (the PMI baseline's context).
KVCache bos_only_cache(const Model& model, int32_t bos_id);

// PMI = NLL(answer | cache, query) - NLL(answer | BOS-only cache, query): negative when the cache
// makes the answer more likely than the query alone does.
struct PmiScore {
  AnswerScore conditional, baseline;
  double pmi = 0.0;
};
PmiScore score_pmi(const Model& model, const KVCache& cache, const KVCache& bos_cache,
                   const TokenIds& query_ids, const TokenIds& answer_ids,
                   const ScoreOptions& options = {});

// The seed's text API. score_answer_with_cache(cache, ctx_len, query_prompt, answer): the query
// prompt and the answer (answer_template) are tokenized without special tokens; ctx_len must equal
// the cache's length (an Error otherwise: the seed would have silently mis-positioned the query).
double score_answer_with_cache(const Primer& primer, const KVCache& cache, int64_t ctx_len,
                               const std::string& query_prompt, const std::string& answer);

}  // namespace kvprime
