// Unit tests of the tokenizer's pieces on small synthetic tokenizer.json files (BPE merge order,
// byte fallback, unk fusing, ignore_merges, Metaspace prepend schemes, added tokens, post-processor,
// decoders, offsets), plus offset checks on the real tokenizers (skipped when
// scripts/fetch_tokenizers.sh has not been run).
#include <gtest/gtest.h>

#include <filesystem>

#include "kvprime/core/error.h"
#include "kvprime/tokenizer/tokenizer.h"
#include "test_support.h"

namespace {

using kvprime::Tokenizer;
using nlohmann::json;
using Ids = std::vector<int32_t>;
using Offs = std::vector<std::pair<size_t, size_t>>;

// A BPE tokenizer.json whose vocab ids are the positions in `vocab`.
json bpe(const std::vector<std::string>& vocab, const json& merges, const json& model_extra = json::object()) {
  json v = json::object();
  for (size_t i = 0; i < vocab.size(); ++i) v[vocab[i]] = i;
  json model = {{"type", "BPE"}, {"vocab", v}, {"merges", merges}};
  for (auto it = model_extra.begin(); it != model_extra.end(); ++it) model[it.key()] = it.value();
  return json{{"version", "1.0"}, {"model", model}, {"added_tokens", json::array()},
              {"normalizer", nullptr}, {"pre_tokenizer", nullptr}, {"post_processor", nullptr},
              {"decoder", nullptr}};
}

Tokenizer load(const json& j, const json& cfg = nullptr) {
  return Tokenizer::from_json(j.dump(), cfg.is_null() ? std::string() : cfg.dump());
}

std::vector<std::string> tokens_of(const Tokenizer& t, const std::string& s, bool special = true) {
  return t.encode_with_offsets(s, special).tokens;
}

std::vector<std::string> byte_vocab(std::vector<std::string> v) {
  char name[8];
  for (int b = 0; b < 256; ++b) {
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    v.push_back(name);
  }
  return v;
}

TEST(Bpe, MergesApplyByRankNotByPosition) {
  std::vector<std::string> v = {"a", "b", "c", "ab", "bc", "abc"};
  // "b c" ranks first: a + bc -> abc.
  Tokenizer t1 = load(bpe(v, {"b c", "a bc", "a b"}));
  EXPECT_EQ(tokens_of(t1, "abc"), (std::vector<std::string>{"abc"}));
  EXPECT_EQ(t1.encode("abc"), Ids({5}));
  // "a b" first, and no "ab c": stuck at ab + c.
  Tokenizer t2 = load(bpe(v, {"a b", "b c", "a bc"}));
  EXPECT_EQ(tokens_of(t2, "abc"), (std::vector<std::string>{"ab", "c"}));
  // Pairs given as [a, b] lists behave the same as "a b" strings.
  Tokenizer t3 = load(bpe(v, json::parse(R"([["b","c"],["a","bc"]])")));
  EXPECT_EQ(t3.encode("abc"), Ids({5}));
}

TEST(Bpe, EqualRanksMergeLeftmostFirst) {
  Tokenizer t = load(bpe({"a", "aa"}, {"a a"}));
  EXPECT_EQ(tokens_of(t, "aaa"), (std::vector<std::string>{"aa", "a"}));
  EXPECT_EQ(tokens_of(t, "aaaa"), (std::vector<std::string>{"aa", "aa"}));
  EXPECT_EQ(tokens_of(t, "aaaaa"), (std::vector<std::string>{"aa", "aa", "a"}));
}

TEST(Bpe, IgnoreMergesTakesWholeWordsFromTheVocab) {
  std::vector<std::string> v = {"a", "b", "c", "ab", "abc"};
  json j = bpe(v, {"a b"});
  EXPECT_EQ(tokens_of(load(j), "abc"), (std::vector<std::string>{"ab", "c"}));
  j["model"]["ignore_merges"] = true;
  EXPECT_EQ(tokens_of(load(j), "abc"), (std::vector<std::string>{"abc"}));
  EXPECT_EQ(tokens_of(load(j), "abcab"), (std::vector<std::string>{"ab", "c", "ab"}));
}

TEST(Bpe, ByteFallbackAndOffsets) {
  json j = bpe(byte_vocab({"<unk>", "x", "y"}), json::array(), {{"byte_fallback", true}, {"unk_token", "<unk>"}});
  j["decoder"] = json::parse(R"({"type":"Sequence","decoders":[{"type":"ByteFallback"},{"type":"Fuse"}]})");
  Tokenizer t = load(j);
  auto e = t.encode_with_offsets("x\xC3\xA9y");  // xéy
  EXPECT_EQ(e.tokens, (std::vector<std::string>{"x", "<0xC3>", "<0xA9>", "y"}));
  // Both byte tokens carry the whole character's span.
  EXPECT_EQ(e.offsets, (Offs{{0, 1}, {1, 3}, {1, 3}, {3, 4}}));
  EXPECT_EQ(t.decode(e.ids), "x\xC3\xA9y");
  // A lone continuation byte decodes to one U+FFFD per byte; a valid run to its text.
  Ids lone = {*t.token_to_id("x"), *t.token_to_id("<0xA9>"), *t.token_to_id("<0xA9>")};
  EXPECT_EQ(t.decode(lone), "x\xEF\xBF\xBD\xEF\xBF\xBD");
}

TEST(Bpe, UnknownCharsFuseWhenAsked) {
  json j = bpe({"<unk>", "x"}, json::array(), {{"unk_token", "<unk>"}, {"fuse_unk", true}});
  auto e = load(j).encode_with_offsets("x\xC3\xA9\xC3\xA9x");
  EXPECT_EQ(e.ids, Ids({1, 0, 1}));
  EXPECT_EQ(e.offsets, (Offs{{0, 1}, {1, 5}, {5, 6}}));
  j["model"]["fuse_unk"] = false;
  EXPECT_EQ(load(j).encode("x\xC3\xA9\xC3\xA9x"), Ids({1, 0, 0, 1}));
  // Without unk_token unknown chars are dropped (as HF does).
  EXPECT_EQ(load(bpe({"x"}, json::array())).encode("xzx"), Ids({0, 0}));
}

json metaspace(const std::string& scheme, bool split = true) {
  json j = bpe({"\xE2\x96\x81", "a", "b", "<s>", "\xE2\x96\x81" "a", "\xE2\x96\x81" "b"},
               {"\xE2\x96\x81 a", "\xE2\x96\x81 b"});
  j["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "\xE2\x96\x81"}, {"prepend_scheme", scheme}, {"split", split}};
  j["decoder"] = {{"type", "Metaspace"}, {"replacement", "\xE2\x96\x81"}, {"prepend_scheme", scheme}, {"split", split}};
  j["added_tokens"] = json::parse(R"([{"id":3,"content":"<s>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true}])");
  return j;
}

