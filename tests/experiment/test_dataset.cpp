// The JSONL dataset reader: the demo dataset and every field round trip, and every way a line can
// be wrong is an error naming file:line, the sample, the field and the fix — never a crash, never
// a silently wrong sample.
#include <gtest/gtest.h>

#include "kvprime/core/error.h"
#include "kvprime/experiment/dataset.h"
#include "test_support.h"

#include <functional>

using namespace kvprime;
using kvprime::test::TempDir;

using kvprime::test::expect_error_with;

namespace {

// parse_dataset() with origin "f.jsonl".
std::vector<Sample> parse(const std::string& text, const DatasetOptions& o = {}) {
  return parse_dataset(text, "f.jsonl", o);
}

void expect_parse_error(const std::string& text, const std::vector<std::string>& parts,
                        const DatasetOptions& o = {}) {
  expect_error_with([&] { parse(text, o); }, parts);
}

const std::string kA = R"({"id": "a", "passage": "Pa", "query": "Qa", "answer": "Aa"})";
const std::string kB = R"({"id": "b", "passage": "Pb", "query": "Qb", "answer": "Ab"})";

}  // namespace

TEST(Dataset, ReadsTheDemoDataset) {
  auto samples = read_dataset(test::source_dir() + "/data/demo/qa.jsonl");
  ASSERT_EQ(samples.size(), 203u);
  const Sample& s = samples[0];
  EXPECT_EQ(s.id, "science-001");
  EXPECT_EQ(s.index, 0);
  EXPECT_EQ(s.line, 1);
  EXPECT_EQ(s.answer, "about 83 degrees Celsius");
  ASSERT_EQ(s.surrogates.size(), 3u);
  EXPECT_EQ(s.surrogates[0], "boiling point of water at altitude");
  ASSERT_EQ(s.irrelevant_ids, (std::vector<std::string>{"economics-004", "literature-004"}));
  ASSERT_EQ(s.irrelevant.size(), 2u);
  for (size_t k = 0; k < 2; ++k) {
    auto it = std::find_if(samples.begin(), samples.end(),
                           [&](const Sample& x) { return x.id == s.irrelevant_ids[k]; });
    ASSERT_NE(it, samples.end());
    EXPECT_EQ(s.irrelevant[k], it->passage) << "irrelevant ids resolve to the other samples' passages";
  }
  EXPECT_EQ(s.extra.at("topic"), "science");
  EXPECT_EQ(s.extra.at("split"), "heldout");
  EXPECT_FALSE(s.extra.contains("passage"));
  EXPECT_FALSE(s.extra.contains("id"));
  for (size_t i = 0; i < samples.size(); ++i) {
    EXPECT_EQ(samples[i].index, static_cast<int64_t>(i));
    EXPECT_EQ(samples[i].line, static_cast<int64_t>(i) + 1);
  }
}

TEST(Dataset, FieldsRoundTrip) {
  const std::string text =
      "\xEF\xBB\xBF" R"({"id": 7, "passage": " Ünïcode passage\n", "query": "q?", "answer": "a b", )"
      R"("surrogates": ["s1", "s2"], "irrelevant": ["x"], "irrelevant_passages": ["own text"], )"
      R"("topic": "t", "n": 3, "nested": {"k": [1, 2]}})" "\r\n"
      "\r\n"
      "   \t\n"
      R"({"passage": "Px", "query": "Qx", "answer": "Ax", "surrogates": null, "irrelevant": null})" "\r\n"
      R"({"id": "x", "passage": "Py", "query": "Qy", "answer": "Ay", "surrogates": []})";  // no final newline
  auto s = parse(text);
  ASSERT_EQ(s.size(), 3u);
  EXPECT_EQ(s[0].id, "7");  // integer ids become their decimal text
  EXPECT_EQ(s[0].line, 1);
  EXPECT_EQ(s[0].passage, " \xC3\x9Cn\xC3\xAF" "code passage\n") << "texts are kept byte for byte";
  EXPECT_EQ(s[0].query, "q?");
  EXPECT_EQ(s[0].answer, "a b");
  EXPECT_EQ(s[0].surrogates, (std::vector<std::string>{"s1", "s2"}));
  EXPECT_EQ(s[0].irrelevant_ids, (std::vector<std::string>{"x"}));
  EXPECT_EQ(s[0].irrelevant, (std::vector<std::string>{"Py", "own text"})) << "ids first, then texts";
  EXPECT_EQ(s[0].extra, nlohmann::json({{"topic", "t"}, {"n", 3}, {"nested", {{"k", {1, 2}}}}}));

  EXPECT_EQ(s[1].id, "line-4") << "no id: line-<n>, n the physical line";
  EXPECT_EQ(s[1].line, 4);
  EXPECT_EQ(s[1].index, 1);
  EXPECT_TRUE(s[1].surrogates.empty()) << "null counts as absent";
  EXPECT_TRUE(s[1].irrelevant.empty());
  EXPECT_TRUE(s[1].extra.empty());

  EXPECT_EQ(s[2].id, "x");
  EXPECT_EQ(s[2].line, 5);
  EXPECT_EQ(s[2].answer, "Ay");
}

