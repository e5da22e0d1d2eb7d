// The seed's model-dependent test suite (shared/seed/000_5421c10914bb9ccd.txt, tests 1-11) ported to
// kvprime on the trained demo model (models/demo: Llama architecture, 8 layers, head_dim 64, default
// RoPE theta 10000, byte-level BPE adding BOS <s> = 1), in float32 on the CPU.
//
// Every `check` of the seed is an assertion here and every printout became a check. The seed ran
// Mistral-7B with 4-bit weights and chose its tolerances for that (0.05 - 0.15 between computations
// that should agree); here they are as tight as float32 allows, and each says why (see
// seed_common.h for kF32Tol / kEps32 / kEps16). Where the seed's own construction was wrong (counting
// prefix tokens on the prefix alone, comparing NLLs over a re-tokenized string), the test asserts
// the correct behaviour and, separately, that the seed's construction would indeed have differed.
//
// Semantic checks (the model prefers the right answer, the passage helps) are asserted only where
// the demo model supports them; the measured values are in the failure messages.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <memory>
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

std::string demo_dir() { return kvprime::test::source_dir() + "/models/demo"; }
std::string demo(const std::string& f) { return demo_dir() + "/" + f; }

// Every test runs on the demo model's own float32 weights and again with its linear layers in NF4
// (the seed ran 4-bit weights), plain and double-quantized: the compute stays float32, so the
// float32 tolerances below hold for the 4-bit model too (they are tighter than the seed's).
class SeedDemo : public ::testing::TestWithParam<WeightFormat> {
 protected:
  struct Loaded {
    std::unique_ptr<Model> model;
    std::unique_ptr<Primer> primer;
  };
  static void SetUpTestSuite() {
    tok_ = new Tokenizer(Tokenizer::from_file(demo("tokenizer.json"), demo("tokenizer_config.json")));
    config_ = new ExperimentConfig();
    // The demo model was trained and evaluated with the answer as " " + answer (eval.json); the
    // seed's "{answer}" would score "approximately" without its leading-space token, a form the
    // model rarely saw. Everything else is the seed's default configuration.
    config_->answer_template = " {answer}";
  }
  static void TearDownTestSuite() {
    loaded().clear();
    delete config_;
    delete tok_;
  }
  // One model per weight format, loaded by the first test that needs it.
  void SetUp() override {
    auto& slot = loaded()[GetParam()];
    if (!slot.model) {
      LoadOptions lo;
      lo.weights = GetParam();
      slot.model = std::make_unique<Model>(Model::load(demo_dir(), lo));
      slot.primer = std::make_unique<Primer>(*slot.model, *tok_, *config_);
    }
    model_ = slot.model.get();
    primer_ = slot.primer.get();
  }
  static std::map<WeightFormat, Loaded>& loaded() {
    static std::map<WeightFormat, Loaded> m;
    return m;
  }
  static const ModelConfig& cfg() { return model_->config(); }
  static int64_t n_layer() { return model_->config().n_layer; }

  static Model* model_;
  static Tokenizer* tok_;
  static ExperimentConfig* config_;
  static Primer* primer_;
};
Model* SeedDemo::model_ = nullptr;
Tokenizer* SeedDemo::tok_ = nullptr;
ExperimentConfig* SeedDemo::config_ = nullptr;
Primer* SeedDemo::primer_ = nullptr;

}  // namespace

namespace kvprime {
// How gtest (and CTest's test names) print the parameter.
void PrintTo(WeightFormat f, std::ostream* os) { *os << weight_format_name(f); }
}  // namespace kvprime

