// Golden check against the seed's Python module: tools/make_seed_golden.py re-implements the seed's
// lib/kv_cache.py on HF transformers (CPU, float32, eager attention), runs it on the seed's PASSAGE /
// QUERY / ANSWER and prefixes with the demo model (models/demo), and dumps token ids, NLLs and the
// first/last layer K/V into tests/fixtures/seed_golden/demo.safetensors. Here kvprime's C++ API
// (Primer, score_answer_with_cache, cache surgery, the seed's single-theta RoPE) runs the same
// inputs and must reproduce them.
//
// Two families of expected values (see tools/README.md):
//   seed/...    what the seed's Python computes, including its traps: the prefix counted on the
//               prefix tokenized alone, the single-theta RoPE correction, the suffix tokenized
//               jointly. Reproduced here from kvprime's token-id layer (prefill, surgery,
//               correct_rope_positions_single_theta) so that every seed function has a C++ twin.
//   kvprime/... what kvprime's own API defines (boundary in the joint tokenization, the model's
//               rotary frequencies), computed by the script on HF from the same definitions.
//
// Tolerances. Both sides are float32 on CPU with identical token ids; what differs is the order
// of floating-point reductions (matmul blocking, MKL/oneDNN versions, the seed's two forwards for
// query and answer vs kvprime's one). tests/parity shows that leaves kvprime within 1e-5 of HF:
//   * K/V: max |ours - ref| / max |ref| < 1e-5 (tests/parity's measure);
//   * NLL: |ours - ref| <= 1e-5 * max(1, |ref|): relative for NLLs above 1, absolute below (a
//     near-certain answer's tiny NLL inherits the absolute error of its logits, not a relative one);
//   * RoPE cos/sin: 1e-6 absolute (values in [-1, 1]; the same float32/float64 formulas);
//   * token ids and positions: exact.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kvprime/cache/seed_rope.h"
#include "kvprime/cache/surgery.h"
#include "kvprime/core/hash.h"
#include "kvprime/io/safetensors.h"
#include "kvprime/model/config.h"
#include "kvprime/model/model.h"
#include "kvprime/prime/build.h"
#include "kvprime/prime/experiment_config.h"
#include "kvprime/prime/score.h"
#include "kvprime/tokenizer/tokenizer.h"
#include "test_support.h"

using namespace kvprime;
using kvprime::test::max_abs_diff;
using kvprime::test::max_rel_diff;
namespace fs = std::filesystem;

