// Beyond the seed, on every parity fixture architecture (tiny random-weight HF models): the model's
// real RoPE re-positioning, building under a block mask, scoring under a query-time mask, mixing
// caches, PMI, batched building/scoring equal to one at a time, and the errors that protect a
// researcher from combining the wrong caches.
#include <gtest/gtest.h>

#include "kvprime/cache/batch.h"
#include "kvprime/cache/seed_rope.h"
#include "kvprime/cache/surgery.h"
#include "kvprime/core/error.h"
#include "kvprime/model/model.h"
#include "kvprime/prime/build.h"
#include "kvprime/prime/score.h"
#include "test_support.h"

#include <nlohmann/json.hpp>

#include <fstream>

using namespace kvprime;
using kvprime::test::max_rel_diff;

namespace {

// float32 forward passes of different shapes (batch, length) differ only in reduction order:
// agreement to a few float32 ulps relative to the tensor's scale.
constexpr double kF32Tol = 1e-5;

TokenIds random_ids(int64_t n, uint64_t seed, int64_t vocab = 512) {
  auto g = at::make_generator<at::CPUGeneratorImpl>(seed);
  auto t = at::randint(3, vocab, {n}, g, at::kLong);
  TokenIds out;
  for (int64_t i = 0; i < n; ++i) out.push_back(static_cast<int32_t>(t[i].item<int64_t>()));
  return out;
}

TokenIds cat_ids(TokenIds a, const TokenIds& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

RawConfig raw_config(const std::string& dir) {
  std::ifstream f(dir + "/config.json");
  return parse_raw_config(nlohmann::json::parse(f), dir + "/config.json");
}

class Priming : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    dir_ = kvprime::test::fixture("parity/" + GetParam());
    model_ = std::make_unique<Model>(Model::load(dir_));
    bos_ = static_cast<int32_t>(model_->config().bos_token_id.value_or(1));
  }
  std::string dir_;
  std::unique_ptr<Model> model_;
  int32_t bos_ = 1;
};

// Layer 0's keys depend only on the token and its position, so a primed cache, truncated and
// re-positioned with the model's own rotary, must give the bare cache's layer-0 keys, on every
// architecture (rope scaling, yarn's attention scaling, Gemma 3 local/global bases, q/k norm).
TEST_P(Priming, CorrectedLayer0KeysEqualBareOnEveryArchitecture) {
  TokenIds prefix = cat_ids({bos_}, random_ids(23, 1));
  TokenIds doc = random_ids(17, 2);
  KVCache primed = build_primed_cache(*model_, prefix, doc);
  KVCache bare = prefill(*model_, cat_ids({bos_}, doc));
  ASSERT_EQ(primed.length(), bare.length());
  EXPECT_TRUE(at::equal(primed.positions(), bare.positions()));
  EXPECT_TRUE(at::equal(primed.token_ids(), bare.token_ids()));
  EXPECT_LT(max_rel_diff(primed.key(0), bare.key(0)), kF32Tol);
  // Values of layer 0 carry no position: equal too.
  EXPECT_LT(max_rel_diff(primed.value(0), bare.value(0)), kF32Tol);
  // Deeper layers saw the prefix: they differ (the priming effect exists).
  const int64_t L = model_->config().n_layer;
  EXPECT_GT(max_rel_diff(primed.value(L - 1), bare.value(L - 1)), 1e-3);
}

