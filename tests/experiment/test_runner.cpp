// The experiment runner on the demo model: rows equal what the library computes one call at a
// time, an interrupted run resumes without duplicates or loss and gives the same numbers as an
// uninterrupted one, a changed configuration is refused, and explain shows each layout.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <map>
#include <set>

#include "kvprime/core/error.h"
#include "kvprime/experiment/dataset.h"
#include "kvprime/experiment/prefix.h"
#include "kvprime/model/generate.h"
#include "kvprime/experiment/runner.h"
#include "kvprime/experiment/spec.h"
#include "kvprime/experiment/store.h"
#include "kvprime/io/safetensors.h"
#include "kvprime/prime/score.h"
#include "test_support.h"

using namespace kvprime;
using kvprime::test::TempDir;

namespace {

// float32 forwards of different batch shapes differ in reduction order only.
constexpr double kTol = 1e-5;

std::string toml(const std::string& out, bool ranking, const std::string& extra = "") {
  return kvprime::test::demo_experiment_toml(
      "t", out, 6,
         "[[condition]]\nname = \"oracle\"\nprefix = \"oracle\"\n"
         "[[condition]]\nname = \"values_only\"\nprefix = \"surrogate\"\nkeys = \"bare\"\n"
         "[[condition]]\nname = \"block\"\nprefix = \"oracle\"\nmask = \"block\"\nrepetitions = 2\n"
         "[[condition]]\nname = \"hidden\"\nprefix = \"oracle\"\ncontext = \"full\"\nhide_prefix = true\n"
         "[[condition]]\nname = \"pmi\"\nprefix = \"first_sentence\"\ntarget = \"pmi\"\n",
      std::string("batch = 4\nranking = ") + (ranking ? "true" : "false") + "\n" + extra);
}

class Runner : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    model_ = new Model(Model::load(kvprime::test::source_dir() + "/models/demo"));
    tok_ = new Tokenizer(Tokenizer::from_file(kvprime::test::source_dir() + "/models/demo/tokenizer.json"));
  }
  static void TearDownTestSuite() {
    delete model_;
    delete tok_;
  }
  RunSummary run(const ExperimentSpec& spec, RunOptions o = {}) {
    o.progress = false;
    DatasetOptions d;
    d.limit = spec.samples;
    ExperimentRunner r(spec, *model_, *tok_, read_dataset(spec.dataset, d));
    return r.run(o);
  }
  static std::map<kvprime::test::RowKey, ResultRow> rows_of(const std::string& store) {
    return kvprime::test::rows_by_key(store);
  }
  static Model* model_;
  static Tokenizer* tok_;
};
Model* Runner::model_ = nullptr;
Tokenizer* Runner::tok_ = nullptr;

