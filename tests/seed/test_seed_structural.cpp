// The seed's tests (shared/seed/000_5421c10914bb9ccd.txt) that hold for any model, whatever its
// weights, run on every parity fixture (tests/fixtures/parity/*: tiny random-weight HF checkpoints of
// Llama 3 (llama3 rope scaling), Llama with YaRN, Mistral (sliding window), Qwen2 (qkv bias), Qwen3
// (q/k norm, head_dim != hidden/heads), Gemma 2 (softcaps, sliding/global), Gemma 3 (local/global
// RoPE bases, linear scaling on global layers)). Semantic checks (right answer preferred) need a
// trained model and live in test_seed_demo.cpp.
//
// The text API (Primer) needs a tokenizer whose ids fit the fixtures' 512 embeddings: the demo
// model's byte-level BPE cut to its first 512 ids (seed_common.h, demo_tokenizer_cut). It keeps the
// boundary behaviour of the full demo tokenizer on the seed's texts ("Document" is one token, "Ġthe"
// takes a preceding space), so the seed's tests 8-10 see the same token boundaries as on the demo.
//
// Tolerances: kF32Tol (1e-5 relative) between float32 computations that differ only in reduction
// order; RoPE errors bounded by counting float32 / float16 roundings (seed_common.h).
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <numeric>

#include "kvprime/cache/seed_rope.h"
#include "kvprime/cache/surgery.h"
#include "kvprime/core/error.h"
#include "kvprime/model/rope.h"
#include "kvprime/prime/experiment_config.h"
#include "kvprime/prime/score.h"
#include "seed_common.h"

using namespace kvprime;
using namespace kvprime::seedtest;
using kvprime::test::max_abs_diff;
using kvprime::test::max_rel_diff;

namespace {

// Every fixture directory (a new fixture is covered without editing this file).
std::vector<std::string> parity_fixtures() {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(kvprime::test::fixture("parity")))
    if (e.is_directory() && std::filesystem::exists(e.path() / "config.json"))
      out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

at::Tensor randn(std::vector<int64_t> shape, uint64_t seed, at::ScalarType dtype = at::kFloat) {
  auto g = at::make_generator<at::CPUGeneratorImpl>(seed);
  return at::randn(shape, g, at::TensorOptions().dtype(at::kFloat)).to(dtype);
}

double max_pair_norm(const at::Tensor& x) {
  const int64_t h = x.size(-1) / 2;
  at::Tensor d = x.to(at::kDouble);
  return (d.narrow(-1, 0, h).pow(2) + d.narrow(-1, h, h).pow(2)).sqrt().max().item<double>();
}

class SeedStructural : public ::testing::TestWithParam<std::string> {
 protected:
  static void SetUpTestSuite() { tok_ = new Tokenizer(demo_tokenizer_cut(512)); }
  static void TearDownTestSuite() { delete tok_; }
  void SetUp() override {
    dir_ = kvprime::test::fixture("parity/" + GetParam());
    model_ = std::make_unique<Model>(Model::load(dir_));
    primer_ = std::make_unique<Primer>(*model_, *tok_, config_);
  }
  const ModelConfig& cfg() const { return model_->config(); }
  int64_t n_layer() const { return model_->config().n_layer; }