namespace {

std::string weights_name(const ::testing::TestParamInfo<WeightFormat>& info) {
  return info.param == WeightFormat::Native ? "Float32" : info.param == WeightFormat::Nf4 ? "Nf4" : "Nf4DoubleQuant";
}

at::Tensor randn(std::vector<int64_t> shape, uint64_t seed, at::ScalarType dtype = at::kFloat) {
  auto g = at::make_generator<at::CPUGeneratorImpl>(seed);
  return at::randn(shape, g, at::TensorOptions().dtype(at::kFloat)).to(dtype);
}

at::Tensor pos11(int64_t p) { return at::full({1, 1}, p, at::kLong); }

// Largest norm of a rotation pair (x[i], x[i + d/2]) of a [.., d] tensor: what a rotation error of
// angle e can move an element by is at most pair_norm * e.
double max_pair_norm(const at::Tensor& x) {
  const int64_t h = x.size(-1) / 2;
  at::Tensor d = x.to(at::kDouble);
  return (d.narrow(-1, 0, h).pow(2) + d.narrow(-1, h, h).pow(2)).sqrt().max().item<double>();
}

// ---- TEST 1 -------------------------------------------------------------------------------------
// Seed TEST 1 "RoPE correction matches HuggingFace rotary embedding". HF's rotary_emb is the
// model's own Rotary (kvprime matches HF's keys to float rounding, tests/parity). A key rotated to
// position p + S and corrected by the seed's build_rope_correction(S, hidden/heads, theta) must equal
// the key rotated to p, for the seed's (p, S) pairs; so must kvprime's Rotary::shift(-S).
// Tolerance (seed: 1e-3): counted float32 roundings. HF forms the angle q * inv_freq in float32, so
// it carries up to 2 q eps32 rad of error at position q (q <= p + S); the correction's angle
// S * inv_freq (float32 inv_freq; the product in float32 as the seed did, in float64 in
// Rotary::shift) is off by up to 2 S eps32; cos/sin and the products add a few eps32. An element
// moves by at most (pair norm) x (angle error): bound = R eps32 (4 (p + S) + 2 S + 16), 7e-6 at
// S = 1 to 2.5e-4 at S = 200 (measured: 2e-7 to 4e-6).
TEST_P(SeedDemo, Seed01RopeCorrectionMatchesTheModelsRotary) {
  const int64_t head_dim_seed = cfg().hidden_size / cfg().n_head;  // how the seed took head_dim
  ASSERT_EQ(head_dim_seed, cfg().head_dim) << "the demo model has the seed's head_dim convention";
  const double theta = get_rope_theta(raw_config(demo_dir()));
  EXPECT_EQ(theta, 10000.0);
  const Rotary& rot = model_->rotary(0);
  at::Tensor key_pre = randn({1, 1, 1, cfg().head_dim}, 1);
  const double R = max_pair_norm(key_pre);
  const std::vector<std::pair<int64_t, int64_t>> cases = {{1, 20}, {3, 1}, {3, 5}, {3, 50}, {3, 200}};
  for (auto [p, S] : cases) {
    at::Tensor k_t = rot.apply(key_pre, pos11(p));
    at::Tensor k_s = rot.apply(key_pre, pos11(p + S));
    auto [c, s] = build_rope_correction(S, cfg().head_dim, theta);
    at::Tensor seed_rec = k_s * c + rotate_half(k_s) * s;
    at::Tensor ours = rot.shift(k_s, at::full({}, -S, at::kLong));
    const double bound = R * kEps32 * (4.0 * (p + S) + 2.0 * S + 16.0);
    note("TEST 1 offset=", S, ": seed max_err=", max_abs_diff(seed_rec, k_t),
         " ours=", max_abs_diff(ours, k_t), " bound=", bound);
    EXPECT_LT(max_abs_diff(seed_rec, k_t), bound) << "p=" << p << " S=" << S;
    EXPECT_LT(max_abs_diff(ours, k_t), bound) << "p=" << p << " S=" << S;
    // Both are corrections of the same thing: the seed's cos/sin and ours agree on this model.
    EXPECT_LT(max_abs_diff(seed_rec, ours), R * kEps32 * (2.0 * S + 16.0)) << "S=" << S;
    // And the correction really moved the key (S >= 1 rotates by at least 1 rad in pair 0).
    EXPECT_GT(max_abs_diff(k_s, k_t), 1e-2) << "S=" << S;
  }
}

// ---- TEST 2 -------------------------------------------------------------------------------------
// Seed TEST 2 "RoPE roundtrip identity (float64) and bounded error (float16)": rotating by -S then
// +S with build_rope_correction is the identity up to the precision of the cos/sin and of the keys.
TEST_P(SeedDemo, Seed02RopeRoundtripIdentityFloat64AndBoundedFloat16) {
  const int64_t hd = cfg().head_dim;
  const double theta = get_rope_theta(raw_config(demo_dir()));
  const int64_t offset = 15;
  auto [cf, sf] = build_rope_correction(-offset, hd, theta);
  auto [ci, si] = build_rope_correction(offset, hd, theta);

  // float64 keys, float32-rounded cos/sin (the seed's "float32-level precision"): cos(-a) == cos(a)
  // and sin(-a) == -sin(a) exactly, so the product of the two rotations is (c^2 + s^2) I with
  // |c^2 + s^2 - 1| <= 2 sqrt(2) eps32: error <= 3 eps32 max|k| (seed: 1e-6).
  at::Tensor k64 = randn({1, 8, 10, hd}, 2).to(at::kDouble);
  at::Tensor rot64 = k64 * cf.to(at::kDouble) + rotate_half(k64) * sf.to(at::kDouble);
  at::Tensor rec64 = rot64 * ci.to(at::kDouble) + rotate_half(rot64) * si.to(at::kDouble);
  const double max_k = k64.abs().max().item<double>();
  const double err64 = max_abs_diff(rec64, k64);
  EXPECT_LT(err64, 3 * kEps32 * max_k) << "err=" << err64;
  // kvprime's Rotary::shift forms cos/sin in float64 for float64 keys: identity to float64 rounding.
  const Rotary& rot = model_->rotary(0);
  at::Tensor back64 = rot.shift(rot.shift(k64, at::full({}, -offset, at::kLong)), at::full({}, offset, at::kLong));
  EXPECT_LT(max_abs_diff(back64, k64), 1e-14 * max_k * 16);
  // ... and to float32 rounding for float32 keys: two rotations, each rounding cos/sin, two
  // products and a sum (<= 5 eps32 of the pair norm): 10 eps32 R.
  at::Tensor k32 = k64.to(at::kFloat);
  at::Tensor back32 = rot.shift(rot.shift(k32, at::full({}, -offset, at::kLong)), at::full({}, offset, at::kLong));
  EXPECT_LT(max_abs_diff(back32, k32), 10 * kEps32 * max_pair_norm(k32));

  // float16 keys with cos/sin cast to float16 and the arithmetic in float16 (as the seed did):
  // nonzero error, bounded by the roundings: per rotation cos/sin (2), two products and a sum (3),
  // each eps16 of the pair norm R: 10 eps16 R for the roundtrip (seed: < 0.1).
  at::Tensor k16 = randn({1, 8, 10, hd}, 3, at::kHalf);
  at::Tensor cf16 = cf.to(at::kHalf), sf16 = sf.to(at::kHalf), ci16 = ci.to(at::kHalf), si16 = si.to(at::kHalf);
  at::Tensor rot16 = k16 * cf16 + rotate_half(k16) * sf16;
  at::Tensor rec16 = rot16 * ci16 + rotate_half(rot16) * si16;
  const double err16 = max_abs_diff(rec16.to(at::kFloat), k16.to(at::kFloat));
  note("TEST 2 float64 err=", err64, " (bound ", 3 * kEps32 * max_k, "), float16 err=", err16,
       " (bound ", 10 * kEps16 * max_pair_norm(k16), ")");
  EXPECT_GT(err16, 0.0) << "float16 rounding must show";
  EXPECT_LT(err16, 10 * kEps16 * max_pair_norm(k16)) << "err=" << err16;
}

// ---- TEST 3 -------------------------------------------------------------------------------------
// Seed TEST 3 "apply_rope_roundtrip_noise": on a random float16 cache (the seed's DynamicCache of
// randn, here [1, n_head_kv, 10, head_dim] for every layer) BOS keys stay bit-identical and the
// document keys get a nonzero, bounded perturbation. kvprime is functional: the input is unchanged,
// values and positions are kept.
// Bounds: Rotary::shift computes in float32 and rounds to the cache dtype once per direction, so
// each key element moves by at most ~2 ulps of the dtype: 2 eps16 |k| <= 4 eps16 max|k| allowing
// for the float32 part (seed: 1e-5 < mean max err < 0.1). In a float32 cache the same noise is a
// few float32 ulps.
TEST_P(SeedDemo, Seed03RopeRoundtripNoisePreservesBosAndIsSmall) {
  KVCache cache = random_cache(*model_, at::kHalf, iota_positions(10), 4);
  KVCache before = cache.clone();
  KVCache noisy = apply_rope_roundtrip_noise(cache, 10, *model_);
  ASSERT_EQ(noisy.length(), cache.length());
  std::vector<double> max_errors;
  double max_k = 0;
  for (int64_t il = 0; il < n_layer(); ++il) {
    EXPECT_TRUE(at::equal(noisy.key(il).slice(2, 0, 1), before.key(il).slice(2, 0, 1))) << "BOS, layer " << il;
    EXPECT_TRUE(at::equal(noisy.value(il), before.value(il))) << il;
    EXPECT_TRUE(at::equal(cache.key(il), before.key(il))) << "the input cache was modified, layer " << il;
    max_errors.push_back(max_abs_diff(noisy.key(il).slice(2, 1), before.key(il).slice(2, 1)));
    max_k = std::max(max_k, before.key(il).abs().max().item<double>());
  }
  EXPECT_TRUE(at::equal(noisy.positions(), before.positions()));
  const double mean_max = std::accumulate(max_errors.begin(), max_errors.end(), 0.0) / max_errors.size();
  note("TEST 3 float16 mean max err=", mean_max, " bound per layer=", 4 * kEps16 * max_k);
  EXPECT_GT(mean_max, 1e-5) << "float16 roundtrip must perturb the keys";
  for (int64_t il = 0; il < n_layer(); ++il) {
    EXPECT_GT(max_errors[il], 0.0) << il;
    EXPECT_LT(max_errors[il], 4 * kEps16 * max_k) << il;
  }

  // float32 cache: the perturbation exists only at float32 rounding level.
  KVCache c32 = random_cache(*model_, at::kFloat, iota_positions(10), 4);
  KVCache n32 = apply_rope_roundtrip_noise(c32, 10, *model_);
  for (int64_t il = 0; il < n_layer(); ++il) {
    EXPECT_TRUE(at::equal(n32.key(il).slice(2, 0, 1), c32.key(il).slice(2, 0, 1)));
    EXPECT_LT(max_abs_diff(n32.key(il), c32.key(il)), 10 * kEps32 * max_pair_norm(c32.key(il))) << il;
  }
}

// ---- TEST 4 -------------------------------------------------------------------------------------
// Seed TEST 4 "correct_rope_positions_with_bos": BOS keys bit-identical, every layer's document keys
// changed; offset 0 is a no-op; correct_rope_positions (no BOS) moves slot 0 as well. kvprime also
// tracks positions: BOS stays at 0, the document moves from 11..19 to 1..9.
// Tolerance: the seed's "changed" test is !allclose(atol=1e-6); a rotation by 10 positions moves a
// float16 key by far more than that (pair 0 turns by 10 rad).
TEST_P(SeedDemo, Seed04CorrectRopePositionsWithBos) {
  std::vector<int64_t> pos = iota_positions(9, 11);
  pos.insert(pos.begin(), 0);  // BOS at 0, document at 11..19 (built after a 10-token prefix)
  KVCache cache = random_cache(*model_, at::kHalf, pos, 5);
  KVCache corrected = correct_rope_positions_with_bos(cache, 10, *model_);
  for (int64_t il = 0; il < n_layer(); ++il) {
    EXPECT_TRUE(at::equal(corrected.key(il).slice(2, 0, 1), cache.key(il).slice(2, 0, 1))) << il;
    EXPECT_FALSE(at::allclose(corrected.key(il).slice(2, 1), cache.key(il).slice(2, 1), 1e-5, 1e-6)) << il;
    EXPECT_TRUE(at::equal(corrected.value(il), cache.value(il))) << il;
  }
  EXPECT_TRUE(at::equal(corrected.positions(), at::tensor(iota_positions(10), at::kLong).unsqueeze(0)));

  // offset = 0: nothing moves, bit for bit.
  KVCache same = correct_rope_positions_with_bos(cache, 0, *model_);
  for (int64_t il = 0; il < n_layer(); ++il) EXPECT_TRUE(at::equal(same.key(il), cache.key(il))) << il;
  EXPECT_TRUE(at::equal(same.positions(), cache.positions()));

  // No BOS: every slot moves, slot 0 included.
  KVCache all = random_cache(*model_, at::kHalf, iota_positions(10, 10), 6);
  KVCache moved = correct_rope_positions(all, 10, *model_);
  for (int64_t il = 0; il < n_layer(); ++il)
    EXPECT_FALSE(at::allclose(moved.key(il).slice(2, 0, 1), all.key(il).slice(2, 0, 1), 1e-5, 1e-6)) << il;
  EXPECT_TRUE(at::equal(moved.positions(), at::tensor(iota_positions(10), at::kLong).unsqueeze(0)));
}

// ---- TEST 5 -------------------------------------------------------------------------------------
// Seed TEST 5 "score_answer_with_cache NLL matches full forward pass", and "correct < wrong answer".
// The comparison is made on IDENTICAL token ids (BOS + context ++ query prompt ++ answer, one
// forward): the seed re-tokenized the joined string, which is only the same input when the seams
// tokenize the same; that is asserted separately. Tolerance 1e-5 relative (seed: 5%): the cached
// and the full forward differ only in float32 reduction order. Scoring must not change the cache.
TEST_P(SeedDemo, Seed05CachedNllEqualsFullForwardAndPrefersTheCorrectAnswer) {
  const std::string context = format_template(config_->document_template, {{"document", kPassage}});
  BuiltCache built = primer_->build_kv_cache(context);
  const std::string query_prompt = format_template(config_->query_template, {{"query", kQuery}});
  KVCache before = built.cache.clone();
  const double nll_cached = score_answer_with_cache(*primer_, built.cache, built.length, query_prompt, kAnswer);

  for (int64_t il = 0; il < n_layer(); ++il) {
    EXPECT_TRUE(at::equal(built.cache.key(il), before.key(il))) << "scoring changed the cache, layer " << il;
    EXPECT_TRUE(at::equal(built.cache.value(il), before.value(il))) << il;
  }
  EXPECT_EQ(built.cache.length(), before.length());

  const TokenIds ctx_ids = primer_->tokenize_with_bos(context);
  const TokenIds q_ids = primer_->tokenize(query_prompt);
  const TokenIds a_ids = primer_->tokenize(" " + kAnswer);
  ASSERT_EQ(built.length, static_cast<int64_t>(ctx_ids.size()));
  const TokenIds all = cat_ids(cat_ids(ctx_ids, q_ids), a_ids);
  const double nll_full = full_forward_nll(*model_, all, static_cast<int64_t>(a_ids.size()));
  EXPECT_NEAR(nll_cached, nll_full, kF32Tol * std::abs(nll_full))
      << "cached=" << nll_cached << " full=" << nll_full;

  // The seed's joined string: with this byte-level tokenizer every seam ("Earth." | "\n\nQuery",
  // "Answer:" | " approximately") is a pre-tokenizer split, so re-tokenizing gives the same ids and
  // the seed's comparison happens to be valid here (the mission's "Answer:approximately" trap needs
  // a seam that merges; see test_seed_tokenizers.cpp).
  const TokenIds joined = primer_->tokenize_with_bos(context + query_prompt + " " + kAnswer);
  EXPECT_EQ(joined, all);

  // Semantic: the right answer is more likely than nonsense.
  const double nll_wrong = score_answer_with_cache(*primer_, built.cache, built.length, query_prompt, kWrongAnswer);
  note("TEST 5 cached=", nll_cached, " full=", nll_full, " wrong answer=", nll_wrong);
  EXPECT_LT(nll_cached, nll_wrong) << "correct=" << nll_cached << " wrong=" << nll_wrong;
  EXPECT_TRUE(std::isfinite(nll_cached) && nll_cached > 0);

  // ctx_len must be the cache's length (the seed would silently mis-position the query).
  EXPECT_THROW(score_answer_with_cache(*primer_, built.cache, built.length - 1, query_prompt, kAnswer), Error);
}

// Beyond the seed, the semantic property the seed's experiments rely on, on the demo model's
// held-out samples (data/demo/qa.jsonl): the answer is more likely after its own passage's cache
// than after an unrelated passage's cache (the sample's first "irrelevant" passage) or a BOS-only
// cache. Scored exactly as the seed scores (score_answer_with_cache: answer tokens after the
// first; answers of one token cannot be scored that way and are skipped). The demo model reaches
// 88-91% on these in its own evaluation (models/demo/eval.json); the thresholds (80% of the samples,
// and a lower mean NLL) leave room for the different scoring convention without accepting a broken
// pipeline (a cache that carried no information about the passage would give ~50%).
TEST_P(SeedDemo, Seed05bRelevantPassageBeatsIrrelevantAndNoPassage) {
  std::map<std::string, nlohmann::json> by_id;
  std::vector<std::string> heldout;
  std::ifstream f(kvprime::test::source_dir() + "/data/demo/qa.jsonl");
  for (std::string line; std::getline(f, line);) {
    if (line.empty()) continue;
    auto j = nlohmann::json::parse(line);
    by_id[j["id"].get<std::string>()] = j;
    if (j["split"] == "heldout") heldout.push_back(j["id"].get<std::string>());
  }
  ASSERT_EQ(heldout.size(), 78u);
  std::map<std::string, BuiltCache> caches;  // one cache per passage, built once
  auto cache_of = [&](const std::string& id) -> const BuiltCache& {
    auto it = caches.find(id);
    if (it == caches.end())
      it = caches.emplace(id, primer_->build_kv_cache(format_template(
                                  config_->document_template,
                                  {{"document", by_id.at(id)["passage"].get<std::string>()}}))).first;
    return it->second;
  };
  const KVCache bos = bos_only_cache(*model_, 1);
  int n = 0, skipped = 0, wins_irrelevant = 0, wins_bos = 0;
  double sum_rel = 0, sum_irr = 0, sum_bos = 0;
  for (const std::string& id : heldout) {
    const nlohmann::json& s = by_id.at(id);
    const std::string answer = s["answer"].get<std::string>();
    if (primer_->tokenize(" " + answer).size() < 2) {
      ++skipped;
      continue;
    }
    const std::string qp = format_template(config_->query_template, {{"query", s["query"].get<std::string>()}});
    const BuiltCache& rel = cache_of(id);
    const BuiltCache& irr = cache_of(s["irrelevant"][0].get<std::string>());
    const double a = score_answer_with_cache(*primer_, rel.cache, rel.length, qp, answer);
    const double b = score_answer_with_cache(*primer_, irr.cache, irr.length, qp, answer);
    const double c = score_answer_with_cache(*primer_, bos, 1, qp, answer);
    ++n;
    wins_irrelevant += a < b;
    wins_bos += a < c;
    sum_rel += a;
    sum_irr += b;
    sum_bos += c;
  }
  const double pct_irr = 100.0 * wins_irrelevant / n, pct_bos = 100.0 * wins_bos / n;
  note("TEST 5b n=", n, " (", skipped, " one-token answers skipped): relevant < irrelevant ", pct_irr,
       "%, relevant < BOS-only ", pct_bos, "%; mean NLL ", sum_rel / n, " / ", sum_irr / n, " / ", sum_bos / n);
  EXPECT_GE(n, 60) << "most held-out answers have two or more tokens";
  EXPECT_GE(pct_irr, 80.0) << "relevant < irrelevant on " << pct_irr << "% (mean " << sum_rel / n
                           << " vs " << sum_irr / n << ")";
  EXPECT_GE(pct_bos, 80.0) << "relevant < BOS-only on " << pct_bos << "% (mean " << sum_rel / n
                           << " vs " << sum_bos / n << ")";
  EXPECT_LT(sum_rel, sum_irr);
  EXPECT_LT(sum_rel, sum_bos);
}

// ---- TESTS 6 and 7 --------------------------------------------------------------------------------
// The seed's setup: prefix "Some irrelevant prefix text here. " + " ", document "Document:\n" +
// PASSAGE; bare = BOS + the document ids taken from the joint tokenization; primed = the joint
// forward truncated to BOS + document and corrected by (prefix tokens - 1). The boundary is the
// one tokenize_joint finds by offsets.
class SeedDemoPrimed : public SeedDemo {
 protected:
  void SetUp() override {
    SeedDemo::SetUp();
    prefix_ = "Some irrelevant prefix text here. " + std::string(" ");
    document_ = "Document:\n" + kPassage;
    joint_ = tokenize_joint(*tok_, prefix_, document_);
    doc_ids_ = joint_.doc_ids();
    bare_ = prefill(*model_, cat_ids({joint_.ids[0]}, doc_ids_));
    KVCache full = prefill(*model_, joint_.ids);
    trunc_ = extract_and_truncate_cache_with_bos(full, static_cast<int64_t>(doc_ids_.size()));
    trunc_ = correct_rope_positions_with_bos(trunc_, joint_.boundary - 1, *model_);
  }
  std::string prefix_, document_;
  JointTokens joint_;
  TokenIds doc_ids_;
  KVCache bare_, trunc_;
};

// Seed TEST 6 "Truncated+corrected keys match bare cache keys".
// Layer 0's keys are RoPE(W_K norm(embed(token)), position): no attention involved, so after the
// correction they equal the bare cache's. Tolerance 1e-5 relative (seed: 0.1 absolute for 4-bit):
// same float32 arithmetic, different sequence lengths (reduction order only) and a float32 rotation.
// Deeper layers saw the prefix: their keys diverge (seed: layer 0 < last layer; here every deeper
// layer by > 1e-3 of its scale). BOS keys and values match in every layer (position 0, attends only
// to itself): 1e-5 relative (seed: mean < 1e-4).
TEST_P(SeedDemoPrimed, Seed06TruncatedCorrectedKeysMatchBareKeys) {
  ASSERT_EQ(trunc_.length(), bare_.length());
  EXPECT_EQ(cache_ids(trunc_), cache_ids(bare_));
  EXPECT_TRUE(at::equal(trunc_.positions(), bare_.positions()));

  std::vector<double> key_errs = layer_rel_diffs(trunc_, bare_, /*keys=*/true, /*from=*/1);
  std::ostringstream errs;
  for (double e : key_errs) errs << e << " ";
  note("TEST 6 per-layer key max rel diff: ", errs.str());
  EXPECT_LT(key_errs[0], kF32Tol) << "layer 0 corrected keys vs bare";
  EXPECT_LT(key_errs[0], key_errs[n_layer() - 1]);
  for (int64_t il = 1; il < n_layer(); ++il)
    EXPECT_GT(key_errs[il], 1e-3) << "layer " << il << " keys should carry the prefix's influence";

  for (int64_t il = 0; il < n_layer(); ++il) {
    EXPECT_LT(max_rel_diff(trunc_.key(il).slice(2, 0, 1), bare_.key(il).slice(2, 0, 1)), kF32Tol) << il;
    EXPECT_LT(max_rel_diff(trunc_.value(il).slice(2, 0, 1), bare_.value(il).slice(2, 0, 1)), kF32Tol) << il;
  }

  // build_primed_cache is exactly this construction.
  KVCache primed = build_primed_cache(*model_, joint_.prefix_ids(), doc_ids_);
  for (int64_t il = 0; il < n_layer(); ++il) {
    EXPECT_TRUE(at::equal(primed.key(il), trunc_.key(il))) << il;
    EXPECT_TRUE(at::equal(primed.value(il), trunc_.value(il))) << il;
  }

  // The seed counted the prefix's tokens on "... here.  " alone. With this tokenizer that count is
  // right for this text: the two spaces are "Ġ", "Ġ" both ways ("ĠĠ" is no token) and "Document"
  // is a token of its own (there is no "ĠDocument"), so no token crosses the boundary. (Test 10
  // and test_seed_tokenizers.cpp show texts and tokenizers where one does.)
  const int64_t seed_prefix_len = static_cast<int64_t>(tok_->encode(prefix_, true).size());
  EXPECT_EQ(seed_prefix_len, joint_.boundary);
  EXPECT_EQ(tok_->id_to_token(doc_ids_[0]).value_or(""), "Document");
  EXPECT_EQ(tok_->decode(doc_ids_), document_);
}

// Seed TEST 7 "Values differ between bare and truncated (prefix priming)". Seed: RMS divergence
// max > 0.01 and layer 0 < last layer. In float32 layer 0's values carry no position and no
// attention: they equal the bare ones to kF32Tol (relative), while the last layer's differ by more
// than 1% of their RMS: the prefix changed what the document's cache holds.
TEST_P(SeedDemoPrimed, Seed07ValuesDifferBetweenBareAndPrimed) {
  std::vector<double> div = layer_rms_diffs(trunc_, bare_, /*keys=*/false, /*from=*/1);
  std::ostringstream os;
  for (double d : div) os << d << " ";
  note("TEST 7 per-layer value RMS divergence: ", os.str());
  const double max_div = *std::max_element(div.begin(), div.end());
  EXPECT_GT(max_div, 0.01) << "seed's absolute RMS threshold";
  EXPECT_LT(div[0], div[n_layer() - 1]);
  EXPECT_LT(max_rel_diff(trunc_.value(0).slice(2, 1), bare_.value(0).slice(2, 1)), kF32Tol);
  const double last_rms = rms(bare_.value(n_layer() - 1).slice(2, 1));
  EXPECT_GT(div[n_layer() - 1], 0.01 * last_rms) << "last layer divergence " << div[n_layer() - 1]
                                                  << " vs RMS " << last_rms;
}

// ---- TEST 8 -------------------------------------------------------------------------------------
// Seed TEST 8 "build_truncated_kv_cache_corrected output length": keep_len = 1 + document tokens,
// and the cache is usable (finite positive NLL). The seed computed the document length as
// len(joint) - len(prefix alone); kvprime counts on the joint tokenization. For this tokenizer and
// the surrogate template (ending in "\n\n", which is "Ċ", "Ċ" both alone and before "Document":
// "ĊĊ" is no token) the two counts agree, so the seed's check holds verbatim; the document slots
// hold exactly "Document:\n" + passage at positions 1..keep_len-1.
TEST_P(SeedDemo, Seed08TruncatedCorrectedCacheLength) {
  const std::string surrogate = "how much oxygen";
  TruncatedCache t = primer_->build_truncated_kv_cache_corrected(surrogate, kPassage);
  const std::string surr_prefix = format_template(config_->surrogate_template, {{"surrogate", surrogate}});
  const std::string doc_text = "Document:\n" + kPassage;
  const TokenIds full = tok_->encode(surr_prefix + doc_text, true);
  const int64_t seed_expected_doc_len =
      static_cast<int64_t>(full.size()) - static_cast<int64_t>(tok_->encode(surr_prefix, true).size());

  EXPECT_EQ(t.keep_len, 1 + seed_expected_doc_len);
  EXPECT_EQ(t.keep_len, t.cache.length());
  EXPECT_EQ(t.keep_len, 1 + static_cast<int64_t>(t.doc_ids.size()));
  EXPECT_EQ(t.prefix_token_len, t.independent_prefix_token_len);
  EXPECT_EQ(slice_ids(full, t.prefix_token_len), t.doc_ids);
  EXPECT_EQ(tok_->decode(t.doc_ids), doc_text) << "the document slots hold exactly the document";
  EXPECT_EQ(cache_ids(t.cache, 1), t.doc_ids);
  EXPECT_EQ(t.offset, t.prefix_token_len - 1);
  EXPECT_TRUE(at::equal(t.cache.positions(), at::arange(t.keep_len, at::kLong).unsqueeze(0)));

  const double nll = score_answer_with_cache(
      *primer_, t.cache, t.keep_len, format_template(config_->query_template, {{"query", kQuery}}), kAnswer);
  note("TEST 8 keep_len=", t.keep_len, " nll=", nll);
  EXPECT_TRUE(std::isfinite(nll) && nll > 0) << nll;
  // The uncorrected variant holds the same slots, at their primed positions.
  TruncatedCache u = primer_->build_truncated_kv_cache(surrogate, kPassage);
  EXPECT_EQ(u.doc_ids, t.doc_ids);
  EXPECT_EQ(u.offset, 0);
  EXPECT_EQ(u.cache.positions()[0][1].item<int64_t>(), t.prefix_token_len);
}

// ---- TEST 9 -------------------------------------------------------------------------------------
// Seed TEST 9 "build_truncated_cache_variable_prefix": prefix_token_len = tokens of "prefix " alone
// (with BOS), keep_len > 1, and different prefixes give different values. The seed's count holds
// here: the separator space stays a lone "Ġ" before "Document" (see test 6). Values: seed mean |diff|
// > 0.001 at the last layer; in addition layer 0, which cannot see the prefix, agrees to kF32Tol.
TEST_P(SeedDemo, Seed09VariablePrefixCache) {
  const std::string prefix = "Random prefix text here";
  TruncatedCache t = primer_->build_truncated_cache_variable_prefix(prefix, kPassage);
  const int64_t seed_count = static_cast<int64_t>(tok_->encode(prefix + " ", true).size());
  EXPECT_EQ(t.prefix_token_len, seed_count);
  EXPECT_EQ(t.independent_prefix_token_len, seed_count);
  EXPECT_EQ(tok_->id_to_token(t.doc_ids[0]).value_or(""), "Document");
  EXPECT_GT(t.keep_len, 1);
  EXPECT_EQ(t.keep_len, 1 + static_cast<int64_t>(t.doc_ids.size()));

  TruncatedCache a = primer_->build_truncated_cache_variable_prefix("Hello world", kPassage);
  TruncatedCache b = primer_->build_truncated_cache_variable_prefix(
      "Completely different text about quantum physics and black holes", kPassage);
  ASSERT_EQ(a.doc_ids, b.doc_ids);
  const int64_t L = n_layer();
  const double diff = (a.cache.value(L - 1) - b.cache.value(L - 1)).abs().mean().item<double>();
  note("TEST 9 last-layer mean |diff|=", diff);
  EXPECT_GT(diff, 0.001) << "mean |diff| at the last layer";
  EXPECT_LT(max_rel_diff(a.cache.value(0), b.cache.value(0)), kF32Tol);
  EXPECT_LT(max_rel_diff(a.cache.key(0), b.cache.key(0)), kF32Tol);
}

// ---- TEST 10 ------------------------------------------------------------------------------------
// Seed TEST 10 "BPE boundary effect detection": the seed only printed whether the document's ids
// tokenized alone equal the ids after len(prefix alone) in the joint tokenization.
//  * Its two cases ("Some prefix text " / "an " + "Document:\n...") match with the demo tokenizer:
//    "Document" is one token and "ĠDocument" none, so the space stays a lone "Ġ" both ways.
//    Asserted: they match, and tokenize_joint's boundary is the seed's count.
//  * A document starting with a word that merges with the space before it does differ: "Ġthe" is a
//    token, so "Some prefix text " + "the quick brown fox" moves the space into the document's
//    first token. Asserted: the seed's slice is wrong, tokenize_joint puts the boundary one token
//    earlier, and build_matched_caches (document template "{document}") gives the bare and the
//    primed cache the same document ids; mixing the seed's bare cache (document tokenized alone)
//    with the primed one is refused, naming build_matched_caches.
TEST_P(SeedDemo, Seed10BpeBoundaryEffectAndMatchedCaches) {
  struct Case { std::string prefix, doc; bool differs; };
  for (const Case& c : {Case{"Some prefix text ", "Document:\nThe quick brown fox", false},
                        Case{"an ", "Document:\nelectric", false},
                        Case{"Some prefix text ", "the quick brown fox", true}}) {
    SCOPED_TRACE(c.prefix + "|" + c.doc);
    const TokenIds alone = slice_ids(tok_->encode(c.doc, true), 1);
    const TokenIds prefix_ids = tok_->encode(c.prefix, true);
    const TokenIds full = tok_->encode(c.prefix + c.doc, true);
    const TokenIds seed_slice = slice_ids(full, prefix_ids.size());
    JointTokens j = tokenize_joint(*tok_, c.prefix, c.doc);
    EXPECT_EQ(j.ids, full);
    if (!c.differs) {
      EXPECT_EQ(alone, seed_slice);
      EXPECT_EQ(j.boundary, static_cast<int64_t>(prefix_ids.size()));
      EXPECT_EQ(tok_->decode(j.doc_ids()), c.doc);
    } else {
      EXPECT_NE(alone, seed_slice) << "BPE splits differ: build_matched_caches is necessary";
      EXPECT_EQ(j.boundary, static_cast<int64_t>(prefix_ids.size()) - 1);
      EXPECT_EQ(tok_->id_to_token(j.doc_ids()[0]).value_or(""), "Ġthe");
      EXPECT_EQ(tok_->decode(j.doc_ids()), " " + c.doc);
      EXPECT_NE(j.doc_ids(), alone);
    }
  }

  ExperimentConfig plain = *config_;
  plain.document_template = "{document}";
  Primer p(*model_, *tok_, plain);
  MatchedCaches m = p.build_matched_caches("Some prefix text", "the quick brown fox");
  JointTokens j = tokenize_joint(*tok_, "Some prefix text ", "the quick brown fox");
  EXPECT_EQ(m.doc_ids, j.doc_ids());
  EXPECT_EQ(cache_ids(m.bare, 1), m.doc_ids);
  EXPECT_EQ(cache_ids(m.primed, 1), m.doc_ids);
  EXPECT_EQ(cache_ids(m.bare), cache_ids(m.primed));
  EXPECT_EQ(m.keep_len, 1 + static_cast<int64_t>(m.doc_ids.size()));
  EXPECT_EQ(m.prefix_token_len, j.boundary);
  EXPECT_TRUE(at::equal(m.bare.positions(), m.primed.positions()));
  EXPECT_LT(max_rel_diff(m.primed.key(0), m.bare.key(0)), kF32Tol);  // as in test 6
  EXPECT_NO_THROW(build_hybrid_cache(m.bare, m.primed));
  BuiltCache naive = p.build_kv_cache("the quick brown fox");
  ASSERT_NE(cache_ids(naive.cache, 1), m.doc_ids);
  if (naive.length == m.primed.length()) {
    try {
      build_hybrid_cache(naive.cache, m.primed);
      ADD_FAILURE() << "mixing caches of different document ids must be refused";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("build_matched_caches"), std::string::npos) << e.what();
    }
  } else {
    EXPECT_THROW(build_hybrid_cache(naive.cache, m.primed), Error);
  }
}