namespace {

// tools/make_seed_golden.py FIXTURE_VERSION this test was written for.
constexpr char kFixtureVersion[] = "1";
constexpr double kKvTol = 1e-5;
constexpr double kNllTol = 1e-5;
constexpr double kRopeTol = 1e-6;

constexpr char kHowToGenerate[] =
    "tests/fixtures/seed_golden/demo.safetensors is missing. It is made on a machine with torch, "
    "transformers 5.x, tokenizers and safetensors (the GPU machine; it runs on CPU), from the "
    "repository root:\n    python3 tools/make_seed_golden.py --out tests/fixtures/seed_golden\n"
    "then commit tests/fixtures/seed_golden/demo.safetensors and MANIFEST.json (tools/README.md).";

// The seed's inputs, verbatim (shared/seed/000_5421c10914bb9ccd.txt). The fixture's metadata
// carries the strings the script used; FixtureMatchesTheCommittedDemoModel checks they agree.
const std::string kPassage =
    "The Amazon rainforest produces approximately 20 percent of the world's oxygen. "
    "It covers over 5.5 million square kilometers and is home to roughly 10 percent "
    "of all species on Earth.";
const std::string kQuery = "how much oxygen does the amazon produce";
const std::string kAnswer = "approximately 20 percent";
const std::string kWrongAnswer = "purple elephants flying sideways";
const std::string kSurrogate = "how much oxygen";
const std::vector<std::string> kVariablePrefixes = {
    "Random prefix text here", "Hello world",
    "Completely different text about quantum physics and black holes"};
const std::string kMatchedPrefix = "Some irrelevant prefix text here. ";
const std::string kSuffix = "What is the oxygen percentage?";
const std::string kSeedSuffixSeparator = "\n\nRelated question: ";
const std::vector<std::pair<std::string, std::string>> kBpeCases = {
    {"Some prefix text ", "Document:\nThe quick brown fox"},
    {"an ", "Document:\nelectric"},
    {"Some prefix text ", "the quick brown fox"}};  // not the seed's: "Ġ" + "the" merge jointly
// The boundary trap on the demo tokenizer (tools/make_seed_golden.py TRAP_*): with these templates
// the surrogate prefix alone ends in a lone "Ġ" that the joint tokenization merges into "ĠThe".
const std::string kTrapSurrogateTemplate = "{surrogate} ";
const std::string kTrapDocumentTemplate = "{document}";
constexpr int64_t kRoundtripOffset = 10;

std::string demo(const std::string& f = "") {
  return kvprime::test::source_dir() + "/models/demo" + (f.empty() ? "" : "/" + f);
}

std::vector<int64_t> to_vec(const TokenIds& ids) { return {ids.begin(), ids.end()}; }
std::vector<int64_t> to_vec(const at::Tensor& t) {
  at::Tensor c = t.to(at::kCPU, at::kLong).contiguous().reshape({-1});
  return {c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel()};
}
TokenIds cat_ids(TokenIds a, const TokenIds& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

class SeedGolden : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!fs::exists(kvprime::test::fixture("seed_golden/demo.safetensors"))) return;
    try {
      golden_ = new SafeTensorsFile(SafeTensorsFile::open(kvprime::test::fixture("seed_golden/demo.safetensors")));
      model_ = new Model(Model::load(demo()));
      tok_ = new Tokenizer(Tokenizer::from_file(demo("tokenizer.json"), demo("tokenizer_config.json")));
      cfg_ = new ExperimentConfig();
      primer_ = new Primer(*model_, *tok_, *cfg_);
      raw_ = new RawConfig(parse_raw_config(nlohmann::json::parse(kvprime::test::read_file(demo("config.json"))),
                                            demo("config.json")));
    } catch (const std::exception& e) {
      load_error_ = new std::string(e.what());
    }
  }
  static void TearDownTestSuite() {
    delete primer_;
    delete cfg_;
    delete tok_;
    delete model_;
    delete golden_;
    delete raw_;
    delete load_error_;
    primer_ = nullptr, cfg_ = nullptr, tok_ = nullptr, model_ = nullptr, golden_ = nullptr;
    raw_ = nullptr, load_error_ = nullptr;
  }
  void SetUp() override {
    // A missing fixture is a failure, not a skip: the golden check is part of the seed suite.
    ASSERT_TRUE(fs::exists(kvprime::test::fixture("seed_golden/demo.safetensors"))) << kHowToGenerate;
    ASSERT_EQ(load_error_, nullptr) << "loading the fixture or models/demo failed: " << *load_error_;
    ASSERT_EQ(meta("fixture_version"), kFixtureVersion)
        << "the fixture was made by another version of tools/make_seed_golden.py; regenerate it or "
           "update this test together with the script";
  }

  // ---- fixture access ---------------------------------------------------------------------------
  static std::string meta(const std::string& key) {
    auto it = golden_->metadata().find(key);
    return it == golden_->metadata().end() ? "<missing " + key + ">" : it->second;
  }
  static at::Tensor ref(const std::string& name) { return golden_->tensor(name); }
  static int64_t scalar(const std::string& name) { return ref(name).reshape({-1})[0].item<int64_t>(); }
  static double scalar_f(const std::string& name) { return ref(name).reshape({-1})[0].item<double>(); }
  static std::vector<int64_t> layers() { return to_vec(ref("model/layers_dumped")); }
  static std::string query_prompt() {
    return format_template(cfg_->query_template, {{"query", kQuery}}, "query_template");
  }
  static std::string document() {
    return format_template(cfg_->document_template, {{"document", kPassage}}, "document_template");
  }

  // ---- comparisons ------------------------------------------------------------------------------
  static void expect_tensor(const at::Tensor& ours, const std::string& name, double tol) {
    at::Tensor r = ref(name);
    ASSERT_EQ(ours.sizes().vec(), r.sizes().vec()) << name;
    EXPECT_LT(max_rel_diff(ours, r), tol) << name;
  }

  static void expect_nll(double ours, const std::string& name) {
    const double r = scalar_f(name);
    EXPECT_LE(std::abs(ours - r), kNllTol * std::max(1.0, std::abs(r)))
        << name << ": kvprime " << ours << ", HF " << r;
  }

  // Slots (token ids), positions and the dumped layers' K/V of a single-row cache.
  static void expect_cache(const KVCache& c, const std::string& name) {
    SCOPED_TRACE(name);
    ASSERT_EQ(c.batch(), 1);
    ASSERT_EQ(c.length(), ref(name + "/ids").numel()) << name << ": number of slots";
    EXPECT_EQ(to_vec(c.token_ids()[0]), to_vec(ref(name + "/ids"))) << name << ": token ids";
    EXPECT_EQ(to_vec(c.positions()[0]), to_vec(ref(name + "/positions"))) << name << ": positions";
    for (int64_t il : layers()) {
      expect_tensor(c.key(il), name + "/k/" + std::to_string(il), kKvTol);
      expect_tensor(c.value(il), name + "/v/" + std::to_string(il), kKvTol);
    }
  }

  // score_answer_with_cache(cache, length, query_prompt, ANSWER) and the per-token NLLs.
  static void expect_score(const KVCache& c, const std::string& name) {
    SCOPED_TRACE(name);
    expect_nll(score_answer_with_cache(*primer_, c, c.length(), query_prompt(), kAnswer), name + "/nll");
    ScoreOptions opt;
    opt.start_position = c.length();
    AnswerScore s = score_answer(*model_, c, primer_->tokenize(query_prompt()), primer_->tokenize(kAnswer), opt);
    at::Tensor r = ref(name + "/token_nll").to(at::kDouble);
    ASSERT_EQ(static_cast<int64_t>(s.token_nll.size()), r.numel()) << name;
    for (int64_t i = 0; i < r.numel(); ++i) {
      const double rv = r[i].item<double>();
      EXPECT_LE(std::abs(s.token_nll[i] - rv), kNllTol * std::max(1.0, std::abs(rv)))
          << name << " answer token " << i + 1 << ": kvprime " << s.token_nll[i] << ", HF " << rv;
    }
  }

  static void expect_cache_and_score(const KVCache& c, const std::string& name) {
    expect_cache(c, name);
    expect_score(c, name);
  }

  // ---- the seed's functions from kvprime's token-id layer ----------------------------------------
  static double seed_theta() { return get_rope_theta(*raw_); }
  static int64_t seed_head_dim() { return *raw_->hidden_size / *raw_->num_attention_heads; }

  struct SeedTruncated {
    KVCache cache;
    int64_t prefix_len = 0;  // the prefix tokenized alone, with BOS
    int64_t keep_len = 0;
  };
  // build_truncated_kv_cache(_corrected) / build_truncated_cache_variable_prefix as the seed does
  // it: cut at the prefix-alone count, correct with one rope_theta and hidden / heads.
  static SeedTruncated seed_truncated(const std::string& prefix, const std::string& doc, bool correct) {
    TokenIds full = primer_->tokenize_with_bos(prefix + doc);
    const int64_t prefix_len = static_cast<int64_t>(primer_->tokenize_with_bos(prefix).size());
    const int64_t doc_len = static_cast<int64_t>(full.size()) - prefix_len;
    KVCache c = extract_and_truncate_cache_with_bos(prefill(*model_, full), doc_len);
    if (correct) c = correct_rope_positions_single_theta(c, prefix_len - 1, seed_theta(), seed_head_dim(), true);
    return {c, prefix_len, 1 + doc_len};
  }

  // The seed's full-forward NLL: the last n_answer ids are the answer, tokens 1.. scored.
  static double full_forward_nll(const TokenIds& ids, int64_t n_answer) {
    const int64_t T = static_cast<int64_t>(ids.size());
    at::Tensor t = at::tensor(to_vec(ids), at::kLong).unsqueeze(0);
    KVCache scratch = model_->new_cache(1);
    at::Tensor logp = at::log_softmax(
        model_->forward(t, at::arange(T, at::kLong).unsqueeze(0), scratch)[0].to(at::kDouble), -1);
    const int64_t a0 = T - n_answer;
    double sum = 0;
    for (int64_t i = 1; i < n_answer; ++i) sum -= logp[a0 + i - 1][ids[a0 + i]].item<double>();
    return sum / static_cast<double>(n_answer - 1);
  }

  static SafeTensorsFile* golden_;
  static Model* model_;
  static Tokenizer* tok_;
  static ExperimentConfig* cfg_;
  static Primer* primer_;
  static RawConfig* raw_;
  static std::string* load_error_;
};
SafeTensorsFile* SeedGolden::golden_ = nullptr;
Model* SeedGolden::model_ = nullptr;
Tokenizer* SeedGolden::tok_ = nullptr;
ExperimentConfig* SeedGolden::cfg_ = nullptr;
Primer* SeedGolden::primer_ = nullptr;
RawConfig* SeedGolden::raw_ = nullptr;
std::string* SeedGolden::load_error_ = nullptr;

