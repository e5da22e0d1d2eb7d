#include "kvprime/prime/score.h"

#include <algorithm>
#include <cmath>

#include "kvprime/cache/batch.h"
#include "kvprime/core/compat.h"
#include "kvprime/core/error.h"

namespace kvprime {

namespace {

void check_request(const KVCache& cache, const TokenIds& answer_ids, const char* what) {
  KVP_CHECK(cache.batch() == 1, what, ": expects a single-row cache, got batch ", cache.batch(),
            "; split it with cache_row / unstack_cache or use score_answers");
  KVP_CHECK(cache.length() >= 1, what, ": the cache is empty; build it with prefill / build_kv_cache");
  KVP_CHECK(answer_ids.size() >= 2, what, ": the answer has ", answer_ids.size(), " token(s); the "
            "NLL is averaged over the answer tokens after the first, so it needs at least 2");
}

// logits [N, V] float32 at the scored positions (answer tokens after the first, row by row),
// target [N] the answer tokens they predict -> one AnswerScore per answer. One host copy.
std::vector<AnswerScore> scores_from_logits(const at::Tensor& logits, const at::Tensor& target,
                                            const std::vector<TokenIds>& answer_ids) {
  // [2, N] double: the picked log-probabilities, and 1 where a row's logits are not all finite.
  at::Tensor picked = at::log_softmax(logits, -1)
                          .gather(1, compat::to_device(target, logits.device()).unsqueeze(1))
                          .squeeze(1)
                          .to(at::kDouble);
  at::Tensor bad = at::logical_not(at::isfinite(logits).all(1)).to(at::kDouble);
  at::Tensor both = at::stack({picked, bad}).cpu();  // the one synchronisation
  const double* pv = both.data_ptr<double>();
  const double* bv = pv + both.size(1);
  std::vector<AnswerScore> out(answer_ids.size());
  int64_t n = 0;
  for (size_t b = 0; b < answer_ids.size(); ++b) {
    AnswerScore& s = out[b];
    s.n_scored = static_cast<int64_t>(answer_ids[b].size()) - 1;
    double sum = 0;
    for (int64_t i = 0; i < s.n_scored; ++i, ++n) {
      s.token_nll.push_back(-pv[n]);
      sum += -pv[n];
      s.nonfinite_logit_rows += bv[n] != 0.0;
    }
    s.nll = sum / static_cast<double>(s.n_scored);
  }
  return out;
}

}  // namespace

std::vector<AnswerScore> score_batch(const Model& model, const KVCache& cache,
                                     const std::vector<TokenIds>& query_ids,
                                     const std::vector<TokenIds>& answer_ids,
                                     const BatchScoreOptions& options) {
  const int64_t B = cache.batch(), S = cache.length();
  KVP_CHECK(static_cast<int64_t>(query_ids.size()) == B && static_cast<int64_t>(answer_ids.size()) == B,
            "score_batch: the cache has ", B, " rows but ", query_ids.size(), " queries and ",
            answer_ids.size(), " answers were given; give one of each per row");
  KVP_CHECK(S >= 1, "score_batch: the cache is empty; build it with prefill / build_kv_cache");
  KVP_CHECK(options.start_positions.empty() || static_cast<int64_t>(options.start_positions.size()) == B,
            "score_batch: start_positions has ", options.start_positions.size(), " entries for ", B,
            " rows");
  int64_t T = 0, N = 0;
  for (int64_t b = 0; b < B; ++b) {
    const int64_t na = static_cast<int64_t>(answer_ids[b].size());
    KVP_CHECK(na >= 2, "score_answer: the answer of row ", b, " has ", na, " token(s); the NLL is "
              "averaged over the answer tokens after the first, so it needs at least 2");
    T = std::max<int64_t>(T, static_cast<int64_t>(query_ids[b].size()) + na);
    N += na - 1;
  }

  // New tokens: query ++ answer, right-padded to T. rows/target: the logits row b * T + q + i - 1
  // predicts answer[i], i >= 1.
  at::Tensor ids = at::zeros({B, T}, at::kLong), real = at::zeros({B, T}, at::kLong);
  at::Tensor rows = at::empty({N}, at::kLong), target = at::empty({N}, at::kLong);
  {
    auto* ip = ids.data_ptr<int64_t>();
    auto* rp = real.data_ptr<int64_t>();
    auto* row = rows.data_ptr<int64_t>();
    auto* tg = target.data_ptr<int64_t>();
    int64_t n = 0;
    for (int64_t b = 0; b < B; ++b) {
      const TokenIds& q = query_ids[b];
      const TokenIds& a = answer_ids[b];
      int64_t t = 0;
      for (int32_t id : q) ip[b * T + t++] = id;
      for (int32_t id : a) ip[b * T + t++] = id;
      for (int64_t i = 0; i < t; ++i) rp[b * T + i] = 1;
      const int64_t nq = static_cast<int64_t>(q.size());
      for (size_t i = 1; i < a.size(); ++i, ++n) {
        row[n] = b * T + nq + static_cast<int64_t>(i) - 1;
        tg[n] = a[i];
      }
    }
  }
  const at::Device dev = model.device();
  at::Tensor pos;
  if (!options.start_positions.empty()) {
    at::Tensor start = at::empty({B}, at::kLong);
    std::copy(options.start_positions.begin(), options.start_positions.end(), start.data_ptr<int64_t>());
    KVP_CHECK(start.min().item<int64_t>() >= 0, "score_batch: start positions must be >= 0");
    pos = start.unsqueeze(1) + at::arange(T, at::kLong).unsqueeze(0);  // [B, T], host
  } else {
    at::Tensor start = cache.valid().sum(1).to(at::kLong);  // [B] on the cache's device
    pos = start.unsqueeze(1) + at::arange(T, start.options()).unsqueeze(0);
  }

  ForwardOptions opt;
  opt.logits = LogitsMode::Rows;
  opt.logits_rows = rows;
  opt.attention_mask = real;
  opt.update_cache = false;
  if (options.hidden_slots.defined()) {
    at::Tensor h = options.hidden_slots.to(at::kBool);
    KVP_CHECK(h.dim() == 2 && h.size(0) == B && h.size(1) == S, "score_batch: hidden_slots must be [",
              B, ", ", S, "] (one flag per row and cache slot), got ", shape_str(h.sizes().vec()));
    // The cache part: what is not hidden; the new tokens keep their causal rule among themselves.
    at::Tensor causal = at::ones({T, T}, at::kLong).tril().to(at::kBool);
    opt.custom_mask = at::cat({compat::to_device(h, dev).logical_not().unsqueeze(1).expand({B, T, S}),
                               compat::to_device(causal, dev).unsqueeze(0).expand({B, T, T})}, 2);
  }
  KVCache work = cache;  // shallow; update_cache = false leaves it as it is anyway
  return scores_from_logits(model.forward(ids, pos, work, opt), target, answer_ids);
}

std::vector<AnswerScore> score_full_batch(const Model& model, const std::vector<TokenIds>& contexts,
                                          const std::vector<TokenIds>& query_ids,
                                          const std::vector<TokenIds>& answer_ids) {
  const int64_t B = static_cast<int64_t>(contexts.size());
  KVP_CHECK(B > 0, "score_full_batch: no rows");
  KVP_CHECK(static_cast<int64_t>(query_ids.size()) == B && static_cast<int64_t>(answer_ids.size()) == B,
            "score_full_batch: ", B, " contexts but ", query_ids.size(), " queries and ",
            answer_ids.size(), " answers; give one of each per row");
  int64_t T = 0, N = 0;
  for (int64_t b = 0; b < B; ++b) {
    KVP_CHECK(!contexts[b].empty(), "score_full_batch: context ", b, " is empty; it starts with BOS");
    const int64_t na = static_cast<int64_t>(answer_ids[b].size());
    KVP_CHECK(na >= 2, "score_answer: the answer of row ", b, " has ", na, " token(s); the NLL is "
              "averaged over the answer tokens after the first, so it needs at least 2");
    T = std::max<int64_t>(T, static_cast<int64_t>(contexts[b].size() + query_ids[b].size()) + na);
    N += na - 1;
  }
  at::Tensor ids = at::zeros({B, T}, at::kLong), real = at::zeros({B, T}, at::kLong);
  at::Tensor rows = at::empty({N}, at::kLong), target = at::empty({N}, at::kLong);
  auto* ip = ids.data_ptr<int64_t>();
  auto* rp = real.data_ptr<int64_t>();
  auto* row = rows.data_ptr<int64_t>();
  auto* tg = target.data_ptr<int64_t>();
  int64_t n = 0;
  for (int64_t b = 0; b < B; ++b) {
    int64_t t = 0;
    for (const TokenIds* part : {&contexts[b], &query_ids[b], &answer_ids[b]})
      for (int32_t id : *part) ip[b * T + t++] = id;
    for (int64_t i = 0; i < t; ++i) rp[b * T + i] = 1;
    const int64_t before = static_cast<int64_t>(contexts[b].size() + query_ids[b].size());
    const TokenIds& a = answer_ids[b];
    for (size_t i = 1; i < a.size(); ++i, ++n) {
      row[n] = b * T + before + static_cast<int64_t>(i) - 1;
      tg[n] = a[i];
    }
  }
  ForwardOptions opt;
  opt.logits = LogitsMode::Rows;
  opt.logits_rows = rows;
  opt.attention_mask = real;
  opt.update_cache = false;
  KVCache none = model.new_cache(B);
  return scores_from_logits(model.forward(ids, at::arange(T, at::kLong).repeat({B, 1}), none, opt),
                            target, answer_ids);
}

AnswerScore score_answer(const Model& model, const KVCache& cache, const TokenIds& query_ids,
                         const TokenIds& answer_ids, const ScoreOptions& options) {
  ScoreRequest r;
  r.cache = &cache;
  r.query_ids = query_ids;
  r.answer_ids = answer_ids;
  r.options = options;
  return score_answers(model, {r}).front();
}

std::vector<AnswerScore> score_answers(const Model& model, const std::vector<ScoreRequest>& requests,
                                       int64_t max_batch) {
  const int64_t N = static_cast<int64_t>(requests.size());
  std::vector<AnswerScore> out;
  if (N == 0) return out;
  const int64_t chunk = max_batch > 0 ? std::min(max_batch, N) : N;
  for (int64_t begin = 0; begin < N; begin += chunk) {
    const int64_t B = std::min(chunk, N - begin);
    std::vector<const KVCache*> caches;
    std::vector<TokenIds> queries, answers;
    BatchScoreOptions bo;
    bool any_hidden = false;
    for (int64_t b = 0; b < B; ++b) {
      const ScoreRequest& r = requests[begin + b];
      KVP_CHECK(r.cache != nullptr, "score_answers: request ", begin + b, " has no cache");
      check_request(*r.cache, r.answer_ids, "score_answer");
      caches.push_back(r.cache);
      queries.push_back(r.query_ids);
      answers.push_back(r.answer_ids);
      bo.start_positions.push_back(r.options.start_position.value_or(r.cache->length()));
      any_hidden = any_hidden || r.options.hidden_slots.defined();
    }
    // B == 1: the cache itself (a shallow copy, never written into); else left-padded stack.
    KVCache work = B == 1 ? *caches[0] : stack_caches(caches);
    const int64_t S = work.length();
    if (any_hidden) {
      at::Tensor hidden = at::zeros({B, S}, at::kLong).to(at::kBool);
      for (int64_t b = 0; b < B; ++b) {
        const ScoreRequest& r = requests[begin + b];
        if (!r.options.hidden_slots.defined()) continue;
        const KVCache& c = *r.cache;
        at::Tensor h = r.options.hidden_slots.to(at::kCPU).to(at::kBool);
        if (h.dim() == 2) {
          KVP_CHECK(h.size(0) == 1, "score_answer: hidden_slots [B, S] must have B = 1 for a "
                    "single-row cache, got ", shape_str(h.sizes().vec()));
          h = h[0];
        }
        KVP_CHECK(h.dim() == 1 && h.size(0) == c.length(), "score_answer: hidden_slots must be [",
                  c.length(), "] (one flag per cache slot), got ",
                  shape_str(r.options.hidden_slots.sizes().vec()));
        // Row b's cache occupies the last c.length() of the S stacked slots.
        hidden[b].slice(0, S - c.length(), S).copy_(h);
      }
      bo.hidden_slots = hidden;
    }
    for (AnswerScore& s : score_batch(model, work, queries, answers, bo)) out.push_back(std::move(s));
  }
  return out;
}

KVCache bos_only_cache(const Model& model, int32_t bos_id) { return prefill(model, {bos_id}); }

PmiScore score_pmi(const Model& model, const KVCache& cache, const KVCache& bos_cache,
                   const TokenIds& query_ids, const TokenIds& answer_ids,
                   const ScoreOptions& options) {
  KVP_CHECK(bos_cache.length() == 1, "score_pmi: the baseline cache must hold only BOS (1 slot), "
            "it has ", bos_cache.length(), "; make it with bos_only_cache");
  KVP_CHECK(cache.model() == bos_cache.model(), "score_pmi: the cache and the BOS cache come from "
            "different models ('", cache.model().name, "' vs '", bos_cache.model().name, "')");
  PmiScore p;
  ScoreRequest a{&cache, query_ids, answer_ids, options}, b{&bos_cache, query_ids, answer_ids, {}};
  auto scores = score_answers(model, {a, b});
  p.conditional = scores[0];
  p.baseline = scores[1];
  p.pmi = p.conditional.nll - p.baseline.nll;
  return p;
}

double score_answer_with_cache(const Primer& primer, const KVCache& cache, int64_t ctx_len,
                               const std::string& query_prompt, const std::string& answer) {
  KVP_CHECK(ctx_len == cache.length(), "score_answer_with_cache: ctx_len ", ctx_len,
            " does not match the cache's ", cache.length(), " slots; pass the length returned "
            "with the cache (keep_len / ctx_len)");
  const std::string text =
      format_template(primer.config().answer_template, {{"answer", answer}}, "answer_template");
  KVP_CHECK(!answer.empty(), "score_answer_with_cache: the answer is empty; every sample needs an "
            "answer of at least 2 tokens");
  TokenIds a = primer.tokenize(text);
  KVP_CHECK(a.size() >= 2, "score_answer_with_cache: answer \"", answer, "\" is ", a.size(),
            " token(s); the NLL is over the answer tokens after the first, so it needs >= 2");
  ScoreOptions opt;
  opt.start_position = ctx_len;
  return score_answer(primer.model(), cache, primer.tokenize(query_prompt), a, opt).nll;
}

}  // namespace kvprime
