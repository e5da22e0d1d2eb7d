// The seed's tokenization-dependent tests (shared/seed/000_5421c10914bb9ccd.txt, test 10 and the seam
// half of test 5) with the four real tokenizers fetched by scripts/fetch_tokenizers.sh
// (third_party/npm/{llama2,llama3,qwen3,gemma3}; a test is skipped, naming the script, when its
// tokenizer is absent, like tests/tokenizer).
//
// The model only has to accept the tokenizer's ids: a tiny random-weight Llama (tests/support/
// random_model.h) whose embedding table covers the tokenizer's vocabulary is written to a temporary
// directory once per tokenizer. Nothing semantic is asserted; the properties are about token ids
// and about which computations must agree in float32 (kF32Tol, seed_common.h).
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <memory>

#include "kvprime/cache/surgery.h"
#include "kvprime/core/error.h"
#include "kvprime/prime/experiment_config.h"
#include "kvprime/prime/score.h"
#include "random_model.h"
#include "seed_common.h"

using namespace kvprime;
using namespace kvprime::seedtest;
using kvprime::test::max_rel_diff;

namespace {

std::string npm(const std::string& name, const std::string& file) {
  return kvprime::test::npm_dir() + "/" + name + "/" + file;
}

// One tokenizer, a random model covering its ids, and a Primer with the seed's configuration.
struct TokenizerRig {
  std::unique_ptr<Tokenizer> tok;
  std::unique_ptr<kvprime::test::TempDir> dir;
  std::unique_ptr<Model> model;
  ExperimentConfig config;
  std::unique_ptr<Primer> primer;
};

const TokenizerRig& setup_for(const std::string& name) {
  static std::map<std::string, std::unique_ptr<TokenizerRig>> cache;
  auto& s = cache[name];
  if (s) return *s;
  s = std::make_unique<TokenizerRig>();
  s->tok = std::make_unique<Tokenizer>(Tokenizer::from_file(npm(name, "tokenizer.json"), npm(name, "tokenizer_config.json")));
  nlohmann::json c = kvprime::test::tiny_config("llama");
  c["vocab_size"] = static_cast<int64_t>(s->tok->vocab_size());
  c["tie_word_embeddings"] = true;  // one [vocab, 32] table (gemma3: 262k rows, 33 MB)
  // Qwen3's tokenizer adds no BOS: the model's bos_token_id is what the Primer puts at slot 0.
  c["bos_token_id"] = s->tok->bos_id() ? *s->tok->bos_id() : *s->tok->token_to_id("<|endoftext|>");
  s->dir = std::make_unique<kvprime::test::TempDir>();
  kvprime::test::write_random_model(s->dir->path(), c, 7);
  s->model = std::make_unique<Model>(Model::load(s->dir->path()));
  s->primer = std::make_unique<Primer>(*s->model, *s->tok, s->config);
  return *s;
}

class SeedTokenizers : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(npm(GetParam(), "tokenizer.json")))
      GTEST_SKIP() << npm(GetParam(), "tokenizer.json") << " is absent: run scripts/fetch_tokenizers.sh";
  }
};