TEST(Dataset, LimitKeepsTheFirstSamplesButChecksTheWholeFile) {
  const std::string c = R"({"id": "c", "passage": "Pc", "query": "Qc", "answer": "Ac", "irrelevant": ["d"]})";
  const std::string d = R"({"id": "d", "passage": "Pd", "query": "Qd", "answer": "Ad"})";
  DatasetOptions o;
  o.limit = 1;
  auto s = parse(c + "\n" + kA + "\n" + d + "\n", o);
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].id, "c");
  EXPECT_EQ(s[0].irrelevant, (std::vector<std::string>{"Pd"})) << "ids past the limit resolve";
  o.limit = 10;
  EXPECT_EQ(parse(c + "\n" + d, o).size(), 2u);
  o.limit = 1;
  expect_parse_error(kA + "\n" + kB + "\n{broken\n", {"f.jsonl:3", "invalid JSON"}, o);
  o.limit = -1;
  expect_parse_error(kA, {"limit must be >= 0", "-1"}, o);
}

TEST(Dataset, InvalidJsonNamesLineAndColumn) {
  expect_parse_error(kA + "\n" + R"({"id": "b", "passage": "P" "query": "Q"})",
                     {"f.jsonl:2:", "invalid JSON at column 34", "JSON Lines"});
  // A last line cut short (a partial write) is an error, not a dropped sample.
  expect_parse_error(kA + "\n" + kB.substr(0, 30), {"f.jsonl:2", "invalid JSON"});
  expect_parse_error(kA + " trailing\n", {"f.jsonl:1", "invalid JSON"});
  // A JSON array file instead of JSON Lines gets the conversion hint.
  expect_parse_error("[\n" + kA + ",\n" + kB + "\n]\n", {"f.jsonl:1", "one JSON array", "jq -c"});
  expect_parse_error("[" + kA + "]", {"f.jsonl:1", "expected a JSON object", "got array"});
}

TEST(Dataset, NonObjectLines) {
  expect_parse_error(kA + "\n\"just a string\"\n", {"f.jsonl:2", "expected a JSON object", "got string"});
  expect_parse_error("42\n", {"f.jsonl:1", "got integer 42"});
  expect_parse_error("null\n", {"f.jsonl:1", "got null"});
}

TEST(Dataset, MissingEmptyOrMistypedRequiredFields) {
  expect_parse_error(R"({"id": "a", "query": "Q", "answer": "A"})",
                     {"f.jsonl:1 (sample 'a')", "field 'passage' is missing"});
  expect_parse_error(R"({"id": "a", "passage": "P", "query": null, "answer": "A"})",
                     {"f.jsonl:1 (sample 'a')", "field 'query' is missing"});
  expect_parse_error(kA + "\n" + R"({"passage": "P", "query": "Q", "answer": " \t "})",
                     {"f.jsonl:2 (sample 'line-2')", "field 'answer' is empty"});
  expect_parse_error(R"({"id": "a", "passage": "P", "query": "Q", "answer": 42})",
                     {"f.jsonl:1 (sample 'a')", "field 'answer': expected a string, got integer 42",
                      "in quotes"});
  expect_parse_error(R"({"id": "a", "passage": ["P"], "query": "Q", "answer": "A"})",
                     {"field 'passage': expected a string, got array [\"P\"]"});
}