TEST(Metaspace, PrependSchemes) {
  const std::string m = "\xE2\x96\x81";
  Tokenizer always = load(metaspace("always"));
  EXPECT_EQ(tokens_of(always, "a b"), (std::vector<std::string>{m + "a", m + "b"}));
  EXPECT_EQ(tokens_of(always, "<s>a"), (std::vector<std::string>{"<s>", m + "a"}));
  Tokenizer first = load(metaspace("first"));
  EXPECT_EQ(tokens_of(first, "a b"), (std::vector<std::string>{m + "a", m + "b"}));
  // "first" only prepends to the piece at the very start of the input.
  EXPECT_EQ(tokens_of(first, "<s>a"), (std::vector<std::string>{"<s>", "a"}));
  Tokenizer never = load(metaspace("never"));
  EXPECT_EQ(tokens_of(never, "a b"), (std::vector<std::string>{"a", m + "b"}));
  // The decoder removes the prepended space of the first token.
  EXPECT_EQ(always.decode(always.encode("a b")), "a b");
  EXPECT_EQ(never.decode(never.encode("a b")), "a b");
  // Offsets: the prepended replacement maps to the first char.
  EXPECT_EQ(always.encode_with_offsets("a b").offsets, (Offs{{0, 1}, {1, 3}}));
}

