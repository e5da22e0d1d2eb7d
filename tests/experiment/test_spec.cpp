// Experiment files: what a researcher writes is read exactly, and every mistake is an error that
// names the file, line and column, the field, and what is accepted.
#include <gtest/gtest.h>

#include "kvprime/core/error.h"
#include "kvprime/experiment/prefix.h"
#include "kvprime/experiment/spec.h"
#include "test_support.h"

using namespace kvprime;

namespace {

const char* kHead = R"([experiment]
name = "t"
model = "m"
dataset = "d.jsonl"
)";

ExperimentSpec parse(const std::string& body) { return parse_experiment(std::string(kHead) + body, "exp.toml", "/base"); }

void expect_error(const std::string& body, const std::vector<std::string>& parts) {
  try {
    parse(body);
    FAIL() << "expected an error for:\n" << body;
  } catch (const Error& e) {
    for (const auto& p : parts)
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << "message lacks '" << p << "': " << e.what();
  }
}

TEST(ExperimentSpec, ReadsEveryFieldAndResolvesPaths) {
  ExperimentSpec s = parse(R"(
[templates]
answer = " {answer}"
[[condition]]
name = "oracle"
prefix = "oracle"
[[condition]]
name = "mix"
prefix = "surrogate"
surrogate_index = 1
keys = "bare"
layers = [0, 2]
[[condition]]
name = "full"
prefix = "static"
text = "What are the key facts?"
context = "full"
hide_prefix = true
mask = "block"
repetitions = 3
target = "pmi"
)");
  EXPECT_EQ(s.model, "/base/m");
  EXPECT_EQ(s.dataset, "/base/d.jsonl");
  EXPECT_EQ(s.out, "/base/out/t");
  EXPECT_EQ(s.templates.answer_template, " {answer}");
  ASSERT_EQ(s.conditions.size(), 4u);
  EXPECT_EQ(s.conditions[0].name, "bare");  // the baseline is added first
  EXPECT_TRUE(s.conditions[0].is_bare());
  EXPECT_EQ(s.conditions[1].prefix.kind, PrefixKind::Oracle);
  EXPECT_EQ(s.conditions[2].keys, CacheSource::Bare);
  EXPECT_EQ(s.conditions[2].layers, (std::vector<int64_t>{0, 2}));
  EXPECT_EQ(s.conditions[2].prefix.surrogate_index, 1);
  const ConditionSpec& f = s.conditions[3];
  EXPECT_EQ(f.context, ContextMode::Full);
  EXPECT_TRUE(f.hide_prefix);
  EXPECT_EQ(f.mask, BuildMask::Block);
  EXPECT_EQ(f.prefix.repetitions, 3);
  EXPECT_EQ(f.target, ScoreTarget::Pmi);
}

TEST(ExperimentSpec, DeclaredBareMovesFirstAndMustBeBare) {
  ExperimentSpec s = parse("[[condition]]\nname = \"o\"\nprefix = \"oracle\"\n[[condition]]\nname = \"bare\"\n");
  EXPECT_EQ(s.conditions[0].name, "bare");
  EXPECT_EQ(s.conditions.size(), 2u);
  expect_error("[[condition]]\nname = \"bare\"\nprefix = \"oracle\"\n", {"baseline"});
}

TEST(ExperimentSpec, ErrorsNameLineFieldAndAcceptedValues) {
  expect_error("[[condition]]\nname = \"x\"\nprefix = \"oracel\"\n", {"exp.toml:7", "prefix", "oracle", "random_words"});
  expect_error("[[condition]]\nname = \"x\"\nprefx = \"oracle\"\n", {"exp.toml:7", "unknown field", "prefx"});
  expect_error("[[condition]]\nname = \"x\"\nrepetitions = \"two\"\n", {"exp.toml:7", "repetitions", "integer"});
  expect_error("[[condition]]\nname = \"x\"\nrepetitions = 0\n", {"repetitions", ">= 1"});
  expect_error("[[condition]]\nprefix = \"oracle\"\n", {"no name"});
  expect_error("[[condition]]\nname = \"a\"\n[[condition]]\nname = \"a\"\n", {"unique"});
  expect_error("[experiment2]\nx = 1\n", {"unknown table", "experiment2"});
  expect_error("[[condition]]\nname = \"x\"\nprefix = \"static\"\n", {"text"});
  expect_error("[[condition]]\nname = \"x\"\nprefix = \"oracle\"\nvalue_alpha = 1.5\n", {"value_alpha", "[0, 1]"});
  expect_error("[templates]\nquery = \"no placeholder\"\n", {"templates.query", "{query}"});
  expect_error("this is not toml", {"exp.toml:5", "TOML syntax error"});
}

TEST(ExperimentSpec, MeaninglessCombinationsAreRefused) {
  expect_error("[[condition]]\nname = \"x\"\nmask = \"block\"\n", {"'x'", "needs a prefix"});
  expect_error("[[condition]]\nname = \"x\"\nprefix = \"oracle\"\nhide_prefix = true\n", {"hide_prefix", "full"});
  expect_error("[[condition]]\nname = \"x\"\nprefix = \"oracle\"\ncontext = \"full\"\nkeys = \"bare\"\n", {"truncated"});
  expect_error("[[condition]]\nname = \"x\"\nprefix = \"oracle\"\ncorrect_rope = false\nkeys = \"bare\"\n", {"correct_rope"});
  expect_error("[[condition]]\nname = \"x\"\nprefix = \"oracle\"\nlayers = [1]\n", {"layers"});
}

TEST(ExperimentSpec, MissingRequiredFields) {
  try {
    parse_experiment("[experiment]\nname = \"t\"\ndataset = \"d\"\n", "e.toml", ".");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("experiment.model"), std::string::npos) << e.what();
  }
  EXPECT_THROW(parse_experiment("[templates]\n", "e.toml", "."), Error);
}