TEST(Dataset, MistypedOptionalFields) {
  expect_parse_error(R"({"id": "a", "passage": "P", "query": "Q", "answer": "A", "surrogates": "s"})",
                     {"f.jsonl:1 (sample 'a')", "field 'surrogates': expected an array",
                      "wrap a single one in [ ]"});
  expect_parse_error(R"({"id": "a", "passage": "P", "query": "Q", "answer": "A", "surrogates": ["s", 3]})",
                     {"field 'surrogates[1]': expected a string", "got integer 3"});
  expect_parse_error(R"({"id": "a", "passage": "P", "query": "Q", "answer": "A", "surrogates": ["s", ""]})",
                     {"field 'surrogates[1]' is empty"});
  expect_parse_error(R"({"id": "a", "passage": "P", "query": "Q", "answer": "A", "irrelevant": {"b": 1}})",
                     {"field 'irrelevant': expected an array of ids of other samples", "got object"});
  expect_parse_error(R"({"id": "a", "passage": "P", "query": "Q", "answer": "A", "irrelevant_passages": [1.5]})",
                     {"field 'irrelevant_passages[0]'", "got number 1.5"});
}

TEST(Dataset, Ids) {
  expect_parse_error(kA + "\n" + kB + "\n" + kA + "\n",
                     {"f.jsonl:3 (sample 'a')", "duplicate id 'a' (also line 1)", "rename"});
  // An explicit id may collide with a generated one.
  expect_parse_error(R"({"id": "line-2", "passage": "P", "query": "Q", "answer": "A"})" "\n"
                     R"({"passage": "P", "query": "Q", "answer": "A"})",
                     {"f.jsonl:2", "duplicate id 'line-2' (also line 1)"});
  // 1 and "1" are the same id.
  expect_parse_error(R"({"id": 1, "passage": "P", "query": "Q", "answer": "A"})" "\n"
                     R"({"id": "1", "passage": "P", "query": "Q", "answer": "A"})",
                     {"f.jsonl:2", "duplicate id '1'"});
  expect_parse_error(R"({"id": true, "passage": "P", "query": "Q", "answer": "A"})",
                     {"f.jsonl:1", "field 'id': expected a string or an integer, got boolean"});
  expect_parse_error(R"({"id": 1.5, "passage": "P", "query": "Q", "answer": "A"})",
                     {"f.jsonl:1", "field 'id'", "got number 1.5"});
  expect_parse_error(R"({"id": "", "passage": "P", "query": "Q", "answer": "A"})",
                     {"f.jsonl:1", "field 'id' is empty", "line-1"});
}

TEST(Dataset, KeyGivenTwice) {
  expect_parse_error(R"({"id": "a", "passage": "P", "query": "Q", "answer": "A", "answer": "B"})",
                     {"f.jsonl:1", "key 'answer' appears twice"});
  expect_parse_error(R"({"id": "a", "passage": "P", "query": "Q", "answer": "A", "m": {"k": 1, "k": 2}})",
                     {"f.jsonl:1", "key 'k' appears twice"});
  // The same key in two different objects is fine.
  EXPECT_EQ(parse(R"({"id": "a", "passage": "P", "query": "Q", "answer": "A", "m": [{"k": 1}, {"k": 2}]})")
                .size(), 1u);
}