// The fixture belongs to the committed demo model, tokenizer, inputs and templates.
TEST_F(SeedGolden, FixtureMatchesTheCommittedDemoModel) {
  const char* regen = "; models/demo or the inputs changed since the fixture was made: regenerate it "
                      "with python3 tools/make_seed_golden.py --out tests/fixtures/seed_golden";
  EXPECT_EQ(meta("kvprime_model_fingerprint"), model_->identity().fingerprint) << "model fingerprint" << regen;
  EXPECT_EQ(meta("tokenizer_json_fnv1a64"), hex64(fnv1a64(kvprime::test::read_file(demo("tokenizer.json")))))
      << "tokenizer.json" << regen;
  Checkpoint ckpt = Checkpoint::open(demo());
  double abs_sum = 0;
  for (const auto& name : ckpt.names()) abs_sum += ckpt.tensor(name).to(at::kDouble).abs().sum().item<double>();
  const double ref_sum = scalar_f("model/weights_abs_sum");
  EXPECT_LT(std::abs(abs_sum - ref_sum), 1e-9 * ref_sum) << "sum of |weights| " << abs_sum << " vs " << ref_sum << regen;

  EXPECT_EQ(meta("passage"), kPassage) << regen;
  EXPECT_EQ(meta("query"), kQuery) << regen;
  EXPECT_EQ(meta("answer"), kAnswer) << regen;
  EXPECT_EQ(meta("wrong_answer"), kWrongAnswer) << regen;
  EXPECT_EQ(meta("surrogate"), kSurrogate) << regen;
  EXPECT_EQ(meta("matched_prefix"), kMatchedPrefix) << regen;
  EXPECT_EQ(meta("suffix"), kSuffix) << regen;
  EXPECT_EQ(meta("seed_suffix_separator"), kSeedSuffixSeparator) << regen;
  EXPECT_EQ(meta("roundtrip_offset"), std::to_string(kRoundtripOffset)) << regen;
  EXPECT_EQ(meta("trap_surrogate_template"), kTrapSurrogateTemplate) << regen;
  EXPECT_EQ(meta("trap_document_template"), kTrapDocumentTemplate) << regen;
  ASSERT_EQ(scalar("variable_prefix/count"), static_cast<int64_t>(kVariablePrefixes.size())) << regen;
  for (size_t i = 0; i < kVariablePrefixes.size(); ++i)
    EXPECT_EQ(meta("variable_prefix_" + std::to_string(i)), kVariablePrefixes[i]) << regen;
  ASSERT_EQ(scalar("bpe/count"), static_cast<int64_t>(kBpeCases.size())) << regen;
  for (size_t i = 0; i < kBpeCases.size(); ++i) {
    EXPECT_EQ(meta("bpe_" + std::to_string(i) + "_prefix"), kBpeCases[i].first) << regen;
    EXPECT_EQ(meta("bpe_" + std::to_string(i) + "_document"), kBpeCases[i].second) << regen;
  }
  // The script used kvprime's ExperimentConfig defaults (it also checks them against the header).
  EXPECT_EQ(meta("document_template"), cfg_->document_template);
  EXPECT_EQ(meta("query_template"), cfg_->query_template);
  EXPECT_EQ(meta("surrogate_template"), cfg_->surrogate_template);
  EXPECT_EQ(meta("prefix_separator"), cfg_->prefix_separator);
  EXPECT_EQ(meta("suffix_template"), cfg_->suffix_template);
  EXPECT_EQ(meta("answer_template"), cfg_->answer_template);
  EXPECT_EQ(meta("query_prompt"), query_prompt());
  EXPECT_EQ(meta("document"), document());
}