// The seed's single-theta correction is right only for unscaled default RoPE; on llama3 scaling,
// yarn and Gemma 3's local/global bases it leaves layer-0 keys far from the bare cache's.
TEST_P(Priming, SeedSingleThetaCorrectionIsWrongUnderScaledRope) {
  TokenIds prefix = cat_ids({bos_}, random_ids(40, 3));
  TokenIds doc = random_ids(12, 4);
  PrimeOptions uncorrected;
  uncorrected.correct_rope = false;
  KVCache trunc = build_primed_cache(*model_, prefix, doc, uncorrected);
  KVCache bare = prefill(*model_, cat_ids({bos_}, doc));
  const int64_t offset = static_cast<int64_t>(prefix.size()) - 1;
  KVCache ours = correct_rope_positions_with_bos(trunc, offset, *model_);
  KVCache seed = correct_rope_positions_single_theta(trunc, offset, get_rope_theta(raw_config(dir_)),
                                                     model_->config().head_dim, true);
  EXPECT_LT(max_rel_diff(ours.key(0), bare.key(0)), kF32Tol);
  const std::string arch = GetParam();
  const double seed_err = max_rel_diff(seed.key(0), bare.key(0));
  const bool scaled = arch == "llama3" || arch == "llama_yarn" || arch == "gemma3";
  if (scaled) {
    EXPECT_GT(seed_err, 1e-2) << "the single-theta correction should be visibly wrong on " << arch;
  } else {
    // Plain RoPE: the seed's float64 angles and ours agree to float32 rounding.
    EXPECT_LT(seed_err, kF32Tol);
  }
}

// Building under a block mask: segment 2 of [BOS | seg1 | seg2] cannot see seg1, so its K/V equal
// a forward of BOS + seg2 alone at the same positions. Sliding windows still apply by slot (as in
// HF), so the segments are short enough (BOS..seg2 spans 7 slots) to sit inside the fixtures'
// window of 8: otherwise the masked build hides BOS from late seg2 tokens and the reference does not.
TEST_P(Priming, BlockMaskIsolatesPrefixSegments) {
  constexpr int64_t n1 = 3, n2 = 3;
  TokenIds seg1 = random_ids(n1, 5), seg2 = random_ids(n2, 6), doc = random_ids(4, 7);
  TokenIds ids = cat_ids(cat_ids(cat_ids({bos_}, seg1), seg2), doc);
  KVCache masked = prefill(*model_, ids, block_prefix_mask({n1, n2}, 4));

  TokenIds alone = cat_ids({bos_}, seg2);
  at::Tensor a_ids = at::empty({1, 1 + n2}, at::kLong), a_pos = at::empty({1, 1 + n2}, at::kLong);
  for (int64_t i = 0; i <= n2; ++i) {
    a_ids[0][i] = static_cast<int64_t>(alone[i]);
    a_pos[0][i] = i == 0 ? 0 : n1 + i;  // BOS at 0, seg2 at its masked-build positions
  }
  KVCache ref = model_->new_cache(1);
  model_->forward(a_ids, a_pos, ref);
  at::Tensor idx = at::cat({at::zeros({1}, at::kLong), at::arange(1 + n1, 1 + n1 + n2, at::kLong)});
  for (int64_t il = 0; il < model_->config().n_layer; ++il) {
    EXPECT_LT(max_rel_diff(masked.key(il).index_select(2, idx), ref.key(il)), kF32Tol) << il;
    EXPECT_LT(max_rel_diff(masked.value(il).index_select(2, idx), ref.value(il)), kF32Tol) << il;
  }
  // The mask did something: seg2 under the causal rule (seeing seg1) has other deep values.
  KVCache causal = prefill(*model_, ids);
  const int64_t L = model_->config().n_layer;
  EXPECT_GT(max_rel_diff(masked.value(L - 1).slice(2, 1 + n1, 1 + n1 + n2),
                         causal.value(L - 1).slice(2, 1 + n1, 1 + n1 + n2)),
            1e-4);
}