// Seed TEST 10 "BPE boundary effect detection", with real tokenizers. The seed printed whether the
// document tokenized alone equals the joint tokenization after len(prefix tokenized alone); here
// that mismatch is asserted for the seed's first case on all four tokenizers, for a reason each
// tokenizer family has:
//  * byte-level (llama3, qwen3) and SentencePiece-without-prefix-space (gemma3): the prefix's
//    trailing space is a lone token alone ("Ġ" / "▁") but joins "Document" in the joint text, so the
//    seed's count is one too many AND the document's first token differs ("ĠDocument" vs
//    "Document");
//  * llama2 (SentencePiece, prepends "▁"): the document's ids agree ("▁Document" both ways), but the
//    prefix's lone "▁" is still counted, so the seed's slice drops "▁Document".
// Then build_matched_caches on the same texts: bare and primed caches hold the same document ids,
// those of the joint tokenization after its offset-found boundary, and their layer-0 keys agree
// to kF32Tol (float32, reduction order only), so mixing them is allowed, while mixing the primed
// cache with the seed's bare cache (document tokenized alone) is refused where the ids differ.
TEST_P(SeedTokenizers, Seed10BoundaryEffectAndMatchedCachesShareDocumentIds) {
  const TokenizerRig& s = setup_for(GetParam());
  const Primer& p = *s.primer;
  const std::string prefix = "Some prefix text ", doc = "Document:\nThe quick brown fox";

  const TokenIds prefix_alone = p.tokenize_with_bos(prefix);
  const TokenIds doc_alone = slice_ids(p.tokenize_with_bos(doc), 1);
  const TokenIds joint = p.tokenize_with_bos(prefix + doc);
  const TokenIds seed_slice = slice_ids(joint, prefix_alone.size());
  EXPECT_NE(doc_alone, seed_slice) << "the seed's detector must fire";

  MatchedCaches m = p.build_matched_caches("Some prefix text", "The quick brown fox");
  // The matched caches are built from exactly the joint ids after the offset-found boundary.
  JointTokens j = p.tokenize_joint(prefix, doc);
  EXPECT_EQ(j.ids, joint);
  EXPECT_EQ(m.prefix_token_len, j.boundary);
  EXPECT_EQ(m.doc_ids, j.doc_ids());
  EXPECT_EQ(m.prefix_token_len + static_cast<int64_t>(m.doc_ids.size()), static_cast<int64_t>(joint.size()));
  EXPECT_EQ(m.prefix_token_len, static_cast<int64_t>(prefix_alone.size()) - 1)
      << "the prefix's trailing space token is merged into the document's first token";
  const std::string first = s.tok->id_to_token(m.doc_ids[0]).value_or("");
  note("TEST 10 ", GetParam(), ": prefix alone ", prefix_alone.size(), " tokens, joint boundary ",
       m.prefix_token_len, ", first document token '", first, "', document ids ",
       m.doc_ids == doc_alone ? "equal" : "differ from", " the document tokenized alone");
  EXPECT_TRUE(first == "ĠDocument" || first == "▁Document") << first;
  if (GetParam() == "llama2") {
    EXPECT_EQ(m.doc_ids, doc_alone) << "SentencePiece with a prepended ▁: same document ids";
  } else {
    EXPECT_NE(m.doc_ids, doc_alone) << "the joint text tokenizes the document differently";
  }
  EXPECT_EQ(cache_ids(m.bare, 1), m.doc_ids);
  EXPECT_EQ(cache_ids(m.primed, 1), m.doc_ids);
  EXPECT_EQ(cache_ids(m.bare), cache_ids(m.primed));
  EXPECT_EQ(m.keep_len, 1 + static_cast<int64_t>(m.doc_ids.size()));
  EXPECT_TRUE(at::equal(m.bare.positions(), m.primed.positions()));
  EXPECT_LT(max_rel_diff(m.primed.key(0), m.bare.key(0)), kF32Tol);
  EXPECT_NO_THROW(build_hybrid_cache(m.bare, m.primed));
  // The seed's bare cache (the document tokenized alone): where its ids differ, mixing it with the
  // primed cache is refused instead of silently pairing different tokens.
  if (GetParam() != "llama2") {
    BuiltCache naive = p.build_kv_cache(doc);
    EXPECT_THROW(build_hybrid_cache(naive.cache, m.primed), Error);
  }

  // The seed's second case ("an " + "Document:\nelectric") shows the same effect.
  const TokenIds an_alone = p.tokenize_with_bos("an ");
  const TokenIds an_joint = p.tokenize_with_bos("an Document:\nelectric");
  EXPECT_NE(slice_ids(p.tokenize_with_bos("Document:\nelectric"), 1), slice_ids(an_joint, an_alone.size()));
}