// Seed tests 1 and 2: _get_rope_theta, _build_rope_correction, and the model's own rotary.
TEST_F(SeedGolden, RopeThetaCorrectionAndRotaryFrequencies) {
  EXPECT_EQ(get_rope_theta(*raw_), scalar_f("rope/theta"));
  EXPECT_EQ(seed_head_dim(), scalar("rope/seed_head_dim"));
  for (int64_t off : to_vec(ref("rope/offsets"))) {
    auto cs = build_rope_correction(off, seed_head_dim(), seed_theta());
    const std::string n = "rope/correction/" + std::to_string(off);
    ASSERT_EQ(cs.first.sizes().vec(), ref(n + "/cos").sizes().vec()) << n;
    EXPECT_LE(max_abs_diff(cs.first, ref(n + "/cos")), kRopeTol) << n << "/cos";
    EXPECT_LE(max_abs_diff(cs.second, ref(n + "/sin")), kRopeTol) << n << "/sin";
  }
  // HF's inv_freq buffer and rotary_emb(x, positions): the same float32 formulas.
  expect_tensor(model_->rotary(0).frequencies().inv_freq, "model/inv_freq", 1e-6);
  at::Tensor pos = ref("rope/hf_positions").to(at::kLong).unsqueeze(0);
  auto cs = model_->rotary(0).cos_sin(pos, at::kFloat);  // [1, P, head_dim]
  ASSERT_EQ(cs.first[0].sizes().vec(), ref("rope/hf_cos").sizes().vec());
  EXPECT_LE(max_abs_diff(cs.first[0], ref("rope/hf_cos")), kRopeTol);
  EXPECT_LE(max_abs_diff(cs.second[0], ref("rope/hf_sin")), kRopeTol);
}

