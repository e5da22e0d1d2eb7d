// Differential test against the JS port of HF tokenizers (@huggingface/tokenizers, installed by
// scripts/fetch_tokenizers.sh under third_party/npm/js): random and mutated strings, every id
// compared (with and without special tokens) plus decode, for the four real tokenizers.
// Skipped when node, the JS package or the tokenizers are absent.
// KVPRIME_DIFF_SEED / KVPRIME_DIFF_COUNT change the seed (default 1234) and count (default 600).
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <random>

#include "kvprime/tokenizer/tokenizer.h"
#include "test_support.h"

namespace {

using kvprime::Tokenizer;
using nlohmann::json;

void append_cp(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::vector<std::string> split_chars(const std::string& s) {
  std::vector<std::string> out;
  for (size_t i = 0; i < s.size();) {
    size_t n = 1;
    while (i + n < s.size() && (static_cast<unsigned char>(s[i + n]) & 0xC0) == 0x80) ++n;
    out.push_back(s.substr(i, n));
    i += n;
  }
  return out;
}

class Gen {
 public:
  Gen(uint32_t seed, std::vector<std::string> base) : rng_(seed), base_(std::move(base)) {}

  std::string random_char() {
    static const std::vector<std::pair<uint32_t, uint32_t>> ranges = {
        {0x20, 0x7E}, {0x20, 0x7E}, {0x20, 0x7E}, {0x61, 0x7A}, {0x30, 0x39},
        {0xA0, 0xFF}, {0x100, 0x17F}, {0x300, 0x36F}, {0x370, 0x3FF}, {0x400, 0x4FF},
        {0x590, 0x5FF}, {0x600, 0x6FF}, {0x900, 0x97F}, {0xE00, 0xE7F}, {0x1100, 0x11FF},
        {0xAC00, 0xD7A3}, {0x3040, 0x30FF}, {0x4E00, 0x9FFF}, {0x2000, 0x206F}, {0x2190, 0x23FF},
        {0xFF00, 0xFFEF}, {0x1F300, 0x1F6FF}, {0x1F900, 0x1F9FF}, {0x1D400, 0x1D7FF}};
    static const std::vector<uint32_t> singles = {'\n', '\t', '\r', ' ', ' ', 0x200D, 0xFE0F,
                                                 0x2581, 0x3000, 0xA0, 0x85, 0xFEFF, 0x1F3FD, '\''};
    std::string out;
    if (pick(4) == 0) {
      append_cp(out, singles[pick(singles.size())]);
    } else {
      const auto& r = ranges[pick(ranges.size())];
      append_cp(out, r.first + static_cast<uint32_t>(pick(r.second - r.first + 1)));
    }
    return out;
  }

  std::string make() {
    static const std::vector<std::string> specials = {
        "<s>", "</s>", "<unk>", "<|begin_of_text|>", "<|eot_id|>", "<|im_start|>", "<|im_end|>",
        "<|endoftext|>", "<think>", "<start_of_turn>", "<end_of_turn>", "<bos>", "<eos>", "<pad>",
        "<mask>", "<unused7>", "<0x41>", "▁", "'s", "'LL", "\r\n", "  ", "\n\n"};
    int kind = static_cast<int>(pick(5));
    std::vector<std::string> cs;
    if (kind == 0) {  // fully random
      size_t n = pick(40);
      for (size_t k = 0; k < n; ++k) cs.push_back(random_char());
    } else {  // mutate one or two base strings
      cs = split_chars(base_[pick(base_.size())]);
      if (kind == 1) {
        auto more = split_chars(base_[pick(base_.size())]);
        cs.insert(cs.begin() + static_cast<long>(pick(cs.size() + 1)), more.begin(), more.end());
      }
      size_t edits = 1 + pick(6);
      for (size_t e = 0; e < edits; ++e) {
        size_t at = pick(cs.size() + 1);
        switch (pick(5)) {
          case 0: cs.insert(cs.begin() + static_cast<long>(at), random_char()); break;
          case 1: if (at < cs.size()) cs.erase(cs.begin() + static_cast<long>(at)); break;
          case 2: if (at < cs.size()) cs[at] = random_char(); break;
          case 3: {
            auto sp = split_chars(specials[pick(specials.size())]);
            cs.insert(cs.begin() + static_cast<long>(at), sp.begin(), sp.end());
            break;
          }
          case 4: if (at < cs.size()) cs.insert(cs.begin() + static_cast<long>(at), pick(8) + 1, cs[at]); break;
        }
      }
    }
    std::string s;
    for (const auto& c : cs) s += c;
    return s;
  }

 private:
  size_t pick(size_t n) { return n == 0 ? 0 : std::uniform_int_distribution<size_t>(0, n - 1)(rng_); }
  std::mt19937 rng_;
  std::vector<std::string> base_;
};

std::string env_or(const char* name, const std::string& def) {
  const char* v = std::getenv(name);
  return v && *v ? v : def;
}

TEST(TokenizerDifferential, RandomAndMutatedStringsMatchJsPort) {
  namespace fs = std::filesystem;
  const std::string npm = kvprime::test::npm_dir();
  const std::string js_pkg = npm + "/js/node_modules/@huggingface/tokenizers/package.json";
  if (!fs::exists(js_pkg) || !fs::exists(npm + "/gemma3/tokenizer.json"))
    GTEST_SKIP() << "the JS port or the tokenizers are absent: run scripts/fetch_tokenizers.sh";
  if (std::system("node --version > /dev/null 2>&1") != 0) GTEST_SKIP() << "node is not installed";

  uint32_t seed = static_cast<uint32_t>(std::stoul(env_or("KVPRIME_DIFF_SEED", "1234")));
  size_t count = std::stoul(env_or("KVPRIME_DIFF_COUNT", "600"));
  auto base = json::parse(kvprime::test::read_file(kvprime::test::fixture("tokenizer/strings.json")))
                  .get<std::vector<std::string>>();
  Gen gen(seed, base);
  std::vector<std::string> strings;
  for (size_t k = 0; k < count; ++k) strings.push_back(gen.make());

  kvprime::test::TempDir dir;
  kvprime::test::write_file(dir.file("strings.json"), json(strings).dump());
  std::string cmd = "node '" + kvprime::test::source_dir() + "/tools/js_goldens.mjs' --force --strings '" +
                    dir.file("strings.json") + "' --out '" + dir.path() + "' > '" + dir.file("node.log") +
                    "' 2>&1";
  int rc = std::system(cmd.c_str());
  ASSERT_EQ(rc, 0) << "js_goldens.mjs failed:\n" << kvprime::test::read_file(dir.file("node.log"));

  for (const std::string name : {"llama2", "llama3", "qwen3", "gemma3"}) {
    Tokenizer t = Tokenizer::from_file(npm + "/" + name + "/tokenizer.json", npm + "/" + name);
    json g = json::parse(kvprime::test::read_file(dir.file(name + ".golden.json")));
    int bad = 0;
    for (const auto& c : g["cases"]) {
      std::string text = c["text"].get<std::string>();
      auto ids = t.encode(text, true);
      auto ids_ns = t.encode(text, false);
      std::string d = t.decode(ids, false);
      bool ok = ids == c["ids"].get<std::vector<int32_t>>() &&
                ids_ns == c["ids_no_special"].get<std::vector<int32_t>>() &&
                d == c["decode"].get<std::string>();
      if (!ok && ++bad <= 5)
        ADD_FAILURE() << name << " (seed " << seed << ") text " << json(text).dump() << "\n  js  "
                      << c["ids"].dump() << " " << c["decode"].dump() << "\n  c++ " << json(ids).dump()
                      << " " << json(d).dump();
    }
    std::cout << "[ diff     ] " << name << ": " << (strings.size() - bad) << "/" << strings.size()
              << " random/mutated strings match the JS port (seed " << seed << ")\n";
  }
}

}  // namespace