// Hiding cache slots from the query equals scoring against a cache without those slots, with the
// query at the same position.
TEST_P(Priming, QueryTimeMaskEqualsRemovingSlots) {
  TokenIds doc = cat_ids({bos_}, random_ids(14, 8));
  KVCache cache = prefill(*model_, doc);
  TokenIds q = random_ids(5, 9), a = random_ids(4, 10);
  at::Tensor hidden = at::zeros({cache.length()}, at::kLong);
  hidden.slice(0, 3, 9).fill_(1);
  ScoreOptions masked;
  masked.hidden_slots = hidden.to(at::kBool);
  AnswerScore s_mask = score_answer(*model_, cache, q, a, masked);

  at::Tensor keep = at::cat({at::arange(0, 3, at::kLong), at::arange(9, cache.length(), at::kLong)});
  std::vector<at::Tensor> k, v;
  for (int64_t il = 0; il < cache.n_layer(); ++il) {
    k.push_back(cache.key(il).index_select(2, keep));
    v.push_back(cache.value(il).index_select(2, keep));
  }
  KVCache removed = KVCache::from_tensors(cache.model(), k, v, cache.positions().index_select(1, keep),
                                          cache.token_ids().index_select(1, keep),
                                          cache.valid().index_select(1, keep));
  ScoreOptions same_pos;
  same_pos.start_position = cache.length();
  AnswerScore s_removed = score_answer(*model_, removed, q, a, same_pos);
  // Sliding-window layers count slots, and removing slots brings the query closer to the early
  // ones; compare only on models without a window smaller than the sequence.
  if (model_->config().layers[0].sliding_window == 0 && model_->config().layers.back().sliding_window == 0) {
    EXPECT_NEAR(s_mask.nll, s_removed.nll, kF32Tol * std::abs(s_removed.nll));
  }
  AnswerScore s_plain = score_answer(*model_, cache, q, a);
  EXPECT_GT(std::abs(s_mask.nll - s_plain.nll), 1e-6) << "hiding slots must change the score";
}

TEST_P(Priming, ScoringNeverChangesTheCache) {
  KVCache cache = prefill(*model_, cat_ids({bos_}, random_ids(10, 11)));
  KVCache before = cache.clone();
  score_answer(*model_, cache, random_ids(3, 12), random_ids(5, 13));
  ASSERT_EQ(cache.length(), before.length());
  for (int64_t il = 0; il < cache.n_layer(); ++il) {
    EXPECT_TRUE(at::equal(cache.key(il), before.key(il)));
    EXPECT_TRUE(at::equal(cache.value(il), before.value(il)));
  }
  EXPECT_TRUE(at::equal(cache.positions(), before.positions()));
}

// Seed definition: mean NLL of answer tokens after the first == manual log-softmax over a full
// forward of the identical ids.
TEST_P(Priming, CachedScoreEqualsFullForwardOnIdenticalIds) {
  TokenIds ctx = cat_ids({bos_}, random_ids(12, 14)), q = random_ids(4, 15), a = random_ids(6, 16);
  KVCache cache = prefill(*model_, ctx);
  AnswerScore s = score_answer(*model_, cache, q, a);
  TokenIds all = cat_ids(cat_ids(ctx, q), a);
  const int64_t T = static_cast<int64_t>(all.size());
  at::Tensor ids = at::empty({1, T}, at::kLong);
  for (int64_t i = 0; i < T; ++i) ids[0][i] = static_cast<int64_t>(all[i]);
  KVCache scratch = model_->new_cache(1);
  at::Tensor logp = at::log_softmax(model_->forward(ids, at::arange(T, at::kLong).unsqueeze(0), scratch)[0], -1);
  const int64_t a0 = T - static_cast<int64_t>(a.size());
  double sum = 0;
  for (int64_t i = 1; i < static_cast<int64_t>(a.size()); ++i) sum -= logp[a0 + i - 1][a[i]].item<double>();
  const double full = sum / static_cast<double>(a.size() - 1);
  ASSERT_EQ(s.n_scored, static_cast<int64_t>(a.size()) - 1);
  EXPECT_NEAR(s.nll, full, kF32Tol * std::abs(full));
}