TEST(Dataset, InvalidUtf8) {
  std::string bad = kA;
  bad.replace(bad.find("Pa") + 1, 1, "\xFF");  // byte 32 (1-based column) of the line
  const size_t col = kA.find("Pa") + 2;
  expect_parse_error(kB + "\n" + bad + "\n",
                     {"f.jsonl:2", "invalid UTF-8 at column " + std::to_string(col), "0xff", "iconv"});
  // Overlong encodings and UTF-16 surrogates encoded in UTF-8 are invalid too.
  std::string overlong = kA;
  overlong.replace(overlong.find("Pa") + 1, 1, "\xC0\xAF");
  expect_parse_error(overlong, {"f.jsonl:1", "invalid UTF-8", "0xc0"});
  std::string surrogate = kA;
  surrogate.replace(surrogate.find("Pa") + 1, 1, "\xED\xA0\x80");
  expect_parse_error(surrogate, {"f.jsonl:1", "invalid UTF-8", "0xed"});
  // A lone surrogate escape is refused by the JSON parser.
  expect_parse_error(R"({"id": "a", "passage": "P\ud800", "query": "Q", "answer": "A"})",
                     {"f.jsonl:1", "invalid JSON"});
}

TEST(Dataset, IrrelevantIds) {
  expect_parse_error(kA + "\n" +
                         R"({"id": "b", "passage": "P", "query": "Q", "answer": "A", "irrelevant": ["a", "zzz"]})",
                     {"f.jsonl:2 (sample 'b')", "no sample has id 'zzz'", "irrelevant_passages"});
  expect_parse_error(R"({"id": "a", "passage": "P", "query": "Q", "answer": "A", "irrelevant": ["a"]})",
                     {"f.jsonl:1 (sample 'a')", "names the sample itself"});
}

TEST(Dataset, RequiredFields) {
  const std::string with = R"({"id": "w", "passage": "P", "query": "Q", "answer": "A", "surrogates": ["s"], )"
                           R"("irrelevant_passages": ["x"], "split": "train"})";
  DatasetOptions o;
  o.required = {{"surrogates", "condition 'surr' (prefix = \"surrogate\")"}, {"irrelevant", "ranking"},
                {"split", ""}};
  EXPECT_EQ(parse(with, o).size(), 1u);
  DatasetOptions only;
  only.required = {{"surrogates", "condition 'surr' (prefix = \"surrogate\")"}};
  expect_parse_error(with + "\n" + kA, {"f.jsonl:2 (sample 'a')", "no \"surrogates\"",
                                        "needed by condition 'surr' (prefix = \"surrogate\")"}, only);
  only.required = {{"irrelevant", "ranking"}};
  expect_parse_error(with + "\n" + kA, {"f.jsonl:2 (sample 'a')", "no irrelevant passages",
                                        "needed by ranking"}, only);
  only.required = {{"split", ""}};
  expect_parse_error(with + "\n" + kA, {"f.jsonl:2 (sample 'a')", "field 'split' is missing"}, only);
  // Only the samples kept by the limit must have them.
  o.limit = 1;
  EXPECT_EQ(parse(with + "\n" + kA, o).size(), 1u);
}

TEST(Dataset, EmptyFilesAndBadPaths) {
  expect_parse_error("", {"dataset f.jsonl", "no samples"});
  expect_parse_error("\n  \r\n\n", {"dataset f.jsonl", "no samples"});
  TempDir tmp;
  expect_error_with([&] { read_dataset(tmp.file("missing.jsonl")); }, {"missing.jsonl", "cannot open"});
  expect_error_with([&] { read_dataset(tmp.path()); }, {tmp.path(), "is a directory"});
  test::write_file(tmp.file("empty.jsonl"), "");
  expect_error_with([&] { read_dataset(tmp.file("empty.jsonl")); }, {"empty.jsonl", "no samples"});
  test::write_file(tmp.file("bad.jsonl"), kA + "\n{\n");
  expect_error_with([&] { read_dataset(tmp.file("bad.jsonl")); }, {tmp.file("bad.jsonl") + ":2"});
}

namespace {

// nlohmann reports a number beyond double as out_of_range, not parse_error (found by fuzzing).
TEST(Dataset, NumberBeyondDoubleIsALineError) {
  expect_error_with([] { parse_dataset("{\"id\": \"a\", \"passage\": \"p\", \"query\": \"q\", \"answer\": \"a b\", \"n\": 1e999}\n",
                                       "f.jsonl"); },
                    {"f.jsonl:1", "number overflow"});
}

}  // namespace