json with_added(json j, const std::string& content, int id, bool lstrip, bool rstrip, bool single_word,
                bool normalized = false, bool special = false) {
  j["added_tokens"].push_back({{"id", id}, {"content", content}, {"single_word", single_word}, {"lstrip", lstrip},
                               {"rstrip", rstrip}, {"normalized", normalized}, {"special", special}});
  return j;
}

TEST(AddedTokens, SplitTextAndKeepTheirIds) {
  json j = with_added(bpe({"a", "b", " "}, json::array()), "<m>", 3, false, false, false, false, true);
  Tokenizer t = load(j);
  auto e = t.encode_with_offsets("a<m>b");
  EXPECT_EQ(e.ids, Ids({0, 3, 1}));
  EXPECT_EQ(e.offsets, (Offs{{0, 1}, {1, 4}, {4, 5}}));
  EXPECT_TRUE(t.is_special(3));
  EXPECT_EQ(t.decode(e.ids, true), "a b");  // no decoder: tokens joined by spaces
  EXPECT_EQ(t.vocab_size(), 4u);
}

TEST(AddedTokens, LstripRstripTakeTheWhitespace) {
  json j = bpe({"a", "b", " "}, json::array());
  auto e = load(with_added(j, "<m>", 3, true, false, false)).encode_with_offsets("a  <m> b");
  EXPECT_EQ(e.ids, Ids({0, 3, 2, 1}));
  EXPECT_EQ(e.offsets[1], std::make_pair(size_t{1}, size_t{6}));
  e = load(with_added(j, "<m>", 3, false, true, false)).encode_with_offsets("a <m>  b");
  EXPECT_EQ(e.ids, Ids({0, 2, 3, 1}));
  EXPECT_EQ(e.offsets[2], std::make_pair(size_t{2}, size_t{7}));
  e = load(with_added(j, "<m>", 3, true, true, false)).encode_with_offsets(" <m> ");
  EXPECT_EQ(e.ids, Ids({3}));
}

TEST(AddedTokens, SingleWordOnlyMatchesWholeWords) {
  json j = with_added(bpe({"a", "b", " ", "m"}, json::array()), "m", 4, false, false, true);
  Tokenizer t = load(j);
  EXPECT_EQ(t.encode("a m b"), Ids({0, 2, 4, 2, 1}));
  EXPECT_EQ(t.encode("am b"), Ids({0, 3, 2, 1}));  // inside a word: the model's "m"
  EXPECT_EQ(t.encode("m"), Ids({4}));
}

TEST(AddedTokens, LongestMatchWinsAndNormalizedTokensMatchNormalizedText) {
  json j = bpe({"a", "\xE2\x96\x81"}, json::array());
  j = with_added(j, "<x>", 2, false, false, false);
  j = with_added(j, "<x>>", 3, false, false, false);
  EXPECT_EQ(load(j).encode("<x>>a<x>"), Ids({3, 0, 2}));
  // A normalized token matches after the normalizer ran (here: spaces became ▁).
  json n = bpe({"a", "\xE2\x96\x81"}, json::array());
  n["normalizer"] = json::parse(R"({"type":"Replace","pattern":{"String":" "},"content":"\u2581"})");
  n = with_added(n, "a a", 2, false, false, false, true);
  EXPECT_EQ(load(n).encode("a a a"), Ids({2, 1, 0}));
}