TEST_P(Priming, BatchedBuildAndScoreEqualOneAtATime) {
  std::vector<TokenIds> prefixes, docs;
  for (int i = 0; i < 3; ++i) {
    prefixes.push_back(cat_ids({bos_}, random_ids(5 + 7 * i, 20 + i)));
    docs.push_back(random_ids(9 - 2 * i, 30 + i));
  }
  auto batched = build_primed_caches(*model_, prefixes, docs);
  ASSERT_EQ(batched.size(), 3u);
  std::vector<ScoreRequest> reqs;
  std::vector<KVCache> singles;
  for (int i = 0; i < 3; ++i) singles.push_back(build_primed_cache(*model_, prefixes[i], docs[i]));
  for (int i = 0; i < 3; ++i) {
    const KVCache& one = singles[i];
    ASSERT_EQ(batched[i].length(), one.length());
    EXPECT_TRUE(at::equal(batched[i].positions(), one.positions()));
    for (int64_t il = 0; il < one.n_layer(); ++il) {
      EXPECT_LT(max_rel_diff(batched[i].key(il), one.key(il)), kF32Tol);
      EXPECT_LT(max_rel_diff(batched[i].value(il), one.value(il)), kF32Tol);
    }
    reqs.push_back({&singles[i], random_ids(2 + i, 40 + i), random_ids(6 - i, 50 + i), {}});
  }
  auto scores = score_answers(*model_, reqs);
  auto scores2 = score_answers(*model_, reqs, 2);  // chunked: 2 + 1
  for (int i = 0; i < 3; ++i) {
    AnswerScore one = score_answer(*model_, singles[i], reqs[i].query_ids, reqs[i].answer_ids);
    EXPECT_NEAR(scores[i].nll, one.nll, kF32Tol * std::abs(one.nll)) << i;
    EXPECT_NEAR(scores2[i].nll, one.nll, kF32Tol * std::abs(one.nll)) << i;
  }
  // prefill_batch rows equal prefill.
  KVCache pb = prefill_batch(*model_, docs);
  for (int i = 0; i < 3; ++i) {
    KVCache row = cache_row(pb, i), one = prefill(*model_, docs[i]);
    EXPECT_LT(max_rel_diff(row.key(0), one.key(0)), kF32Tol);
    EXPECT_LT(max_rel_diff(row.value(one.n_layer() - 1), one.value(one.n_layer() - 1)), kF32Tol);
  }
}

// The batched forms kept batched (right-padded rows, prefix slots cut by validity): every row,
// compacted, equals the one-at-a-time cache, and scoring the batch directly equals scoring rows.
TEST_P(Priming, BatchedCachesScoredDirectlyEqualOneAtATime) {
  std::vector<TokenIds> prefixes, docs, queries, answers;
  for (int i = 0; i < 3; ++i) {
    prefixes.push_back(cat_ids({bos_}, random_ids(2 + 3 * i, 70 + i)));  // 2, 5, 8 prefix tokens
    docs.push_back(random_ids(9 - 2 * i, 80 + i));                       // 9, 7, 5 document tokens
    queries.push_back(random_ids(1 + i, 90 + i));
    answers.push_back(random_ids(5 - i, 100 + i));
  }
  for (bool correct : {true, false}) {
    PrimeOptions po;
    po.correct_rope = correct;
    KVCache batch = build_primed_batch(*model_, prefixes, docs, po);
    std::vector<AnswerScore> direct = score_batch(*model_, batch, queries, answers);
    for (int i = 0; i < 3; ++i) {
      KVCache one = build_primed_cache(*model_, prefixes[i], docs[i], po), row = cache_row(batch, i);
      ASSERT_EQ(row.length(), one.length()) << i;
      EXPECT_TRUE(at::equal(row.positions(), one.positions())) << i;
      for (int64_t il : {int64_t{0}, one.n_layer() - 1}) {
        EXPECT_LT(max_rel_diff(row.key(il), one.key(il)), kF32Tol) << i << " layer " << il;
        EXPECT_LT(max_rel_diff(row.value(il), one.value(il)), kF32Tol) << i << " layer " << il;
      }
      // The seed's query position is the compact cache's length, also for uncorrected caches.
      ScoreOptions so;
      so.start_position = one.length();
      const double expect = score_answer(*model_, one, queries[i], answers[i], so).nll;
      EXPECT_NEAR(direct[i].nll, expect, kF32Tol * std::abs(expect)) << i << (correct ? "" : " uncorrected");
      EXPECT_EQ(direct[i].n_scored, static_cast<int64_t>(answers[i].size()) - 1);
    }
  }
  // Bare: one forward of context ++ query ++ answer equals build + score.
  std::vector<TokenIds> contexts;
  for (const auto& d : docs) contexts.push_back(cat_ids({bos_}, d));
  std::vector<AnswerScore> full = score_full_batch(*model_, contexts, queries, answers);
  KVCache bare = prefill_batch(*model_, contexts);
  std::vector<AnswerScore> via_cache = score_batch(*model_, bare, queries, answers);
  for (int i = 0; i < 3; ++i) {
    const double expect = score_answer(*model_, prefill(*model_, contexts[i]), queries[i], answers[i]).nll;
    EXPECT_NEAR(full[i].nll, expect, kF32Tol * std::abs(expect)) << i;
    EXPECT_NEAR(via_cache[i].nll, expect, kF32Tol * std::abs(expect)) << i;
    ASSERT_EQ(full[i].token_nll.size(), answers[i].size() - 1);
  }
  // Mismatched inputs are errors, not garbage.
  EXPECT_THROW(score_batch(*model_, bare, {queries[0]}, {answers[0]}), Error);
  EXPECT_THROW(score_full_batch(*model_, contexts, queries, {answers[0], answers[1], {answers[2][0]}}), Error);
}