// Seed test 5: build_kv_cache + score_answer_with_cache, the wrong answer, the seed's re-tokenized
// full forward, and kvprime's comparison on identical ids.
TEST_F(SeedGolden, BareCacheAndScoreAnswerWithCache) {
  EXPECT_EQ(to_vec(primer_->tokenize(query_prompt())), to_vec(ref("score/query_ids")));
  EXPECT_EQ(to_vec(primer_->tokenize(kAnswer)), to_vec(ref("score/answer_ids")));
  EXPECT_EQ(to_vec(primer_->tokenize(kWrongAnswer)), to_vec(ref("score/wrong_answer_ids")));

  BuiltCache b = primer_->build_kv_cache(document());
  EXPECT_EQ(b.length, b.cache.length());
  expect_cache_and_score(b.cache, "bare");
  expect_nll(score_answer_with_cache(*primer_, b.cache, b.length, query_prompt(), kWrongAnswer), "bare/nll_wrong");
  EXPECT_LT(scalar_f("bare/nll"), scalar_f("bare/nll_wrong")) << "the correct answer should be likelier";
  // The seed's scoring grew the cache it was given; kvprime's leaves it as it was.
  EXPECT_EQ(b.cache.length(), b.length);

  // The seed's test 5 re-tokenized document + query_prompt + ANSWER as one string.
  TokenIds joined = primer_->tokenize_with_bos(document() + query_prompt() + kAnswer);
  EXPECT_EQ(to_vec(joined), to_vec(ref("seed/test5_full/ids")));
  const int64_t n_answer = static_cast<int64_t>(primer_->tokenize(kAnswer).size());
  expect_nll(full_forward_nll(joined, n_answer), "seed/test5_full/nll");
  // kvprime compares on identical ids: one forward over bare + query + answer ids equals the score.
  TokenIds same = cat_ids(cat_ids(primer_->tokenize_with_bos(document()), primer_->tokenize(query_prompt())),
                          primer_->tokenize(kAnswer));
  expect_nll(full_forward_nll(same, n_answer), "kvprime/identical_ids/nll");
  expect_nll(score_answer_with_cache(*primer_, b.cache, b.length, query_prompt(), kAnswer),
             "kvprime/identical_ids/nll");

  // PMI baseline: a BOS-only cache.
  const int32_t bos = primer_->tokenize_with_bos(document()).front();
  KVCache bos_cache = bos_only_cache(*model_, bos);
  expect_cache_and_score(bos_cache, "kvprime/bos_only");
  PmiScore p = score_pmi(*model_, b.cache, bos_cache, primer_->tokenize(query_prompt()), primer_->tokenize(kAnswer));
  expect_nll(p.pmi, "kvprime/pmi");
}

