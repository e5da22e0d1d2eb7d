// Golden test: every id (and tokens, offsets, decode where the generator recorded them) of the
// four real tokenizers over tests/fixtures/tokenizer/strings.json, against
// tests/fixtures/tokenizer/<name>.golden.json. The golden's "generator" says who produced it:
// "hf-tokenizers X" (tools/make_tokenizer_goldens.py, the authority) or "js ..." (provisional,
// tools/js_goldens.mjs). Tokenizers: scripts/fetch_tokenizers.sh -> third_party/npm/<name>/.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <memory>

#include "kvprime/tokenizer/tokenizer.h"
#include "test_support.h"

namespace {

using kvprime::Tokenizer;
using nlohmann::json;

std::string npm_file(const std::string& name, const std::string& file) {
  return kvprime::test::npm_dir() + "/" + name + "/" + file;
}

// Byte offset -> code point index (HF's Python binding reports code point offsets).
std::vector<size_t> char_index(const std::string& s) {
  std::vector<size_t> idx(s.size() + 1, 0);
  size_t c = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    idx[i] = c;
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) ++c;
    // a continuation byte maps to its char's index
    if ((static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) idx[i] = c - 1;
  }
  idx[s.size()] = c;
  return idx;
}

template <typename T>
std::string show(const std::vector<T>& v) {
  return json(v).dump();
}

// raw: tokenizer.json alone (what the goldens record); with_config: plus tokenizer_config.json,
// whose add_bos_token / add_eos_token must not change the ids of these four.
struct Loaded {
  std::unique_ptr<Tokenizer> raw, with_config;
};

const Loaded& load(const std::string& name, bool with_config) {
  static std::map<std::string, Loaded> cache;
  Loaded& l = cache[name];
  if (!l.raw) l.raw = std::make_unique<Tokenizer>(Tokenizer::from_file(npm_file(name, "tokenizer.json")));
  if (with_config && !l.with_config)
    l.with_config = std::make_unique<Tokenizer>(Tokenizer::from_file(
        npm_file(name, "tokenizer.json"), npm_file(name, "tokenizer_config.json")));
  return l;
}

class Golden : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    name_ = GetParam();
    if (!std::filesystem::exists(npm_file(name_, "tokenizer.json")))
      GTEST_SKIP() << npm_file(name_, "tokenizer.json") << " is absent: run scripts/fetch_tokenizers.sh";
    std::string path = kvprime::test::fixture("tokenizer/" + name_ + ".golden.json");
    ASSERT_TRUE(std::filesystem::exists(path)) << path << " is missing";
    golden_ = json::parse(kvprime::test::read_file(path));
    std::cout << "[ golden   ] " << name_ << ": " << golden_["cases"].size() << " cases, generator \""
              << golden_.value("generator", std::string("?")) << "\"\n";
  }
  std::string name_;
  json golden_;
};

constexpr int kMaxReports = 8;

TEST_P(Golden, Ids) {
  const Loaded& t = load(name_, true);
  int bad = 0, n = 0;
  for (const auto& c : golden_["cases"]) {
    const std::string text = c["text"].get<std::string>();
    auto want = c["ids"].get<std::vector<int32_t>>();
    auto want_ns = c["ids_no_special"].get<std::vector<int32_t>>();
    auto got = t.raw->encode(text, true);
    auto got_ns = t.raw->encode(text, false);
    auto got_cfg = t.with_config->encode(text, true);
    ++n;
    if (got != want || got_ns != want_ns || got_cfg != want) {
      if (++bad <= kMaxReports)
        ADD_FAILURE() << name_ << " text " << json(text).dump() << "\n  want    " << show(want)
                      << "\n  got     " << show(got) << "\n  want_ns " << show(want_ns)
                      << "\n  got_ns  " << show(got_ns) << "\n  got_cfg " << show(got_cfg);
    }
  }
  std::cout << "[ golden   ] " << name_ << ": " << (n - bad) << "/" << n << " strings: all ids match\n";
  EXPECT_EQ(bad, 0) << name_ << ": " << bad << " of " << n << " strings differ";
}

TEST_P(Golden, TokensAndOffsets) {
  const Loaded& t = load(name_, false);
  bool offsets = golden_.value("has_offsets", false);
  int bad = 0, n = 0;
  for (const auto& c : golden_["cases"]) {
    if (!c.contains("tokens")) continue;
    const std::string text = c["text"].get<std::string>();
    auto e = t.raw->encode_with_offsets(text, true);
    ++n;
    bool ok = e.tokens == c["tokens"].get<std::vector<std::string>>();
    std::vector<std::pair<size_t, size_t>> got_off;
    if (offsets) {
      auto ci = char_index(text);
      for (auto [b, e2] : e.offsets) got_off.emplace_back(ci[b], ci[e2]);
      ok = ok && got_off == c["offsets"].get<std::vector<std::pair<size_t, size_t>>>();
    }
    if (!ok && ++bad <= kMaxReports)
      ADD_FAILURE() << name_ << " text " << json(text).dump() << "\n  want tokens " << c["tokens"].dump()
                    << "\n  got  tokens " << json(e.tokens).dump()
                    << (offsets ? "\n  want offsets " + c["offsets"].dump() + "\n  got  offsets " + json(got_off).dump()
                                : std::string());
  }
  std::cout << "[ golden   ] " << name_ << ": " << (n - bad) << "/" << n << " strings: tokens"
            << (offsets ? " and offsets" : " (no offsets in this golden)") << " match\n";
  EXPECT_EQ(bad, 0);
}

TEST_P(Golden, Decode) {
  if (!golden_.value("has_decode", false)) GTEST_SKIP() << "golden has no decodes";
  const Loaded& t = load(name_, false);
  int bad = 0, n = 0;
  for (const auto& c : golden_["cases"]) {
    auto ids = c["ids"].get<std::vector<int32_t>>();
    std::string d = t.raw->decode(ids, false), ds = t.raw->decode(ids, true);
    ++n;
    if (d != c["decode"].get<std::string>() || ds != c["decode_skip_special"].get<std::string>()) {
      if (++bad <= kMaxReports)
        ADD_FAILURE() << name_ << " ids " << show(ids) << "\n  want " << c["decode"].dump() << " / "
                      << c["decode_skip_special"].dump() << "\n  got  " << json(d).dump() << " / "
                      << json(ds).dump();
    }
  }
  std::cout << "[ golden   ] " << name_ << ": " << (n - bad) << "/" << n << " decodes match\n";
  EXPECT_EQ(bad, 0);
}

INSTANTIATE_TEST_SUITE_P(Tokenizers, Golden,
                         ::testing::Values("llama2", "llama3", "qwen3", "gemma3"),
                         [](const auto& info) { return info.param; });

}  // namespace
