// Every committed fuzz input (fuzz/corpus/<target>/*: the minimized corpora; fuzz/regressions/
// <target>/*: inputs that once crashed, hung or leaked a foreign exception) through its target's
// function, in every build (the sanitizer build too). A target returns normally on valid input
// and on input it rejects with a kvprime::Error; anything else fails here.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "fuzz_targets.h"

namespace fs = std::filesystem;

namespace kvprime::fuzz {
// Test names and failure messages show the target's name, not its bytes.
void PrintTo(const Target& t, std::ostream* os) { *os << t.name; }
}  // namespace kvprime::fuzz

namespace {

std::vector<fs::path> inputs(const std::string& kind, const std::string& target) {
  std::vector<fs::path> out;
  const fs::path dir = fs::path(KVPRIME_SOURCE_DIR) / "fuzz" / kind / target;
  if (fs::is_directory(dir))
    for (const auto& e : fs::directory_iterator(dir))
      if (e.is_regular_file()) out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

class FuzzInputs : public ::testing::TestWithParam<kvprime::fuzz::Target> {};

TEST_P(FuzzInputs, CorpusAndRegressionsRunClean) {
  const auto& t = GetParam();
  const auto corpus = inputs("corpus", t.name);
  EXPECT_FALSE(corpus.empty()) << "fuzz/corpus/" << t.name << " has no seed inputs";
  auto all = corpus;
  for (const auto& p : inputs("regressions", t.name)) all.push_back(p);
  for (const auto& p : all) {
    std::ifstream in(p, std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    try {
      t.run(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
    } catch (const std::exception& e) {
      ADD_FAILURE() << p << ": " << e.what();
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Targets, FuzzInputs, ::testing::ValuesIn(kvprime::fuzz::targets()),
                         [](const ::testing::TestParamInfo<kvprime::fuzz::Target>& i) {
                           return std::string(i.param.name);
                         });

}  // namespace