// Seed test 3: apply_rope_roundtrip_noise on the real bare cache (float32: rounding noise only).
TEST_F(SeedGolden, RopeRoundtripNoise) {
  KVCache bare = primer_->build_kv_cache(document()).cache;
  KVCache noisy = apply_rope_roundtrip_noise(bare, kRoundtripOffset, *model_);
  for (int64_t il : layers()) {
    const std::string l = std::to_string(il);
    expect_tensor(noisy.key(il), "kvprime/roundtrip/k/" + l, kKvTol);
    expect_tensor(noisy.key(il), "seed/roundtrip/k/" + l, kKvTol);
    EXPECT_TRUE(at::equal(noisy.key(il).slice(2, 0, 1), bare.key(il).slice(2, 0, 1))) << "BOS keys, layer " << il;
    EXPECT_TRUE(at::equal(noisy.value(il), bare.value(il))) << "values, layer " << il;
  }
  EXPECT_TRUE(at::equal(noisy.positions(), bare.positions()));
}

// Seed test 8: build_truncated_kv_cache and _corrected with the surrogate template.
TEST_F(SeedGolden, SurrogatePrimedCaches) {
  const std::string prefix = format_template(cfg_->surrogate_template, {{"surrogate", kSurrogate}});
  EXPECT_EQ(to_vec(tokenize_joint(*tok_, prefix, document()).ids), to_vec(ref("surrogate/joint_ids")));
  for (bool correct : {false, true}) {
    const std::string tag = correct ? "surrogate_corrected" : "surrogate_truncated";
    SCOPED_TRACE(tag);
    TruncatedCache t = correct ? primer_->build_truncated_kv_cache_corrected(kSurrogate, kPassage)
                               : primer_->build_truncated_kv_cache(kSurrogate, kPassage);
    expect_cache_and_score(t.cache, "kvprime/" + tag);
    EXPECT_EQ(t.keep_len, t.cache.length());
    EXPECT_EQ(t.prefix_token_len, scalar("kvprime/" + tag + "/boundary"));
    EXPECT_EQ(t.independent_prefix_token_len, scalar("seed/" + tag + "/prefix_len"));

    SeedTruncated s = seed_truncated(prefix, document(), correct);
    EXPECT_EQ(s.prefix_len, scalar("seed/" + tag + "/prefix_len"));
    EXPECT_EQ(s.keep_len, scalar("seed/" + tag + "/keep_len"));
    expect_cache_and_score(s.cache, "seed/" + tag);
  }
}