TEST(ExperimentSpec, ResultsIdentityChangesWithWhatChangesResults) {
  ExperimentSpec a = parse("[[condition]]\nname = \"o\"\nprefix = \"oracle\"\n");
  ExperimentSpec b = parse("[[condition]]\nname = \"o\"\nprefix = \"oracle\"\ncorrect_rope = false\n");
  ExperimentSpec c = parse("[[condition]]\nname = \"o\"\nprefix = \"oracle\"\n");
  c.batch = 3;  // batching does not change results
  c.out = "/elsewhere";
  EXPECT_NE(a.results_identity(), b.results_identity());
  EXPECT_EQ(a.results_identity(), c.results_identity());
}

TEST(ExperimentSpec, TheShippedDemoParses) {
  ExperimentSpec s = load_experiment(kvprime::test::source_dir() + "/examples/demo.toml");
  EXPECT_GE(s.conditions.size(), 8u);
  EXPECT_EQ(s.conditions[0].name, "bare");
}

TEST(Prefix, SourcesAreDeterministicAndWhatTheyClaim) {
  std::vector<std::string> corpus{"The red fox jumps over the lazy dog. Then it sleeps.",
                                  "Quantum chromodynamics describes quarks and gluons.",
                                  "Bread rises because yeast makes carbon dioxide gas."};
  PrefixMaker m(corpus, 7);
  PrefixSample s{"s0", corpus[0], "what does the red fox jump over", {"fox facts", "dog facts"}};
  PrefixSpec p;
  p.kind = PrefixKind::Oracle;
  EXPECT_EQ(m.make(p, s, 0), s.query);
  p.kind = PrefixKind::Reversed;
  EXPECT_EQ(m.make(p, s, 0), "over jump fox red the does what");
  p.kind = PrefixKind::Shuffled;
  std::string sh = m.make(p, s, 0);
  EXPECT_EQ(sh, m.make(p, s, 0));  // same seed, same order
  auto w1 = split_words(sh), w2 = split_words(s.query);
  std::sort(w1.begin(), w1.end());
  std::sort(w2.begin(), w2.end());
  EXPECT_EQ(w1, w2);  // a permutation of the query's words
  EXPECT_NE(PrefixMaker(corpus, 8).make(p, s, 0), "") ;
  p.kind = PrefixKind::Surrogate;
  p.surrogate_index = 1;
  EXPECT_EQ(m.make(p, s, 0), "dog facts");
  p.surrogate_index = 2;
  EXPECT_THROW(m.make(p, s, 0), Error);
  p.kind = PrefixKind::FirstSentence;
  EXPECT_EQ(m.make(p, s, 0), "The red fox jumps over the lazy dog.");
  p.kind = PrefixKind::RandomWords;
  std::string rw = m.make(p, s, 0);
  EXPECT_EQ(split_words(rw).size(), split_words(s.query).size());  // length-matched
  for (const auto& w : split_words(rw))  // drawn from unrelated passages only
    EXPECT_EQ(corpus[0].find(w), std::string::npos) << w;
  p.kind = PrefixKind::Keywords;
  p.top_k = 3;
  auto kw = split_words(m.make(p, s, 0));
  ASSERT_EQ(kw.size(), 3u);
  for (const auto& w : kw) EXPECT_NE(w, "the");  // stop words never
  p.kind = PrefixKind::Generated;
  EXPECT_THROW(m.make(p, s, 0), Error);  // needs a model
}

TEST(Prefix, SeededDrawIsPortable) {
  // splitmix64 reference values (seed 0): the published first outputs of the generator.
  SeededDraw d(0);
  EXPECT_EQ(d.next(), 0xE220A8397B1DCDAFULL);
  EXPECT_EQ(d.next(), 0x6E789E6AA1B965F4ULL);
  SeededDraw e(5);
  for (int i = 0; i < 1000; ++i) EXPECT_LT(e.below(7), 7u);
}

}  // namespace

namespace {

// toml++ 3.3 has undefined behaviour on non-ASCII outside strings (see spec.cpp); TOML 1.0 does
// not allow it there, so it is refused up front. Inside strings and comments it is text as usual.
TEST(ExperimentSpec, NonAsciiOutsideStringsIsRefusedInsideIsKept) {
  expect_error("caf\xC3\xA9 = 1\n", {"exp.toml:5", "non-ASCII character outside a string"});
  expect_error("[templates]\nanswer = \"\"\"a \\\n   \xC3\xA9\"\"\"\n", {"exp.toml:6", "line-ending backslash"});
  expect_error("x = 0\"caf\xC3\xA9\"\n", {"exp.toml:5", "non-ASCII character outside a string"});  // not a string start
  // A backslash before a non-ASCII character is no TOML escape (toml++ tests it for a line end).
  expect_error("[templates]\nanswer = \"\"\"a\\\xC3\xA9\"\"\"\n", {"exp.toml:6", "after a backslash"});
  expect_error("[templates]\nanswer = \"a\\\xC3\xA9\"\n", {"exp.toml:6", "after a backslash"});
  ExperimentSpec s = parse("# \xC3\xA9t\xC3\xA9\n[templates]\nanswer = \" caf\xC3\xA9 {answer}\"\n"
                           "query = '''\xC3\xA9 {query}'''\n[[condition]]\nname = \"\xC3\xA9t\xC3\xA9\"\nprefix = \"oracle\"\n"
                           "layers = [ 0,\n  1 ]\nkeys = \"bare\"\n");
  EXPECT_EQ(s.templates.answer_template, " caf\xC3\xA9 {answer}");
  EXPECT_EQ(s.templates.query_template, "\xC3\xA9 {query}");
}

}  // namespace