TEST_F(Runner, RowsEqualTheLibraryOneCallAtATime) {
  TempDir tmp;
  ExperimentSpec spec = parse_experiment(toml(tmp.path(), false), "t.toml", tmp.path());
  RunSummary s = run(spec);
  EXPECT_FALSE(s.interrupted);
  auto rows = rows_of(spec.store_path());
  DatasetOptions d;
  d.limit = 6;
  auto samples = read_dataset(spec.dataset, d);
  Primer primer(*model_, *tok_, spec.templates);
  int checked = 0;
  for (const auto& smp : samples) {
    if (primer.tokenize(" " + smp.answer).size() < 2) continue;
    const std::string doc = "Document:\n" + smp.passage;
    const std::string qp = "\n\nQuery: " + smp.query + "\nAnswer:";
    BuiltCache bare = primer.build_kv_cache(doc);
    // score_answer_with_cache applies answer_template (" {answer}") itself.
    const double bare_nll = score_answer_with_cache(primer, bare.cache, bare.length, qp, smp.answer);
    EXPECT_NEAR(rows.at({smp.id, "bare", -1}).nll, bare_nll, kTol * std::max(1.0, bare_nll)) << smp.id;
    // oracle: prefix "query" + separator " " + document, truncated and corrected.
    TruncatedCache t = primer.build_truncated_cache_variable_prefix(smp.query, smp.passage);
    const double oracle_nll = score_answer_with_cache(primer, t.cache, t.keep_len, qp, smp.answer);
    const ResultRow& o = rows.at({smp.id, "oracle", -1});
    EXPECT_NEAR(o.nll, oracle_nll, kTol * std::max(1.0, oracle_nll)) << smp.id;
    EXPECT_EQ(o.prefix_text, smp.query);
    EXPECT_EQ(o.cache_len, t.keep_len);
    // Full context with the prefix hidden: the cache keeps the prefix slots.
    const ResultRow& h = rows.at({smp.id, "hidden", -1});
    EXPECT_GT(h.cache_len, t.keep_len);
    // PMI = NLL - NLL after a BOS-only cache.
    const ResultRow& p = rows.at({smp.id, "pmi", -1});
    ASSERT_TRUE(p.pmi && p.baseline_nll);
    EXPECT_NEAR(*p.pmi, p.nll - *p.baseline_nll, 1e-12);
    KVCache bos = bos_only_cache(*model_, bare.cache.token_ids()[0][0].item<int32_t>());
    const double bos_nll = score_answer(*model_, bos, primer.tokenize(qp), primer.tokenize(" " + smp.answer)).nll;
    EXPECT_NEAR(*p.baseline_nll, bos_nll, kTol * std::max(1.0, bos_nll));
    // Divergence to bare is measured on the first samples (report plots).
    EXPECT_TRUE(o.extra.contains("key_divergence")) << o.extra.dump();
    EXPECT_EQ(o.extra["key_divergence"].size(), static_cast<size_t>(model_->config().n_layer));
    ++checked;
  }
  EXPECT_GE(checked, 4);
  EXPECT_EQ(static_cast<int64_t>(rows.size()), s.samples * s.conditions);
}

TEST_F(Runner, InterruptedRunResumesWithoutLossOrDuplicates) {
  TempDir a, b;
  ExperimentSpec once = parse_experiment(toml(a.path(), true), "t.toml", a.path());
  ExperimentSpec twice = parse_experiment(toml(b.path(), true), "t.toml", b.path());
  RunSummary full = run(once);
  RunOptions stop;
  stop.stop_after_rows = 7;  // stops inside the second chunk/condition
  RunSummary first = run(twice, stop);
  EXPECT_TRUE(first.interrupted);
  EXPECT_EQ(first.rows_computed, 7);
  EXPECT_EQ(ResultStore::open_readonly(twice.store_path()).info().status, "running");
  RunSummary second = run(twice);
  EXPECT_FALSE(second.interrupted);
  EXPECT_EQ(second.rows_done_before, 7);
  EXPECT_EQ(second.rows_done_before + second.rows_computed, full.rows_computed);
  RunSummary third = run(twice);
  EXPECT_EQ(third.rows_computed, 0);

  auto ra = rows_of(once.store_path()), rb = rows_of(twice.store_path());
  ASSERT_EQ(ra.size(), rb.size());
  int64_t candidates = 0;
  for (const auto& [key, r] : ra) {
    const ResultRow& s = rb.at(key);
    EXPECT_NEAR(r.nll, s.nll, kTol * std::max(1.0, r.nll));
    candidates += std::get<2>(key) >= 0;
  }
  EXPECT_GT(candidates, 0);  // ranking rows exist (irrelevant passages)
}

// A copy of the demo model in `dir` whose embedding row `token` is +inf: every cache slot from that
// token on is NaN (RMSNorm of inf), so every score of a sample whose passage holds it breaks. The
// demo model ties lm_head to the embedding; the copy unties them (lm_head keeps the clean matrix),
// else the token's logit would be broken at every position of every sample.
static void write_poisoned_demo_model(const std::string& dir, int32_t token) {
  const std::string src = kvprime::test::source_dir() + "/models/demo";
  for (const char* f : {"tokenizer.json", "tokenizer_config.json"})
    kvprime::test::write_file(dir + "/" + f, kvprime::test::read_file(src + "/" + f));
  nlohmann::json config = nlohmann::json::parse(kvprime::test::read_file(src + "/config.json"));
  config["tie_word_embeddings"] = false;
  kvprime::test::write_file(dir + "/config.json", config.dump(1));
  const SafeTensorsFile w = SafeTensorsFile::open(src + "/model.safetensors");
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  for (const TensorInfo& info : w.tensors()) {
    at::Tensor t = w.tensor(info.name).clone();
    if (info.name == "model.embed_tokens.weight") {
      tensors.emplace_back("lm_head.weight", t.clone());
      t[token].fill_(std::numeric_limits<float>::infinity());
    }
    tensors.emplace_back(info.name, t);
  }
  save_safetensors(dir + "/model.safetensors", tensors, w.metadata());
}

