#include "kvprime/prime/build.h"

#include <algorithm>
#include <numeric>

#include "kvprime/cache/batch.h"
#include "kvprime/cache/surgery.h"
#include "kvprime/core/compat.h"
#include "kvprime/core/error.h"

namespace kvprime {

namespace {

at::Tensor ids_tensor(const TokenIds& ids) {
  at::Tensor t = at::empty({1, static_cast<int64_t>(ids.size())}, at::kLong);
  auto* p = t.data_ptr<int64_t>();
  for (size_t i = 0; i < ids.size(); ++i) p[i] = ids[i];
  return t;
}

TokenIds concat(const TokenIds& a, const TokenIds& b) {
  TokenIds out(a);
  out.insert(out.end(), b.begin(), b.end());
  return out;
}

}  // namespace

KVCache prefill(const Model& model, const TokenIds& ids, const at::Tensor& mask) {
  KVP_CHECK(!ids.empty(), "prefill: no tokens to build a cache from");
  const int64_t T = static_cast<int64_t>(ids.size());
  KVCache cache = model.new_cache(1);
  ForwardOptions opt;
  opt.logits = LogitsMode::None;
  if (mask.defined()) {
    KVP_CHECK(mask.dim() == 2 && mask.size(0) == T && mask.size(1) == T, "prefill: mask must be [",
              T, ", ", T, "] for ", T, " tokens, got ", shape_str(mask.sizes().vec()));
    opt.custom_mask = mask.to(at::kBool).unsqueeze(0);  // [1, T, 0 + T]
  }
  model.forward(ids_tensor(ids), at::arange(T, at::kLong).unsqueeze(0), cache, opt);
  return cache;
}

KVCache prefill_batch(const Model& model, const std::vector<TokenIds>& docs, int64_t max_batch) {
  KVP_CHECK(!docs.empty(), "prefill_batch: no documents");
  const int64_t N = static_cast<int64_t>(docs.size());
  const int64_t chunk = max_batch > 0 ? std::min(max_batch, N) : N;
  std::vector<KVCache> rows;
  for (int64_t begin = 0; begin < N; begin += chunk) {
    const int64_t B = std::min(chunk, N - begin);
    int64_t T = 0;
    for (int64_t b = 0; b < B; ++b) {
      KVP_CHECK(!docs[begin + b].empty(), "prefill_batch: document ", begin + b, " has no tokens");
      T = std::max<int64_t>(T, docs[begin + b].size());
    }
    // Right padding: row b's tokens fill slots [0, n_b) at positions 0..n_b-1; padding slots
    // continue the positions and are invalid. Real tokens never see the padding after them, so
    // the forward needs no mask beyond causality (the fused causal attention kernels apply).
    at::Tensor ids = at::zeros({B, T}, at::kLong), pos = at::arange(T, at::kLong).repeat({B, 1});
    at::Tensor mask = at::zeros({B, T}, at::kLong);
    auto* ip = ids.data_ptr<int64_t>();
    auto* mp = mask.data_ptr<int64_t>();
    for (int64_t b = 0; b < B; ++b) {
      const TokenIds& d = docs[begin + b];
      for (size_t i = 0; i < d.size(); ++i) {
        ip[b * T + static_cast<int64_t>(i)] = d[i];
        mp[b * T + static_cast<int64_t>(i)] = 1;
      }
    }
    KVCache cache = model.new_cache(B);
    ForwardOptions opt;
    opt.logits = LogitsMode::None;
    opt.attention_mask = mask;
    model.forward(ids, pos, cache, opt);
    if (chunk == N) return cache;  // one forward: already the batched cache
    for (int64_t b = 0; b < B; ++b) rows.push_back(cache_row(cache, b));
  }
  return stack_caches(rows);
}

at::Tensor block_prefix_mask(const std::vector<int64_t>& segment_lengths, int64_t doc_len) {
  KVP_CHECK(doc_len >= 0, "block_prefix_mask: doc_len must be >= 0, got ", doc_len);
  // seg[t]: -1 for BOS, i for segment i, n for the document.
  std::vector<int64_t> seg{-1};
  const int64_t n = static_cast<int64_t>(segment_lengths.size());
  for (int64_t i = 0; i < n; ++i) {
    KVP_CHECK(segment_lengths[i] > 0, "block_prefix_mask: segment ", i, " is empty");
    seg.insert(seg.end(), segment_lengths[i], i);
  }
  seg.insert(seg.end(), doc_len, n);
  const int64_t T = static_cast<int64_t>(seg.size());
  at::Tensor s = at::empty({T}, at::kLong);
  std::copy(seg.begin(), seg.end(), s.data_ptr<int64_t>());
  at::Tensor causal = at::ones({T, T}, at::kLong).tril().to(at::kBool);
  at::Tensor qi = s.unsqueeze(1), kj = s.unsqueeze(0);  // [T, 1], [1, T]
  at::Tensor visible = (kj == -1).logical_or(qi == n).logical_or(qi == kj);
  return causal.logical_and(visible);
}

KVCache build_primed_cache(const Model& model, const TokenIds& prefix_ids, const TokenIds& doc_ids,
                           const PrimeOptions& options) {
  KVP_CHECK(!prefix_ids.empty(), "build_primed_cache: prefix_ids must start with BOS (got none)");
  KVP_CHECK(!doc_ids.empty(), "build_primed_cache: the document has no tokens");
  KVCache full = prefill(model, concat(prefix_ids, doc_ids), options.mask);
  KVCache truncated =
      extract_and_truncate_cache_with_bos(full, static_cast<int64_t>(doc_ids.size()));
  if (!options.correct_rope) return truncated;
  return correct_rope_positions_with_bos(truncated, static_cast<int64_t>(prefix_ids.size()) - 1,
                                         model);
}

KVCache build_primed_batch(const Model& model, const std::vector<TokenIds>& prefixes,
                           const std::vector<TokenIds>& docs, const PrimeOptions& options) {
  KVP_CHECK(prefixes.size() == docs.size(), "build_primed_batch: ", prefixes.size(),
            " prefixes for ", docs.size(), " documents; give one prefix per document");
  KVP_CHECK(!options.mask.defined(), "build_primed_batch: a build mask is per row; call "
            "build_primed_cache for each masked row");
  KVP_CHECK(!docs.empty(), "build_primed_batch: no documents");
  std::vector<TokenIds> rows;
  for (size_t i = 0; i < docs.size(); ++i) {
    KVP_CHECK(!prefixes[i].empty(), "build_primed_batch: prefix ", i, " has no BOS");
    KVP_CHECK(!docs[i].empty(), "build_primed_batch: document ", i, " has no tokens");
    rows.push_back(concat(prefixes[i], docs[i]));
  }
  KVCache full = prefill_batch(model, rows);  // right-padded: row b's slots start at 0
  const int64_t B = full.batch(), S = full.length();
  // Per slot of row b: [0] BOS, [1, P) prefix, [P, P + D) document, then padding. The prefix is
  // cut by marking it invalid; with correct_rope the document moves back by P - 1 positions.
  at::Tensor valid = at::zeros({B, S}, at::kLong), delta = at::zeros({B, S}, at::kLong);
  at::Tensor pos = at::arange(S, at::kLong).repeat({B, 1});
  auto* vp = valid.data_ptr<int64_t>();
  auto* dp = delta.data_ptr<int64_t>();
  auto* pp = pos.data_ptr<int64_t>();
  for (int64_t b = 0; b < B; ++b) {
    const int64_t P = static_cast<int64_t>(prefixes[b].size()), D = static_cast<int64_t>(docs[b].size());
    vp[b * S] = 1;
    for (int64_t s = P; s < P + D; ++s) {
      vp[b * S + s] = 1;
      if (options.correct_rope) {
        dp[b * S + s] = -(P - 1);
        pp[b * S + s] -= P - 1;
      }
    }
  }
  const at::Device dev = model.device();
  at::Tensor delta_dev = compat::to_device(delta, dev);
  std::vector<at::Tensor> keys, values;
  for (int64_t il = 0; il < full.n_layer(); ++il) {
    // Slots with delta 0 (BOS, cut prefix, padding) rotate by cos 0 = 1, sin 0 = 0: unchanged.
    keys.push_back(options.correct_rope ? model.rotary(il).shift(full.key(il), delta_dev) : full.key(il));
    values.push_back(full.value(il));
  }
  return KVCache::from_tensors(full.model(), std::move(keys), std::move(values),
                               compat::to_device(pos, dev), full.token_ids(),
                               compat::to_device(valid, dev).to(at::kBool), "build_primed_batch");
}

std::vector<KVCache> build_primed_caches(const Model& model, const std::vector<TokenIds>& prefixes,
                                         const std::vector<TokenIds>& docs,
                                         const PrimeOptions& options, int64_t max_batch) {
  KVP_CHECK(prefixes.size() == docs.size(), "build_primed_caches: ", prefixes.size(),
            " prefixes for ", docs.size(), " documents; give one prefix per document");
  KVP_CHECK(!docs.empty(), "build_primed_caches: no documents");
  const size_t N = docs.size();
  const size_t chunk = max_batch > 0 ? std::min<size_t>(static_cast<size_t>(max_batch), N) : N;
  std::vector<KVCache> out;
  for (size_t begin = 0; begin < N; begin += chunk) {
    const size_t end = std::min(N, begin + chunk);
    std::vector<TokenIds> p(prefixes.begin() + begin, prefixes.begin() + end),
        d(docs.begin() + begin, docs.begin() + end);
    for (KVCache& row : unstack_cache(build_primed_batch(model, p, d, options))) out.push_back(std::move(row));
  }
  return out;
}

// ---- joint tokenization -----------------------------------------------------------------------

namespace {

// The tokenizer's encoding with special tokens, made to start with a BOS: tokenizers that add none
// (Qwen) get the model's bos_token_id / the tokenizer's bos token prepended, because every cache
// of the seed keeps a BOS sink at slot 0.
Encoding encode_with_bos(const Tokenizer& tok, const std::string& text, std::optional<int64_t> model_bos) {
  Encoding e = tok.encode_with_offsets(text, true);
  if (!e.ids.empty() && e.special_tokens_mask[0]) return e;
  std::optional<int64_t> bos = tok.bos_id() ? std::optional<int64_t>(*tok.bos_id()) : model_bos;
  KVP_CHECK(bos.has_value(), "the tokenizer adds no BOS token and neither tokenizer_config.json "
            "(bos_token) nor config.json (bos_token_id) names one; kvprime caches keep a BOS at "
            "slot 0, so set bos_token in tokenizer_config.json");
  e.ids.insert(e.ids.begin(), static_cast<int32_t>(*bos));
  e.tokens.insert(e.tokens.begin(), tok.id_to_token(static_cast<int32_t>(*bos)).value_or(""));
  e.offsets.insert(e.offsets.begin(), {0, 0});
  e.special_tokens_mask.insert(e.special_tokens_mask.begin(), 1);
  return e;
}

JointTokens joint_with_bos(const Tokenizer& tok, const std::string& prefix,
                           const std::string& document, std::optional<int64_t> model_bos) {
  Encoding e = encode_with_bos(tok, prefix + document, model_bos);
  const size_t n = e.ids.size();
  size_t boundary = 1;  // slot 0 is BOS
  while (boundary < n && (e.special_tokens_mask[boundary] || e.offsets[boundary].second <= prefix.size()))
    ++boundary;
  KVP_CHECK(boundary < n, "the document \"", document.substr(0, 40),
            document.size() > 40 ? "..." : "", "\" produced no tokens after the prefix");
  JointTokens j;
  j.ids = std::move(e.ids);
  j.boundary = static_cast<int64_t>(boundary);
  return j;
}

}  // namespace

JointTokens tokenize_joint(const Tokenizer& tokenizer, const std::string& prefix,
                           const std::string& document) {
  return joint_with_bos(tokenizer, prefix, document, std::nullopt);
}

// ---- Primer -------------------------------------------------------------------------------------

Primer::Primer(const Model& model, const Tokenizer& tokenizer, const ExperimentConfig& config)
    : model_(model), tok_(tokenizer), cfg_(config) {
  const int64_t vocab = model.config().vocab_size;
  KVP_CHECK(static_cast<int64_t>(tokenizer.vocab_size()) <= vocab, "Primer: the tokenizer has ",
            tokenizer.vocab_size(), " tokens but model '", model.identity().name, "' only ", vocab,
            " embeddings; pair the model with its own tokenizer.json");
}

TokenIds Primer::tokenize(const std::string& text) const { return tok_.encode(text, false); }

TokenIds Primer::tokenize_with_bos(const std::string& text) const {
  return encode_with_bos(tok_, text, model_.config().bos_token_id).ids;
}

JointTokens Primer::tokenize_joint(const std::string& prefix, const std::string& document) const {
  return joint_with_bos(tok_, prefix, document, model_.config().bos_token_id);
}

BuiltCache Primer::build_kv_cache(const std::string& text) const {
  TokenIds ids = tokenize_with_bos(text);
  return {static_cast<int64_t>(ids.size()), prefill(model_, ids)};
}

BuiltCache Primer::build_suffix_kv_cache(const std::string& passage, const std::string& suffix) const {
  TokenIds ids = tokenize_with_bos(passage);
  TokenIds tail = tokenize(format_template(cfg_.suffix_template, {{"suffix", suffix}}, "suffix_template"));
  ids.insert(ids.end(), tail.begin(), tail.end());
  return {static_cast<int64_t>(ids.size()), prefill(model_, ids)};
}

TruncatedCache Primer::truncated(const std::string& prefix, const std::string& document,
                                 bool correct) const {
  JointTokens j = joint_with_bos(tok_, prefix, document, model_.config().bos_token_id);
  TruncatedCache out;
  out.doc_ids = j.doc_ids();
  PrimeOptions opt;
  opt.correct_rope = correct;
  out.cache = build_primed_cache(model_, j.prefix_ids(), out.doc_ids, opt);
  out.keep_len = out.cache.length();
  out.prefix_token_len = j.boundary;
  out.independent_prefix_token_len = static_cast<int64_t>(tokenize_with_bos(prefix).size());
  out.offset = correct ? j.boundary - 1 : 0;
  return out;
}

TruncatedCache Primer::build_truncated_kv_cache(const std::string& surrogate,
                                                const std::string& passage) const {
  return truncated(format_template(cfg_.surrogate_template, {{"surrogate", surrogate}}, "surrogate_template"),
                   format_template(cfg_.document_template, {{"document", passage}}, "document_template"),
                   false);
}

TruncatedCache Primer::build_truncated_kv_cache_corrected(const std::string& surrogate,
                                                          const std::string& passage) const {
  return truncated(format_template(cfg_.surrogate_template, {{"surrogate", surrogate}}, "surrogate_template"),
                   format_template(cfg_.document_template, {{"document", passage}}, "document_template"),
                   true);
}

TruncatedCache Primer::build_truncated_cache_variable_prefix(const std::string& prefix,
                                                             const std::string& passage) const {
  return truncated(prefix + cfg_.prefix_separator,
                   format_template(cfg_.document_template, {{"document", passage}}, "document_template"),
                   true);
}

MatchedCaches Primer::build_matched_caches(const std::string& prefix, const std::string& passage) const {
  JointTokens j = joint_with_bos(tok_, prefix + cfg_.prefix_separator,
                                 format_template(cfg_.document_template, {{"document", passage}}, "document_template"),
                                 model_.config().bos_token_id);
  MatchedCaches m;
  m.doc_ids = j.doc_ids();
  m.bare = prefill(model_, concat(TokenIds{j.ids[0]}, m.doc_ids));
  m.primed = build_primed_cache(model_, j.prefix_ids(), m.doc_ids);
  m.keep_len = m.primed.length();
  m.prefix_token_len = j.boundary;
  return m;
}

}  // namespace kvprime