// ---- TEST 11 ------------------------------------------------------------------------------------
// Seed TEST 11 "Suffix cache passage portion matches bare". Determinism: two builds of the same
// passage are bit-identical (same shapes, same CPU kernels; seed: < 1e-5). Causal invariance: the
// first bare_len slots of the suffix cache hold the same tokens and equal the bare cache to
// kF32Tol in every layer (seed: 0.15 for 4-bit GEMMs whose result depends on the sequence length).
// The seed's "errors uniform, not growing with depth" (max < 3 x mean) was about quantisation
// noise; in float32 the per-layer differences are reduction-order rounding, so the assertion is
// the same bound for every layer (no depth-dependent systematic error can hide under it).
TEST_P(SeedDemo, Seed11SuffixCachePassagePortionMatchesBare) {
  BuiltCache a = primer_->build_kv_cache(kPassage);
  BuiltCache b = primer_->build_kv_cache(kPassage);
  ASSERT_EQ(a.length, b.length);
  for (int64_t il = 0; il < n_layer(); ++il) {
    EXPECT_TRUE(at::equal(a.cache.key(il), b.cache.key(il))) << il;
    EXPECT_TRUE(at::equal(a.cache.value(il), b.cache.value(il))) << il;
  }

  BuiltCache s = primer_->build_suffix_kv_cache(kPassage, "What is the oxygen percentage?");
  ASSERT_GT(s.length, a.length);
  EXPECT_EQ(s.length, s.cache.length());
  KVCache head = s.cache.slice(0, a.length);
  EXPECT_EQ(cache_ids(head), cache_ids(a.cache));
  EXPECT_EQ(slice_ids(cache_ids(s.cache), a.length),
            primer_->tokenize(format_template(config_->suffix_template, {{"suffix", "What is the oxygen percentage?"}})));
  std::vector<double> k_errs = layer_rel_diffs(head, a.cache, true), v_errs = layer_rel_diffs(head, a.cache, false);
  note("TEST 11 max key err=", *std::max_element(k_errs.begin(), k_errs.end()),
       " max value err=", *std::max_element(v_errs.begin(), v_errs.end()));
  for (int64_t il = 0; il < n_layer(); ++il) {
    EXPECT_LT(k_errs[il], kF32Tol) << "keys, layer " << il;
    EXPECT_LT(v_errs[il], kF32Tol) << "values, layer " << il;
  }
}

INSTANTIATE_TEST_SUITE_P(Weights, SeedDemo,
                         ::testing::Values(WeightFormat::Native, WeightFormat::Nf4, WeightFormat::Nf4DoubleQuant),
                         weights_name);
INSTANTIATE_TEST_SUITE_P(Weights, SeedDemoPrimed,
                         ::testing::Values(WeightFormat::Native, WeightFormat::Nf4, WeightFormat::Nf4DoubleQuant),
                         weights_name);

}  // namespace