TEST_F(Runner, NonFiniteScoresAreStoredAsFailuresReportedAndLeftOutOfStatistics) {
  TempDir clean_dir, bad_dir, model_dir;
  ExperimentSpec clean = parse_experiment(toml(clean_dir.path(), false), "t.toml", clean_dir.path());
  ExperimentSpec bad = parse_experiment(toml(bad_dir.path(), false), "t.toml", bad_dir.path());
  DatasetOptions d;
  d.limit = clean.samples;
  const std::vector<Sample> samples = read_dataset(clean.dataset, d);
  // A token of sample 3's passage that no other text of the run contains (sample 3's answer has
  // several tokens: one-token answers are skipped).
  const size_t victim = 3;
  ASSERT_GE(tok_->encode(" " + samples[victim].answer, false).size(), 2u);
  std::set<int32_t> elsewhere;
  for (size_t i = 0; i < samples.size(); ++i) {
    std::vector<std::string> texts{samples[i].query, samples[i].answer, " " + samples[i].answer};
    if (i != victim) texts.push_back(samples[i].passage);
    for (const auto& t : samples[i].surrogates) texts.push_back(t);
    for (const auto& t : texts)
      for (int32_t id : tok_->encode(t, false)) elsewhere.insert(id);
  }
  int32_t token = -1;
  for (int32_t id : tok_->encode(samples[victim].passage, false))
    if (!elsewhere.count(id)) token = id;
  ASSERT_GE(token, 0) << "sample 3's passage shares every token with the others";
  write_poisoned_demo_model(model_dir.path(), token);
  const Model poisoned = Model::load(model_dir.path());

  run(clean);
  RunOptions quiet;
  quiet.progress = false;
  RunSummary s = ExperimentRunner(bad, poisoned, *tok_, samples).run(quiet);
  const int64_t n_cond = static_cast<int64_t>(bad.conditions.size());
  EXPECT_EQ(s.failures, n_cond) << "every condition of the poisoned sample, nothing else";

  ResultStore store = ResultStore::open_readonly(bad.store_path());
  const std::vector<FailureRow> failures = store.failures();
  ASSERT_EQ(static_cast<int64_t>(failures.size()), n_cond);
  std::map<std::string, std::string> what;
  for (const auto& f : failures) {
    EXPECT_EQ(f.sample_id, samples[victim].id) << f.condition << " " << f.what << " " << f.detail;
    EXPECT_FALSE(f.detail.empty());
    what[f.condition] = f.what;
  }
  EXPECT_EQ(what.at("bare"), "logits") << "scored in its build forward: no cache to look at";
  EXPECT_EQ(what.at("oracle"), "cache") << "a batched primed cache";
  EXPECT_EQ(what.at("hidden"), "cache") << "a full-context cache";
  EXPECT_EQ(what.at("values_only"), "cache") << "mixed with the (also broken) bare cache";
  EXPECT_EQ(what.at("pmi"), "cache");

  // Every other row is a result, equal to the clean run's: a broken row does not leak into the
  // other rows of its batch.
  auto good = rows_of(clean.store_path()), got = rows_of(bad.store_path());
  EXPECT_EQ(got.size() + failures.size(), good.size());
  for (const auto& [key, r] : got) {
    EXPECT_NE(std::get<0>(key), samples[victim].id);
    EXPECT_TRUE(std::isfinite(r.nll));
    EXPECT_NEAR(r.nll, good.at(key).nll, kTol * std::max(1.0, r.nll)) << std::get<0>(key) << " " << std::get<1>(key);
  }

  // A resume does not recompute them; the report lists them and counts one sample fewer.
  EXPECT_EQ(ExperimentRunner(bad, poisoned, *tok_, samples).run(quiet).rows_computed, 0);
  nlohmann::json summary = write_experiment_report(bad);
  ASSERT_EQ(summary["failures"].size(), failures.size());
  EXPECT_EQ(summary["failures"][0]["sample_id"], samples[victim].id);
  std::set<std::string> scored;
  for (const auto& [key, r] : good) scored.insert(std::get<0>(key));
  for (const auto& c : summary["conditions"])
    EXPECT_EQ(c["n_own"].get<int64_t>(), static_cast<int64_t>(scored.size()) - 1) << c["name"];
  const std::string md = kvprime::test::read_file(bad.out + "/report.md");
  EXPECT_NE(md.find("## Failed scores"), std::string::npos);
  EXPECT_NE(md.find(samples[victim].id), std::string::npos);
  EXPECT_NE(kvprime::test::read_file(bad.out + "/report.html").find("id=\"failures\""), std::string::npos);
}