// The mission's trap in the seed's TEST 5: it compared score_answer_with_cache with a forward over
// the re-tokenized string context + query_prompt + answer. Where a seam tokenizes differently, the
// two NLLs are of different token sequences. Asserted on every tokenizer: the cached NLL equals a
// full forward over the identical ids to kF32Tol (float32 reduction order only) and the cache is
// left unchanged. And the seams: on llama2 (SentencePiece prepends "▁" to every text tokenized on
// its own: the query prompt becomes "▁", "\n", ... and the answer "▁approximately", which the
// joined string does not contain), llama3 and qwen3 (their pre-tokenizer regex glues newlines to
// the punctuation before them: "Earth." + "\n\nQuery" re-tokenizes as ".ĊĊ") the re-tokenized
// ids differ, and the seed's full-forward NLL then differs from the cached one by more than 0.1%
// for reasons that have nothing to do with caching; gemma3 (no pre-tokenizer split, and no
// vocabulary entry spanning these seams) gives the same ids.
TEST_P(SeedTokenizers, Seed05CompareOnIdenticalIdsNotOnARetokenizedString) {
  const TokenizerRig& s = setup_for(GetParam());
  const Primer& p = *s.primer;
  const std::string context = format_template(s.config.document_template, {{"document", kPassage}});
  const std::string qp = format_template(s.config.query_template, {{"query", kQuery}});
  BuiltCache built = p.build_kv_cache(context);
  KVCache before = built.cache.clone();
  const double nll = score_answer_with_cache(p, built.cache, built.length, qp, kAnswer);
  const TokenIds a_ids = p.tokenize(kAnswer);
  const TokenIds same_ids = cat_ids(cat_ids(p.tokenize_with_bos(context), p.tokenize(qp)), a_ids);
  const double full = full_forward_nll(*s.model, same_ids, static_cast<int64_t>(a_ids.size()));
  EXPECT_NEAR(nll, full, kF32Tol * std::abs(full)) << "cached=" << nll << " full=" << full;
  for (int64_t il = 0; il < built.cache.n_layer(); ++il) {
    EXPECT_TRUE(at::equal(built.cache.key(il), before.key(il))) << il;
    EXPECT_TRUE(at::equal(built.cache.value(il), before.value(il))) << il;
  }

  const TokenIds retokenized = p.tokenize_with_bos(context + qp + kAnswer);
  size_t first_diff = 0;
  while (first_diff < std::min(retokenized.size(), same_ids.size()) &&
         retokenized[first_diff] == same_ids[first_diff])
    ++first_diff;
  note("TEST 5 ", GetParam(), ": re-tokenized joined string ", retokenized == same_ids ? "equals" : "differs from",
       " the concatenated ids (", retokenized.size(), " vs ", same_ids.size(), " tokens; first difference at ",
       first_diff, ": '", first_diff < retokenized.size() ? s.tok->id_to_token(retokenized[first_diff]).value_or("") : "",
       "' vs '", first_diff < same_ids.size() ? s.tok->id_to_token(same_ids[first_diff]).value_or("") : "", "')");
  if (GetParam() == "gemma3") {
    EXPECT_EQ(retokenized, same_ids);
  } else {
    EXPECT_NE(retokenized, same_ids);
    // The seed's comparison: the re-tokenized ids, the answer as their last len(answer alone) tokens.
    const double seed_full = full_forward_nll(*s.model, retokenized, static_cast<int64_t>(a_ids.size()));
    note("TEST 5 ", GetParam(), ": cached NLL ", nll, ", the seed's re-tokenized full forward ", seed_full);
    EXPECT_GT(std::abs(seed_full - nll), 1e-3 * std::abs(nll))
        << "the seed's test 5 would have compared different token sequences";
  }
}

INSTANTIATE_TEST_SUITE_P(RealTokenizers, SeedTokenizers,
                         ::testing::Values("llama2", "llama3", "qwen3", "gemma3"),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

}  // namespace