// The trap the seed fell into, on the demo tokenizer: counting the prefix on its own cuts the
// document's first token ("ĠThe") off; kvprime's joint boundary keeps it. Both caches match HF.
TEST_F(SeedGolden, PrefixBoundaryTrap) {
  ExperimentConfig trap_cfg = *cfg_;
  trap_cfg.surrogate_template = kTrapSurrogateTemplate;
  trap_cfg.document_template = kTrapDocumentTemplate;
  Primer trap(*model_, *tok_, trap_cfg);
  TruncatedCache t = trap.build_truncated_kv_cache_corrected(kSurrogate, kPassage);
  expect_cache_and_score(t.cache, "kvprime/trap_corrected");
  EXPECT_EQ(t.prefix_token_len, scalar("kvprime/trap_corrected/boundary"));
  EXPECT_EQ(t.independent_prefix_token_len, scalar("seed/trap_corrected/prefix_len"));
  EXPECT_EQ(t.independent_prefix_token_len, t.prefix_token_len + 1) << "the trap should show here";

  const std::string prefix = format_template(kTrapSurrogateTemplate, {{"surrogate", kSurrogate}});
  SeedTruncated s = seed_truncated(prefix, format_template(kTrapDocumentTemplate, {{"document", kPassage}}), true);
  EXPECT_EQ(s.prefix_len, scalar("seed/trap_corrected/prefix_len"));
  EXPECT_EQ(s.keep_len, scalar("seed/trap_corrected/keep_len"));
  expect_cache_and_score(s.cache, "seed/trap_corrected");
  // The seed's cache lacks kvprime's first document slot.
  EXPECT_EQ(s.keep_len + 1, t.keep_len);
  std::printf("[ golden   ] trap: seed cut %lld (keeps %lld slots, nll %.5f), kvprime boundary %lld "
              "(keeps %lld, nll %.5f)\n", static_cast<long long>(s.prefix_len),
              static_cast<long long>(s.keep_len), scalar_f("seed/trap_corrected/nll"),
              static_cast<long long>(t.prefix_token_len), static_cast<long long>(t.keep_len),
              scalar_f("kvprime/trap_corrected/nll"));
}

// Seed test 9: build_truncated_cache_variable_prefix -> (keep_len, cache, prefix_token_len).
TEST_F(SeedGolden, VariablePrefixCaches) {
  for (size_t i = 0; i < kVariablePrefixes.size(); ++i) {
    const std::string n = "variable_prefix/" + std::to_string(i);
    SCOPED_TRACE(n);
    TruncatedCache t = primer_->build_truncated_cache_variable_prefix(kVariablePrefixes[i], kPassage);
    expect_cache_and_score(t.cache, "kvprime/" + n);
    EXPECT_EQ(t.prefix_token_len, scalar("kvprime/" + n + "/prefix_token_len"));
    EXPECT_EQ(t.independent_prefix_token_len, scalar("seed/" + n + "/prefix_token_len"));

    SeedTruncated s = seed_truncated(kVariablePrefixes[i] + " ", document(), true);
    EXPECT_EQ(s.prefix_len, scalar("seed/" + n + "/prefix_token_len"));
    EXPECT_EQ(s.keep_len, scalar("seed/" + n + "/keep_len"));
    expect_cache_and_score(s.cache, "seed/" + n);
    std::printf("[ golden   ] %-48s seed cut %lld, kvprime boundary %lld\n",
                ("\"" + kVariablePrefixes[i] + " \"").c_str(), static_cast<long long>(s.prefix_len),
                static_cast<long long>(t.prefix_token_len));
  }
}

