// Bad input to the tokenizer: each case is a kvprime::Error whose message says what was wrong.
#include <gtest/gtest.h>

#include "kvprime/core/error.h"
#include "kvprime/tokenizer/tokenizer.h"
#include "test_support.h"

using kvprime::test::expect_error_with;

namespace {

using kvprime::Tokenizer;
using nlohmann::json;

json minimal() {
  return json::parse(R"({"version":"1.0","added_tokens":[],"normalizer":null,"pre_tokenizer":null,
    "post_processor":null,"decoder":null,
    "model":{"type":"BPE","vocab":{"a":0,"b":1,"ab":2},"merges":["a b"]}})");
}

TEST(TokenizerErrors, MinimalIsValid) {
  Tokenizer t = Tokenizer::from_json(minimal().dump());
  EXPECT_EQ(t.encode("ab"), (std::vector<int32_t>{2}));
}

TEST(TokenizerErrors, InvalidUtf8NamesTheByteOffset) {
  Tokenizer t = Tokenizer::from_json(minimal().dump());
  expect_error_with([&] { t.encode("ab\xFF" "a"); }, {"not valid UTF-8", "byte offset 2", "0xff"});
  expect_error_with([&] { t.encode("a\xE2\x96"); }, {"byte offset 1"});          // truncated
  expect_error_with([&] { t.encode("\xC0\x80"); }, {"byte offset 0"});           // overlong
  expect_error_with([&] { t.encode("ab\xED\xA0\x80"); }, {"byte offset 2"});     // surrogate
  expect_error_with([&] { t.encode_with_offsets("\x80"); }, {"byte offset 0"});  // lone continuation
}

TEST(TokenizerErrors, UnknownModelType) {
  json j = minimal();
  j["model"]["type"] = "WordPiece";
  expect_error_with([&] { Tokenizer::from_json(j.dump(), "", "wp.json"); }, {"wp.json", "WordPiece", "not supported", "BPE"});
}

TEST(TokenizerErrors, MissingOrBrokenMerges) {
  json j = minimal();
  j["model"].erase("merges");
  expect_error_with([&] { Tokenizer::from_json(j.dump()); }, {"merges", "missing"});
  j = minimal();
  j["model"]["merges"] = {"a c"};
  expect_error_with([&] { Tokenizer::from_json(j.dump()); }, {"merge #0", "\"c\"", "missing from model.vocab"});
  j["model"]["merges"] = {"a b c"};
  expect_error_with([&] { Tokenizer::from_json(j.dump()); }, {"merge #0", "two tokens"});
  j["model"]["merges"] = json::parse(R"([["a"]])");
  expect_error_with([&] { Tokenizer::from_json(j.dump()); }, {"merge #0"});
}

TEST(TokenizerErrors, MalformedJson) {
  kvprime::test::TempDir dir;
  kvprime::test::write_file(dir.file("tokenizer.json"), "{\"model\": {\"type\": \"BPE\", ");
  expect_error_with([&] { Tokenizer::from_file(dir.file("tokenizer.json")); }, {dir.file("tokenizer.json"), "malformed JSON"});
  kvprime::test::write_file(dir.file("t2.json"), "[1, 2]");
  expect_error_with([&] { Tokenizer::from_file(dir.file("t2.json")); }, {"t2.json", "JSON object"});
  kvprime::test::write_file(dir.file("t3.json"), "{\"version\": \"1.0\"}");
  expect_error_with([&] { Tokenizer::from_file(dir.file("t3.json")); }, {"t3.json", "\"model\""});
  json j = minimal();
  j["model"]["vocab"]["c"] = "three";
  expect_error_with([&] { Tokenizer::from_json(j.dump()); }, {"vocab", "\"c\""});
}

TEST(TokenizerErrors, MissingFiles) {
  expect_error_with([] { Tokenizer::from_file("/nonexistent/dir/tokenizer.json"); },
               {"not found", "/nonexistent/dir/tokenizer.json", "fetch_tokenizers.sh"});
  kvprime::test::TempDir dir;
  kvprime::test::write_file(dir.file("tokenizer.json"), minimal().dump());
  expect_error_with([&] { Tokenizer::from_file(dir.file("tokenizer.json"), dir.file("nope.json")); },
               {"tokenizer_config.json not found", "nope.json"});
  // A directory without tokenizer_config.json is fine.
  EXPECT_NO_THROW(Tokenizer::from_file(dir.file("tokenizer.json"), dir.path()));
}

TEST(TokenizerErrors, UnsupportedPipelinePieces) {
  json j = minimal();
  j["normalizer"] = {{"type", "BertNormalizer"}};
  expect_error_with([&] { Tokenizer::from_json(j.dump()); }, {"normalizer", "BertNormalizer", "not supported"});
  j = minimal();
  j["pre_tokenizer"] = {{"type", "Whitespace"}};
  expect_error_with([&] { Tokenizer::from_json(j.dump()); }, {"pre_tokenizer", "Whitespace"});
  j = minimal();
  j["decoder"] = {{"type", "WordPiece"}};
  expect_error_with([&] { Tokenizer::from_json(j.dump()); }, {"decoder", "WordPiece"});
  j = minimal();
  j["post_processor"] = {{"type", "BertProcessing"}};
  expect_error_with([&] { Tokenizer::from_json(j.dump()); }, {"post_processor", "BertProcessing"});
  j = minimal();
  j["pre_tokenizer"] = json::parse(R"({"type":"Split","pattern":{"Regex":"(unclosed"},"behavior":"Isolated","invert":false})");
  expect_error_with([&] { Tokenizer::from_json(j.dump()); }, {"regex", "(unclosed"});
  j = minimal();
  j["model"]["unk_token"] = "<unk>";
  expect_error_with([&] { Tokenizer::from_json(j.dump()); }, {"unk_token", "<unk>"});
}

TEST(TokenizerErrors, ConfigTokensMustExist) {
  json cfg = {{"bos_token", "<s>"}, {"add_bos_token", true}};
  expect_error_with([&] { Tokenizer::from_json(minimal().dump(), cfg.dump()); }, {"bos_token", "<s>", "not in the vocabulary"});
  json cfg2 = {{"add_eos_token", true}};
  expect_error_with([&] { Tokenizer::from_json(minimal().dump(), cfg2.dump()); }, {"add_eos_token", "no eos_token"});
  expect_error_with([&] { Tokenizer::from_json(minimal().dump(), "{oops"); }, {"tokenizer_config.json", "malformed JSON"});
}

}  // namespace
