#include "kvprime/prime/score.h"

#include <algorithm>
#include <cmath>

#include "kvprime/cache/batch.h"
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

// Per-token NLL of answer[1..] from logits [T, V] (float32) of query ++ answer.
AnswerScore nll_from_logits(const at::Tensor& logits, int64_t n_query, const TokenIds& answer) {
  const int64_t n = static_cast<int64_t>(answer.size());
  // Row n_query + i - 1 predicts answer[i], i = 1..n-1.
  at::Tensor rows = logits.slice(0, n_query, n_query + n - 1).to(at::kFloat);  // [n-1, V]
  at::Tensor logp = at::log_softmax(rows, -1);
  at::Tensor target = at::empty({n - 1}, at::kLong);
  for (int64_t i = 1; i < n; ++i) target[i - 1] = static_cast<int64_t>(answer[i]);
  at::Tensor picked = logp.gather(1, target.to(logp.device()).unsqueeze(1)).squeeze(1)
                          .to(at::kDouble).cpu();
  AnswerScore s;
  s.n_scored = n - 1;
  double sum = 0;
  for (int64_t i = 0; i < n - 1; ++i) {
    const double v = -picked[i].item<double>();
    s.token_nll.push_back(v);
    sum += v;
  }
  s.nll = sum / static_cast<double>(n - 1);
  return s;
}

}  // namespace

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
    int64_t T = 0;
    bool any_hidden = false;
    for (int64_t b = 0; b < B; ++b) {
      const ScoreRequest& r = requests[begin + b];
      KVP_CHECK(r.cache != nullptr, "score_answers: request ", begin + b, " has no cache");
      check_request(*r.cache, r.answer_ids, "score_answer");
      caches.push_back(r.cache);
      T = std::max<int64_t>(T, r.query_ids.size() + r.answer_ids.size());
      any_hidden = any_hidden || r.options.hidden_slots.defined();
    }
    // B == 1: the cache itself (a shallow copy, never written into); else left-padded stack.
    KVCache work = B == 1 ? *caches[0] : stack_caches(caches);
    const int64_t S = work.length();

    // New tokens: query ++ answer, right-padded to T.
    at::Tensor ids = at::zeros({B, T}, at::kLong), pos = at::zeros({B, T}, at::kLong);
    at::Tensor real = at::zeros({B, T}, at::kLong);
    at::Tensor custom;
    if (any_hidden) custom = at::ones({B, T, S + T}, at::kLong).to(at::kBool);
    for (int64_t b = 0; b < B; ++b) {
      const ScoreRequest& r = requests[begin + b];
      const KVCache& c = *r.cache;
      const int64_t n = static_cast<int64_t>(r.query_ids.size() + r.answer_ids.size());
      const int64_t start = r.options.start_position.value_or(c.length());
      auto* ip = ids[b].data_ptr<int64_t>();
      int64_t t = 0;
      for (int32_t id : r.query_ids) ip[t++] = id;
      for (int32_t id : r.answer_ids) ip[t++] = id;
      pos[b].copy_(at::arange(start, start + T, at::kLong));
      real[b].slice(0, 0, n).fill_(1);
      if (r.options.hidden_slots.defined()) {
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
        custom[b].slice(1, S - c.length(), S).copy_(h.logical_not().unsqueeze(0).expand({T, c.length()}));
      }
    }
    ForwardOptions opt;
    opt.logits = LogitsMode::All;
    opt.attention_mask = real;
    if (any_hidden) {
      // The new tokens keep their causal rule among themselves.
      at::Tensor causal = at::ones({T, T}, at::kLong).tril().to(at::kBool);
      custom.slice(2, S).copy_(causal.unsqueeze(0).expand({B, T, T}));
      opt.custom_mask = custom;
    }
    at::Tensor logits = model.forward(ids, pos, work, opt);  // [B, T, V] float32
    for (int64_t b = 0; b < B; ++b) {
      const ScoreRequest& r = requests[begin + b];
      out.push_back(nll_from_logits(logits[b], static_cast<int64_t>(r.query_ids.size()), r.answer_ids));
    }
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