TEST(PostProcessor, TemplateAndConfigFlags) {
  json j = bpe({"<s>", "</s>", "a"}, json::array());
  j["added_tokens"] = json::parse(R"([
    {"id":0,"content":"<s>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true},
    {"id":1,"content":"</s>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true}])");
  j["post_processor"] = json::parse(R"({"type":"TemplateProcessing",
    "single":[{"SpecialToken":{"id":"<s>","type_id":0}},{"Sequence":{"id":"A","type_id":0}}],
    "pair":[], "special_tokens":{"<s>":{"id":"<s>","ids":[0],"tokens":["<s>"]}}})");
  Tokenizer t = load(j);
  EXPECT_EQ(t.encode("a"), Ids({0, 2}));
  EXPECT_EQ(t.encode("a", false), Ids({2}));
  auto e = t.encode_with_offsets("a");
  EXPECT_EQ(e.offsets, (Offs{{0, 0}, {0, 1}}));
  EXPECT_EQ(e.special_tokens_mask, (std::vector<uint8_t>{1, 0}));
  EXPECT_EQ(t.bos_id(), std::optional<int32_t>(0));
  EXPECT_FALSE(t.eos_id().has_value());
  EXPECT_EQ(t.encode(""), Ids({0}));

  json cfg = {{"bos_token", "<s>"}, {"eos_token", {{"content", "</s>"}}}, {"add_bos_token", false}, {"add_eos_token", true}};
  Tokenizer c = load(j, cfg);
  EXPECT_EQ(c.encode("a"), Ids({2, 1}));
  EXPECT_EQ(c.encode("a", false), Ids({2}));
  EXPECT_EQ(c.eos_id(), std::optional<int32_t>(1));
  cfg["add_bos_token"] = true;
  EXPECT_EQ(load(j, cfg).encode("a"), Ids({0, 2, 1}));
}

TEST(Decoders, ReplaceByteFallbackFuseStrip) {
  json j = bpe(byte_vocab({"\xE2\x96\x81" "a", "b"}), json::array(), {{"byte_fallback", true}});
  j["decoder"] = json::parse(R"({"type":"Sequence","decoders":[
    {"type":"Replace","pattern":{"String":"\u2581"},"content":" "},{"type":"ByteFallback"},{"type":"Fuse"},
    {"type":"Strip","content":" ","start":1,"stop":0}]})");
  Tokenizer t = load(j);
  Ids ids = {0, 1, 0, *t.token_to_id("<0xE2>"), *t.token_to_id("<0x82>"), *t.token_to_id("<0xAC>")};
  EXPECT_EQ(t.decode(ids), "ab a\xE2\x82\xAC");
}