TEST_P(Priming, PmiIsConditionalMinusBosOnly) {
  KVCache cache = prefill(*model_, cat_ids({bos_}, random_ids(10, 60)));
  KVCache bos = bos_only_cache(*model_, bos_);
  TokenIds q = random_ids(4, 61), a = random_ids(5, 62);
  PmiScore p = score_pmi(*model_, cache, bos, q, a);
  EXPECT_NEAR(p.conditional.nll, score_answer(*model_, cache, q, a).nll, 1e-9 + kF32Tol * p.conditional.nll);
  EXPECT_NEAR(p.baseline.nll, score_answer(*model_, bos, q, a).nll, 1e-9 + kF32Tol * p.baseline.nll);
  EXPECT_DOUBLE_EQ(p.pmi, p.conditional.nll - p.baseline.nll);
  EXPECT_THROW(score_pmi(*model_, cache, cache, q, a), Error);  // baseline must be BOS only
}

INSTANTIATE_TEST_SUITE_P(ParityFixtures, Priming,
                         ::testing::Values("llama3", "llama_yarn", "mistral", "qwen2", "qwen3",
                                           "gemma2", "gemma3"));

// ---- mixing and errors (one model is enough) -----------------------------------------------------

class Mixing : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = std::make_unique<Model>(Model::load(kvprime::test::fixture("parity/llama3")));
    other_ = std::make_unique<Model>(Model::load(kvprime::test::fixture("parity/mistral")));
    doc_ = random_ids(9, 70);
    bare_ = prefill(*model_, cat_ids({1}, doc_));
    primed_ = build_primed_cache(*model_, cat_ids({1}, random_ids(7, 71)), doc_);
  }
  std::unique_ptr<Model> model_, other_;
  TokenIds doc_;
  KVCache bare_, primed_;
};

TEST_F(Mixing, HybridTakesKeysFromOneAndValuesFromTheOther) {
  KVCache h = build_hybrid_cache(bare_, primed_);
  for (int64_t il = 0; il < h.n_layer(); ++il) {
    EXPECT_TRUE(at::equal(h.key(il), bare_.key(il)));
    EXPECT_TRUE(at::equal(h.value(il), primed_.value(il)));
  }
  KVCache sel = select_layer_sources({&bare_, &primed_}, std::vector<int64_t>(h.n_layer(), 0),
                                     std::vector<int64_t>(h.n_layer(), 1));
  for (int64_t il = 0; il < h.n_layer(); ++il) EXPECT_TRUE(at::equal(sel.value(il), h.value(il)));
  KVCache r = replace_values_at_layers(bare_, primed_, {1});
  EXPECT_TRUE(at::equal(r.value(0), bare_.value(0)));
  EXPECT_TRUE(at::equal(r.value(1), primed_.value(1)));
  EXPECT_THROW(replace_values_at_layers(bare_, primed_, {7}), Error);
}