  static Tokenizer* tok_;
  std::string dir_;
  std::unique_ptr<Model> model_;
  ExperimentConfig config_;  // the seed's defaults
  std::unique_ptr<Primer> primer_;
};
Tokenizer* SeedStructural::tok_ = nullptr;

// Seed TEST 1, on every layer's rotary. kvprime's correction (Rotary::shift by -S) recovers the key
// at p from the key at p + S on every architecture. The seed's build_rope_correction(S, head_dim,
// theta) does so only on layers with plain RoPE at the theta get_rope_theta reads; on llama3/YaRN
// scaling and on Gemma 3 (local base 10^4 vs the global 10^6 the seed reads, linear x8 on global
// layers) it is wrong, which is asserted for S >= 20 as an error above 0.1 of the key's rotation-pair
// norm (measured 0.38 - 1.8; at small S YaRN's mildly interpolated dims are off by only S x 0.0075
// rad). Separately: the seed's head_dim = hidden/heads is not the
// head_dim of Qwen3 and Gemma 3, and the seed's single-theta cache correction refuses it.
// Bound (seed: 1e-3): R eps32 (4 (p + S) + 2 S + 16), R the largest rotation-pair norm: HF forms
// q * inv_freq in float32 (2 q eps32 rad at position q <= p + S), the correction's angle
// S * inv_freq is off by up to 2 S eps32, cos/sin and the products add a few eps32.
TEST_P(SeedStructural, Seed01RopeCorrectionMatchesTheModelsRotary) {
  const double theta = get_rope_theta(raw_config(dir_));
  const int64_t hd = cfg().head_dim;
  at::Tensor key_pre = randn({1, 1, 1, hd}, 1);
  const std::vector<std::pair<int64_t, int64_t>> cases = {{1, 20}, {3, 1}, {3, 5}, {3, 50}, {3, 200}};
  int seed_ok_layers = 0, seed_wrong_layers = 0;
  for (int64_t il = 0; il < n_layer(); ++il) {
    const Rotary& rot = model_->rotary(il);
    const RopeParams& rp = rot.params();
    const bool seed_applies = rp.type == RopeType::Default && rp.theta == theta &&
                              rot.frequencies().rotary_dim == hd;
    (seed_applies ? seed_ok_layers : seed_wrong_layers)++;
    for (auto [p, S] : cases) {
      SCOPED_TRACE("layer " + std::to_string(il) + " p=" + std::to_string(p) + " S=" + std::to_string(S));
      at::Tensor k_t = rot.apply(key_pre, at::full({1, 1}, p, at::kLong));
      at::Tensor k_s = rot.apply(key_pre, at::full({1, 1}, p + S, at::kLong));
      const double R = max_pair_norm(k_s);
      const double bound = R * kEps32 * (4.0 * (p + S) + 2.0 * S + 16.0);
      EXPECT_LT(max_abs_diff(rot.shift(k_s, at::full({}, -S, at::kLong)), k_t), bound);
      auto [c, s] = build_rope_correction(S, hd, theta);
      const double seed_err = max_abs_diff(k_s * c + rotate_half(k_s) * s, k_t);
      if (seed_applies) {
        EXPECT_LT(seed_err, bound);
      } else if (S >= 20) {
        note(GetParam(), " layer ", il, " S=", S, ": seed correction error / R = ", seed_err / R);
        EXPECT_GT(seed_err, 0.1 * R) << "the single-theta correction should be visibly wrong";
      }
    }
  }
  // Which of the known fixtures the seed's RoPE fits (a new fixture is checked above, not here).
  const std::map<std::string, bool> seed_is_wrong = {
      {"llama3", true}, {"llama_yarn", true}, {"gemma3", true}, {"mistral", false},
      {"qwen2", false}, {"qwen3", false}, {"gemma2", false}};
  const std::string arch = GetParam();
  if (seed_is_wrong.count(arch))
    EXPECT_EQ(seed_wrong_layers > 0, seed_is_wrong.at(arch)) << seed_ok_layers << " layers where the seed's RoPE applies";

  const int64_t hd_seed = cfg().hidden_size / cfg().n_head;
  if (arch == "qwen3" || arch == "gemma3") EXPECT_NE(hd_seed, hd);
  if (hd_seed != hd) {
    KVCache c = random_cache(*model_, at::kFloat, iota_positions(4), 1);
    EXPECT_THROW(correct_rope_positions_single_theta(c, 1, theta, hd_seed, true), Error);
  }
}

// Seed TEST 2 with kvprime's rotation, every layer: shift by -S then +S is the identity to the
// keys' precision. float64 keys: cos/sin in float64, so 1e-14 relative. float32: two rotations with
// rounded cos/sin, two products and a sum each: 10 eps32 R. float16 keys: computed in float32 and
// rounded to float16 after each direction (<= eps16 R per element each, the first rotated by the
// second): 4 eps16 R, and nonzero.
TEST_P(SeedStructural, Seed02RopeRoundtripIsIdentityToTheKeysPrecision) {
  const int64_t hd = cfg().head_dim;
  at::Tensor k64 = randn({1, 8, 10, hd}, 2).to(at::kDouble);
  const auto minus = at::full({}, -15, at::kLong), plus = at::full({}, 15, at::kLong);
  for (int64_t il = 0; il < n_layer(); ++il) {
    SCOPED_TRACE("layer " + std::to_string(il));
    const Rotary& rot = model_->rotary(il);
    EXPECT_LT(max_abs_diff(rot.shift(rot.shift(k64, minus), plus), k64), 1e-14 * 16 * k64.abs().max().item<double>());
    at::Tensor k32 = k64.to(at::kFloat);
    EXPECT_LT(max_abs_diff(rot.shift(rot.shift(k32, minus), plus), k32), 10 * kEps32 * max_pair_norm(k32));
    at::Tensor k16 = k64.to(at::kHalf);
    const double err16 = max_abs_diff(rot.shift(rot.shift(k16, minus), plus), k16);
    EXPECT_GT(err16, 0.0);
    EXPECT_LT(err16, 4 * kEps16 * max_pair_norm(k16));
  }
}

// Seed TEST 3 on every architecture: apply_rope_roundtrip_noise keeps BOS (and values, positions)
// bit-identical, perturbs float16 document keys by a nonzero amount below 4 eps16 R (two float16
// roundings, see test 2; seed: 1e-5 < mean max < 0.1), and never writes into its input.
TEST_P(SeedStructural, Seed03RopeRoundtripNoise) {
  KVCache cache = random_cache(*model_, at::kHalf, iota_positions(10), 3);
  KVCache before = cache.clone();
  KVCache noisy = apply_rope_roundtrip_noise(cache, 10, *model_);
  double sum_max = 0;
  for (int64_t il = 0; il < n_layer(); ++il) {
    SCOPED_TRACE("layer " + std::to_string(il));
    EXPECT_TRUE(at::equal(noisy.key(il).slice(2, 0, 1), before.key(il).slice(2, 0, 1)));
    EXPECT_TRUE(at::equal(noisy.value(il), before.value(il)));
    EXPECT_TRUE(at::equal(cache.key(il), before.key(il)));
    const double e = max_abs_diff(noisy.key(il).slice(2, 1), before.key(il).slice(2, 1));
    EXPECT_GT(e, 0.0);
    EXPECT_LT(e, 4 * kEps16 * max_pair_norm(before.key(il)));
    sum_max += e;
  }
  EXPECT_GT(sum_max / n_layer(), 1e-5);
  EXPECT_TRUE(at::equal(noisy.positions(), before.positions()));
}

// Seed TEST 4 on every architecture (see test_seed_demo.cpp): BOS bit-identical, document keys of
// every layer moved (pair 0 turns by 10 rad: far beyond the seed's atol 1e-6), offset 0 a no-op,
// the BOS-less variant moves slot 0 too, positions tracked.
TEST_P(SeedStructural, Seed04CorrectRopePositionsWithBos) {
  std::vector<int64_t> pos = iota_positions(9, 11);
  pos.insert(pos.begin(), 0);
  KVCache cache = random_cache(*model_, at::kHalf, pos, 4);
  KVCache corrected = correct_rope_positions_with_bos(cache, 10, *model_);
  KVCache same = correct_rope_positions_with_bos(cache, 0, *model_);
  for (int64_t il = 0; il < n_layer(); ++il) {
    SCOPED_TRACE("layer " + std::to_string(il));
    EXPECT_TRUE(at::equal(corrected.key(il).slice(2, 0, 1), cache.key(il).slice(2, 0, 1)));
    EXPECT_FALSE(at::allclose(corrected.key(il).slice(2, 1), cache.key(il).slice(2, 1), 1e-5, 1e-6));
    EXPECT_TRUE(at::equal(same.key(il), cache.key(il)));
  }
  EXPECT_TRUE(at::equal(corrected.positions(), at::tensor(iota_positions(10), at::kLong).unsqueeze(0)));
  KVCache all = random_cache(*model_, at::kHalf, iota_positions(10, 10), 5);
  KVCache moved = correct_rope_positions(all, 10, *model_);
  for (int64_t il = 0; il < n_layer(); ++il)
    EXPECT_FALSE(at::allclose(moved.key(il).slice(2, 0, 1), all.key(il).slice(2, 0, 1), 1e-5, 1e-6)) << il;
  EXPECT_TRUE(at::equal(moved.positions(), at::tensor(iota_positions(10), at::kLong).unsqueeze(0)));
}

// Seed TEST 5 (structural half): score_answer_with_cache through the text API equals a full
// forward over the identical ids to kF32Tol relative (seed: 5%), and leaves the cache untouched.
TEST_P(SeedStructural, Seed05CachedNllEqualsFullForward) {
  const std::string context = format_template(config_.document_template, {{"document", kPassage}});
  BuiltCache built = primer_->build_kv_cache(context);
  KVCache before = built.cache.clone();
  const std::string qp = format_template(config_.query_template, {{"query", kQuery}});
  const double nll = score_answer_with_cache(*primer_, built.cache, built.length, qp, kAnswer);
  const TokenIds a_ids = primer_->tokenize(kAnswer);
  const TokenIds all = cat_ids(cat_ids(primer_->tokenize_with_bos(context), primer_->tokenize(qp)), a_ids);
  const double full = full_forward_nll(*model_, all, static_cast<int64_t>(a_ids.size()));
  EXPECT_NEAR(nll, full, kF32Tol * std::abs(full)) << "cached=" << nll << " full=" << full;
  EXPECT_TRUE(std::isfinite(nll) && nll > 0);
  for (int64_t il = 0; il < n_layer(); ++il) {
    EXPECT_TRUE(at::equal(built.cache.key(il), before.key(il))) << il;
    EXPECT_TRUE(at::equal(built.cache.value(il), before.value(il))) << il;
  }
  EXPECT_TRUE(at::equal(built.cache.positions(), before.positions()));
}

// Seed TESTS 6 and 7 on every architecture, through build_matched_caches (the seed's prefix
// "Some irrelevant prefix text here. " + separator " " + "Document:\n" + PASSAGE; bare and primed
// from the same document ids).
// 6: layer-0 document keys of the corrected primed cache equal the bare cache's to kF32Tol (layer 0
//    sees no other token; only reduction order and a float32 rotation differ); BOS keys and values
//    equal in every layer (position 0, attends only to itself); key divergence: layer 0 < last.
// 7: layer-0 values equal to kF32Tol; the last layer's values differ by more than 1e-3 of their
//    scale (the prefix's influence; with a sliding window it reaches only the first document slots,
//    hence a max, not an RMS).
TEST_P(SeedStructural, Seed06And07PrimedVsBareKeysAndValues) {
  MatchedCaches m = primer_->build_matched_caches("Some irrelevant prefix text here.", kPassage);
  ASSERT_EQ(m.bare.length(), m.primed.length());
  EXPECT_EQ(cache_ids(m.bare), cache_ids(m.primed));
  EXPECT_TRUE(at::equal(m.bare.positions(), m.primed.positions()));
  const int64_t L = n_layer();
  std::vector<double> key_errs = layer_rel_diffs(m.primed, m.bare, true, 1);
  EXPECT_LT(key_errs[0], kF32Tol);
  EXPECT_LT(key_errs[0], key_errs[L - 1]);
  for (int64_t il = 0; il < L; ++il) {
    EXPECT_LT(max_rel_diff(m.primed.key(il).slice(2, 0, 1), m.bare.key(il).slice(2, 0, 1)), kF32Tol) << il;
    EXPECT_LT(max_rel_diff(m.primed.value(il).slice(2, 0, 1), m.bare.value(il).slice(2, 0, 1)), kF32Tol) << il;
  }
  EXPECT_LT(max_rel_diff(m.primed.value(0).slice(2, 1), m.bare.value(0).slice(2, 1)), kF32Tol);
  EXPECT_GT(max_rel_diff(m.primed.value(L - 1).slice(2, 1), m.bare.value(L - 1).slice(2, 1)), 1e-3);
  std::vector<double> div = layer_rms_diffs(m.primed, m.bare, false, 1);
  EXPECT_LT(div[0], div[L - 1]);
}

// Seed TEST 8 on every architecture: keep_len = 1 + document tokens of the joint tokenization, the
// cache holds exactly the document's tokens at positions 0..keep_len-1, and it scores to a finite
// positive NLL.
TEST_P(SeedStructural, Seed08TruncatedCorrectedCacheLength) {
  TruncatedCache t = primer_->build_truncated_kv_cache_corrected("how much oxygen", kPassage);
  const std::string prefix = format_template(config_.surrogate_template, {{"surrogate", "how much oxygen"}});
  const std::string doc = "Document:\n" + kPassage;
  const TokenIds full = primer_->tokenize_with_bos(prefix + doc);
  EXPECT_EQ(t.keep_len, t.cache.length());
  EXPECT_EQ(t.keep_len, static_cast<int64_t>(full.size()) - t.prefix_token_len + 1);
  EXPECT_EQ(cache_ids(t.cache, 1), slice_ids(full, t.prefix_token_len));
  EXPECT_EQ(tok_->decode(t.doc_ids), doc);
  EXPECT_TRUE(at::equal(t.cache.positions(), at::arange(t.keep_len, at::kLong).unsqueeze(0)));
  const double nll = score_answer_with_cache(*primer_, t.cache, t.keep_len,
                                             format_template(config_.query_template, {{"query", kQuery}}), kAnswer);
  EXPECT_TRUE(std::isfinite(nll) && nll > 0) << nll;
}

// Seed TEST 9 on every architecture: prefix_token_len is the seed's count (tokens of "prefix "
// alone, with BOS: the separator stays a lone "Ġ" before "Document" with this tokenizer, see
// test_seed_demo.cpp), keep_len > 1; two different prefixes give the same document ids, equal
// layer-0 keys/values (kF32Tol: layer 0 cannot see the prefix) and different last-layer values
// (> 1e-3 of their scale; seed: mean |diff| > 0.001).
TEST_P(SeedStructural, Seed09VariablePrefixCache) {
  TruncatedCache t = primer_->build_truncated_cache_variable_prefix("Random prefix text here", kPassage);
  const int64_t seed_count = static_cast<int64_t>(primer_->tokenize_with_bos("Random prefix text here ").size());
  EXPECT_EQ(t.prefix_token_len, seed_count);
  EXPECT_EQ(t.independent_prefix_token_len, seed_count);
  EXPECT_GT(t.keep_len, 1);
  TruncatedCache a = primer_->build_truncated_cache_variable_prefix("Hello world", kPassage);
  TruncatedCache b = primer_->build_truncated_cache_variable_prefix(
      "Completely different text about quantum physics and black holes", kPassage);
  ASSERT_EQ(a.doc_ids, b.doc_ids);
  const int64_t L = n_layer();
  EXPECT_GT(max_rel_diff(a.cache.value(L - 1), b.cache.value(L - 1)), 1e-3);
  EXPECT_LT(max_rel_diff(a.cache.value(0), b.cache.value(0)), kF32Tol);
  EXPECT_LT(max_rel_diff(a.cache.key(0), b.cache.key(0)), kF32Tol);
}

// Seed TEST 10 on every architecture. The seed's detector (document alone vs the joint ids after
// len(prefix alone)) stays quiet on its own two cases with this tokenizer ("Document" is one token,
// "ĠDocument" none) and fires on "Some prefix text " + "the quick brown fox" ("Ġthe" takes the
// space). There tokenize_joint puts the boundary one token earlier, and build_matched_caches
// (document template "{document}") gives bare and primed caches the same document ids, with
// layer-0 keys equal to kF32Tol.
TEST_P(SeedStructural, Seed10BoundaryEffectAndMatchedCaches) {
  struct Case { std::string prefix, doc; bool differs; };
  for (const Case& c : {Case{"Some prefix text ", "Document:\nThe quick brown fox", false},
                        Case{"an ", "Document:\nelectric", false},
                        Case{"Some prefix text ", "the quick brown fox", true}}) {
    SCOPED_TRACE(c.prefix + "|" + c.doc);
    const TokenIds alone = slice_ids(tok_->encode(c.doc, true), 1);
    const TokenIds prefix_ids = tok_->encode(c.prefix, true);
    const TokenIds full = tok_->encode(c.prefix + c.doc, true);
    const int64_t boundary = tokenize_joint(*tok_, c.prefix, c.doc).boundary;
    if (c.differs) {
      EXPECT_NE(alone, slice_ids(full, prefix_ids.size()));
      EXPECT_EQ(boundary, static_cast<int64_t>(prefix_ids.size()) - 1);
    } else {
      EXPECT_EQ(alone, slice_ids(full, prefix_ids.size()));
      EXPECT_EQ(boundary, static_cast<int64_t>(prefix_ids.size()));
    }
  }
  ExperimentConfig plain = config_;
  plain.document_template = "{document}";
  Primer p(*model_, *tok_, plain);
  MatchedCaches m = p.build_matched_caches("Some prefix text", "the quick brown fox");
  EXPECT_EQ(m.doc_ids, tokenize_joint(*tok_, "Some prefix text ", "the quick brown fox").doc_ids());
  EXPECT_NE(m.doc_ids, p.tokenize("the quick brown fox"));
  EXPECT_EQ(cache_ids(m.bare, 1), m.doc_ids);
  EXPECT_EQ(cache_ids(m.primed, 1), m.doc_ids);
  EXPECT_TRUE(at::equal(m.bare.positions(), m.primed.positions()));
  EXPECT_LT(max_rel_diff(m.primed.key(0), m.bare.key(0)), kF32Tol);
}

// Seed TEST 11 on every architecture: bare builds are bit-identical (same shapes, same CPU
// kernels), and the passage slots of a suffix cache equal the bare cache to kF32Tol in every layer
// (causality; sliding windows count slots, which the suffix does not move).
TEST_P(SeedStructural, Seed11SuffixCachePassagePortionMatchesBare) {
  BuiltCache a = primer_->build_kv_cache(kPassage), b = primer_->build_kv_cache(kPassage);
  BuiltCache s = primer_->build_suffix_kv_cache(kPassage, "What is the oxygen percentage?");
  ASSERT_GT(s.length, a.length);
  KVCache head = s.cache.slice(0, a.length);
  EXPECT_EQ(cache_ids(head), cache_ids(a.cache));
  for (int64_t il = 0; il < n_layer(); ++il) {
    SCOPED_TRACE("layer " + std::to_string(il));
    EXPECT_TRUE(at::equal(a.cache.key(il), b.cache.key(il)));
    EXPECT_TRUE(at::equal(a.cache.value(il), b.cache.value(il)));
    EXPECT_LT(max_rel_diff(head.key(il), a.cache.key(il)), kF32Tol);
    EXPECT_LT(max_rel_diff(head.value(il), a.cache.value(il)), kF32Tol);
  }
}

INSTANTIATE_TEST_SUITE_P(ParityFixtures, SeedStructural, ::testing::ValuesIn(parity_fixtures()),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

// The cut tokenizer is what the structural tests assume it is: 512 ids, BOS 1, lossless on the
// seed's text, "Document" and "Ġthe" whole tokens, no "ĠDocument".
TEST(SeedStructuralTokenizer, CutDemoTokenizerFitsTheFixtures) {
  Tokenizer t = demo_tokenizer_cut(512);
  EXPECT_EQ(t.vocab_size(), 512u);
  EXPECT_TRUE(t.token_to_id("Document").has_value());
  EXPECT_TRUE(t.token_to_id("Ġthe").has_value());
  EXPECT_FALSE(t.token_to_id("ĠDocument").has_value());
  EXPECT_EQ(t.bos_id(), std::optional<int32_t>(1));
  const std::string text = "Document:\n" + kPassage;
  EXPECT_EQ(t.decode(t.encode(text, false)), text);
  for (int32_t id : t.encode(text, true)) EXPECT_LT(id, 512);
}

}  // namespace