std::string byte_level_char(int b) {
  // GPT-2's byte -> char table: printable bytes map to themselves, the rest to U+0100 + n.
  static std::vector<std::string> table = [] {
    std::vector<std::string> t(256);
    int n = 0;
    for (int x = 0; x < 256; ++x) {
      bool direct = (x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || x >= 0xAE;
      uint32_t cp = direct ? x : 256 + n++;
      std::string s;
      if (cp < 0x80) s.push_back(static_cast<char>(cp));
      else {
        s.push_back(static_cast<char>(0xC0 | (cp >> 6)));
        s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
      }
      t[x] = s;
    }
    return t;
  }();
  return table[b];
}

TEST(ByteLevel, PreTokenizerRegexMergesOffsetsAndDecode) {
  std::vector<std::string> v;
  for (int b = 0; b < 256; ++b) v.push_back(byte_level_char(b));
  const std::string G = byte_level_char(' ');  // "Ġ"
  v.push_back(G + "a");
  json j = bpe(v, json::array({G + " a"}));
  j["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}};
  j["decoder"] = {{"type", "ByteLevel"}};
  Tokenizer t = load(j);
  auto e = t.encode_with_offsets("a a\xC3\xA9");
  EXPECT_EQ(e.tokens, (std::vector<std::string>{"a", G + "a", byte_level_char(0xC3), byte_level_char(0xA9)}));
  EXPECT_EQ(e.offsets, (Offs{{0, 1}, {1, 3}, {3, 5}, {3, 5}}));
  EXPECT_EQ(t.decode(e.ids), "a a\xC3\xA9");
  // Half a character decodes to U+FFFD.
  EXPECT_EQ(t.decode({e.ids[2]}), "\xEF\xBF\xBD");
  // add_prefix_space adds a space to a piece that lacks one.
  j["pre_tokenizer"]["add_prefix_space"] = true;
  EXPECT_EQ(load(j).encode("a"), Ids({256}));
}

// ---- real tokenizers -------------------------------------------------------------------------

std::string real(const std::string& name) { return kvprime::test::npm_dir() + "/" + name + "/tokenizer.json"; }

#define REQUIRE_REAL(name)                  \
  if (!std::filesystem::exists(real(name))) \
    GTEST_SKIP() << real(name) << " is absent: run scripts/fetch_tokenizers.sh";

TEST(RealOffsets, Llama3ByteLevel) {
  REQUIRE_REAL("llama3");
  Tokenizer t = Tokenizer::from_file(real("llama3"), kvprime::test::npm_dir() + "/llama3");
  auto e = t.encode_with_offsets("Hello world \xF0\x9F\xA6\x99!");  // 🦙 is 4 bytes, 3 tokens
  ASSERT_EQ(e.offsets.size(), 6u);
  EXPECT_EQ(e.offsets[2], std::make_pair(size_t{11}, size_t{16}));  // "ĠðŁ": the space and the emoji
  EXPECT_EQ(e.offsets[3], std::make_pair(size_t{12}, size_t{16}));
  EXPECT_EQ(e.offsets[4], std::make_pair(size_t{12}, size_t{16}));
  EXPECT_EQ(e.tokens.front(), "Hello");
  EXPECT_EQ(e.offsets.front(), std::make_pair(size_t{0}, size_t{5}));
  EXPECT_EQ(e.offsets[1], std::make_pair(size_t{5}, size_t{11}));  // "Ġworld" includes the space
  // Every token lies inside the input, in order, and the pieces of the emoji share its span.
  size_t prev = 0;
  for (auto [b, en] : e.offsets) {
    EXPECT_LE(b, en);
    EXPECT_LE(en, 17u);
    EXPECT_GE(en, prev);
    prev = en;
  }
  EXPECT_EQ(e.offsets.back(), std::make_pair(size_t{16}, size_t{17}));
  EXPECT_EQ(t.bos_id(), std::optional<int32_t>(128000));
  EXPECT_EQ(t.decode(e.ids), "Hello world \xF0\x9F\xA6\x99!");
}

TEST(RealOffsets, PrefixEndsWhereItsTokensEnd) {
  REQUIRE_REAL("gemma3");
  for (const std::string name : {"llama2", "llama3", "qwen3", "gemma3"}) {
    Tokenizer t = Tokenizer::from_file(real(name), kvprime::test::npm_dir() + "/" + name);
    const std::string prefix = "This document may be relevant to queries like: how much oxygen\n\n";
    const std::string text = prefix + "Document:\nThe Amazon rainforest produces approximately 20 percent";
    auto e = t.encode_with_offsets(text, false);
    // Concatenating the spans of the tokens reproduces the text (no gaps, no overlaps) here.
    size_t pos = 0;
    for (auto [b, en] : e.offsets) {
      EXPECT_EQ(b, pos) << name;
      pos = en;
    }
    EXPECT_EQ(pos, text.size()) << name;
    bool boundary = false;
    for (auto [b, en] : e.offsets) boundary |= en == prefix.size();
    EXPECT_TRUE(boundary) << name << ": no token ends where the prefix ends";
  }
}

TEST(RealOffsets, Llama2PrependedSpaceMapsToFirstChar) {
  REQUIRE_REAL("llama2");
  Tokenizer t = Tokenizer::from_file(real("llama2"));
  auto e = t.encode_with_offsets("Hello world");
  EXPECT_EQ(e.tokens, (std::vector<std::string>{"<s>", "\xE2\x96\x81" "Hello", "\xE2\x96\x81" "world"}));
  EXPECT_EQ(e.offsets, (Offs{{0, 0}, {0, 5}, {5, 11}}));
  EXPECT_EQ(t.decode(e.ids, true), "Hello world");
}

}  // namespace