TEST_F(Mixing, InterpolationEndpointsAndMidpoint) {
  KVCache a0 = interpolate_values(bare_, primed_, 0.0), a1 = interpolate_values(bare_, primed_, 1.0);
  KVCache mid = interpolate_values(bare_, primed_, 0.5);
  for (int64_t il = 0; il < bare_.n_layer(); ++il) {
    EXPECT_TRUE(at::equal(a0.value(il), bare_.value(il)));
    EXPECT_TRUE(at::equal(a1.value(il), primed_.value(il)));
    EXPECT_TRUE(at::allclose(mid.value(il), (bare_.value(il) + primed_.value(il)) / 2, 1e-6, 1e-7));
    EXPECT_TRUE(at::equal(mid.key(il), bare_.key(il)));
  }
  EXPECT_THROW(interpolate_values(bare_, primed_, std::vector<double>{0.5}), Error);
}

TEST_F(Mixing, SwapBosTakesSlotZeroOnly) {
  KVCache other_doc = prefill(*model_, cat_ids({2}, random_ids(4, 72)));
  KVCache s = swap_bos_entry(bare_, other_doc);
  EXPECT_EQ(s.length(), bare_.length());
  for (int64_t il = 0; il < s.n_layer(); ++il) {
    EXPECT_TRUE(at::equal(s.key(il).slice(2, 0, 1), other_doc.key(il).slice(2, 0, 1)));
    EXPECT_TRUE(at::equal(s.key(il).slice(2, 1), bare_.key(il).slice(2, 1)));
  }
  EXPECT_EQ(s.token_ids()[0][0].item<int64_t>(), 2);
}

TEST_F(Mixing, CachesOfDifferentModelsOrTokensAreRefused) {
  KVCache foreign = prefill(*other_, cat_ids({1}, doc_));
  EXPECT_THROW(build_hybrid_cache(bare_, foreign), Error);
  EXPECT_THROW(correct_rope_positions(bare_, 3, *other_), Error);
  // Same length, other document tokens: the BPE-boundary trap.
  KVCache wrong = prefill(*model_, cat_ids({1}, random_ids(9, 99)));
  try {
    build_hybrid_cache(bare_, wrong);
    FAIL() << "expected an Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("build_matched_caches"), std::string::npos) << e.what();
  }
  EXPECT_THROW(build_hybrid_cache(bare_, bare_.slice(0, 5)), Error);  // different lengths
}

TEST_F(Mixing, OffsetsBeyondTheCacheAndBadAnswersAreErrors) {
  EXPECT_THROW(extract_and_truncate_cache(bare_, bare_.length() + 1), Error);
  EXPECT_THROW(extract_and_truncate_cache(bare_, 0), Error);
  EXPECT_THROW(extract_and_truncate_cache_with_bos(bare_, bare_.length()), Error);
  EXPECT_NO_THROW(extract_and_truncate_cache_with_bos(bare_, bare_.length() - 1));
  EXPECT_THROW(score_answer(*model_, bare_, random_ids(3, 1), {}), Error);
  EXPECT_THROW(score_answer(*model_, bare_, random_ids(3, 1), random_ids(1, 2)), Error);
  EXPECT_THROW(prefill(*model_, {}), Error);
  EXPECT_THROW(build_primed_cache(*model_, {1, 5}, {}), Error);
}

TEST_F(Mixing, PositionsAreTracked) {
  PrimeOptions raw;
  raw.correct_rope = false;
  TokenIds prefix = cat_ids({1}, random_ids(7, 71));
  KVCache trunc = build_primed_cache(*model_, prefix, doc_, raw);
  // Uncorrected: BOS at 0, document where it was built (after the prefix).
  EXPECT_EQ(trunc.positions()[0][0].item<int64_t>(), 0);
  EXPECT_EQ(trunc.positions()[0][1].item<int64_t>(), 8);
  EXPECT_EQ(trunc.next_positions()[0].item<int64_t>(), 8 + 9);
  EXPECT_TRUE(at::equal(primed_.positions(), bare_.positions()));
  // Re-positioning to arbitrary targets and back is the identity up to float32 rounding.
  at::Tensor target = at::arange(100, 100 + bare_.length(), at::kLong);
  KVCache there = reposition_keys(bare_, target, *model_);
  KVCache back = reposition_keys(there, bare_.positions(), *model_);
  EXPECT_TRUE(at::equal(there.positions()[0], target));
  EXPECT_LT(max_rel_diff(back.key(1), bare_.key(1)), kF32Tol);
}

}  // namespace