TEST_F(Runner, ChangedConfigurationIsRefusedUnlessNewRun) {
  TempDir tmp;
  ExperimentSpec a = parse_experiment(toml(tmp.path(), false), "t.toml", tmp.path());
  RunOptions stop;
  stop.stop_after_rows = 3;
  run(a, stop);
  ExperimentSpec b = parse_experiment(toml(tmp.path(), false, "seed = 7\n"), "t.toml", tmp.path());
  try {
    run(b);
    FAIL() << "a changed seed must be refused";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("seed"), std::string::npos) << e.what();
  }
  RunOptions fresh;
  fresh.new_run = true;
  RunSummary s = run(b, fresh);
  EXPECT_EQ(s.rows_done_before, 0);
  EXPECT_EQ(ResultStore::list_runs(a.store_path()).size(), 2u);  // the old run is archived, kept
}

TEST_F(Runner, GeneratedPrefixIsTheModelsGreedyTextAndDeterministic) {
  PrefixMaker maker({"Water boils at 83 degrees on a high peak.", "Bread rises because of yeast."}, 1);
  PrefixSpec p;
  p.kind = PrefixKind::Generated;
  p.max_new_tokens = 12;
  PrefixSample s{"s", "Water boils at 83 degrees on a high peak.", "q", {}};
  const std::string a = maker.make(p, s, 0, model_, tok_);
  EXPECT_EQ(a, maker.make(p, s, 0, model_, tok_));  // greedy: the same text every time
  EXPECT_FALSE(a.empty());
  EXPECT_EQ(a.find('\n'), std::string::npos);  // one line
  // It is what greedy decoding from the template gives (decoded, cut at the first newline).
  std::vector<int32_t> ids = tok_->encode("Document:\n" + s.passage + "\n\nA question this document answers:", true);
  KVCache cache = model_->new_cache(1);
  auto r = generate_greedy(*model_, std::vector<int64_t>(ids.begin(), ids.end()), cache, {12, {}, true});
  std::string text = tok_->decode(std::vector<int32_t>(r.tokens.begin(), r.tokens.end()), true);
  text = text.substr(0, text.find('\n'));
  EXPECT_EQ(a, [&] { std::string j; for (const auto& w : split_words(text)) j += (j.empty() ? "" : " ") + w; return j; }());
}

TEST_F(Runner, ExplainShowsEachLayout) {
  TempDir tmp;
  ExperimentSpec spec = parse_experiment(toml(tmp.path(), false), "t.toml", tmp.path());
  DatasetOptions d;
  d.limit = 6;
  ExperimentRunner r(spec, *model_, *tok_, read_dataset(spec.dataset, d));
  const std::string e = r.explain(0);
  for (const char* want : {"bare: build [BOS][", "oracle: build [BOS][", "block mask", "xP2]",
                           "hidden: build", "x·]", "PMI", "keys from bare"})
    EXPECT_NE(e.find(want), std::string::npos) << "explain lacks '" << want << "':\n" << e;
  ConditionLayout L = r.layout(spec.conditions[1], 0);
  EXPECT_EQ(L.cache_len, 1 + static_cast<int64_t>(L.doc_ids.size()));
  EXPECT_THROW(r.explain(99), Error);
}

}  // namespace