// Seed tests 6 and 7 (bare and primed caches over the same document ids), then mixing them.
TEST_F(SeedGolden, MatchedCachesAndMixing) {
  MatchedCaches m = primer_->build_matched_caches(kMatchedPrefix, kPassage);
  expect_cache_and_score(m.bare, "kvprime/matched/bare");
  expect_cache_and_score(m.primed, "kvprime/matched/primed");
  EXPECT_EQ(m.prefix_token_len, scalar("kvprime/matched/prefix_token_len"));
  EXPECT_EQ(m.keep_len, m.primed.length());

  // The seed's test 6: cut the joint ids at the prefix-alone count.
  const std::string prefix = kMatchedPrefix + " ";
  TokenIds full = primer_->tokenize_with_bos(prefix + document());
  const int64_t cut = static_cast<int64_t>(primer_->tokenize_with_bos(prefix).size());
  EXPECT_EQ(cut, scalar("seed/matched/prefix_token_len"));
  TokenIds doc(full.begin() + cut, full.end());
  KVCache seed_bare = prefill(*model_, cat_ids({full[0]}, doc));
  KVCache seed_primed = correct_rope_positions_single_theta(
      extract_and_truncate_cache_with_bos(prefill(*model_, full), static_cast<int64_t>(doc.size())), cut - 1,
      seed_theta(), seed_head_dim(), true);
  expect_cache_and_score(seed_bare, "seed/matched/bare");
  expect_cache_and_score(seed_primed, "seed/matched/primed");
  std::printf("[ golden   ] matched prefix \"%s\": seed cut %lld, kvprime boundary %lld\n", prefix.c_str(),
              static_cast<long long>(cut), static_cast<long long>(m.prefix_token_len));

  // Keys of the bare cache with values of the primed one; values of some layers replaced.
  KVCache hybrid = build_hybrid_cache(m.bare, m.primed);
  expect_nll(score_answer_with_cache(*primer_, hybrid, hybrid.length(), query_prompt(), kAnswer),
             "kvprime/matched/hybrid_nll");
  KVCache replaced = replace_values_at_layers(m.bare, m.primed, to_vec(ref("kvprime/matched/replace_layers")));
  expect_nll(score_answer_with_cache(*primer_, replaced, replaced.length(), query_prompt(), kAnswer),
             "kvprime/matched/replace_values_nll");
}

// Seed test 11: a suffix after the passage leaves the passage's slots as in the bare cache.
TEST_F(SeedGolden, SuffixCaches) {
  BuiltCache bare = primer_->build_kv_cache(kPassage);
  expect_cache_and_score(bare.cache, "seed/bare_passage");
  // The seed: build_kv_cache(passage + "\n\nRelated question: " + suffix), one string.
  BuiltCache seed_suffix = primer_->build_kv_cache(kPassage + kSeedSuffixSeparator + kSuffix);
  expect_cache_and_score(seed_suffix.cache, "seed/suffix");
  // kvprime: the passage's ids as in the bare cache, then suffix_template ids.
  BuiltCache ours = primer_->build_suffix_kv_cache(kPassage, kSuffix);
  expect_cache_and_score(ours.cache, "kvprime/suffix");
  ExperimentConfig seed_cfg = *cfg_;
  seed_cfg.suffix_template = kSeedSuffixSeparator + "{suffix}";
  Primer seed_primer(*model_, *tok_, seed_cfg);
  BuiltCache split = seed_primer.build_suffix_kv_cache(kPassage, kSuffix);
  EXPECT_EQ(to_vec(split.cache.token_ids()[0]), to_vec(ref("kvprime/suffix_seed_template/ids")));
  // Causality: the passage's slots of the suffix cache are the bare cache's.
  for (const KVCache* c : {&ours.cache, &split.cache}) {
    KVCache head = c->slice(0, bare.length);
    for (int64_t il = 0; il < model_->config().n_layer; ++il) {
      EXPECT_LT(max_rel_diff(head.key(il), bare.cache.key(il)), kKvTol) << "layer " << il;
      EXPECT_LT(max_rel_diff(head.value(il), bare.cache.value(il)), kKvTol) << "layer " << il;
    }
  }
}

// Seed test 10: where the prefix/document boundary falls on the demo tokenizer.
TEST_F(SeedGolden, BpeBoundaries) {
  for (size_t i = 0; i < kBpeCases.size(); ++i) {
    const std::string n = "bpe/" + std::to_string(i);
    SCOPED_TRACE(n);
    JointTokens j = tokenize_joint(*tok_, kBpeCases[i].first, kBpeCases[i].second);
    EXPECT_EQ(to_vec(j.ids), to_vec(ref(n + "/joint_ids")));
    EXPECT_EQ(j.boundary, scalar(n + "/boundary"));
    EXPECT_EQ(to_vec(primer_->tokenize_with_bos(kBpeCases[i].first)), to_vec(ref(n + "/prefix_alone_ids")));
    EXPECT_EQ(to_vec(primer_->tokenize_with_bos(kBpeCases[i].second)), to_vec(ref(n + "/doc_alone_ids")));
  }
}

}  // namespace
