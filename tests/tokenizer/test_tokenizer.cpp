// Unit tests of the tokenizer's pieces on small synthetic tokenizer.json files, plus smoke tests
// of the four real tokenizers (skipped when scripts/fetch_tokenizers.sh has not been run).
#include <gtest/gtest.h>

#include <filesystem>

#include "kvprime/core/error.h"
#include "kvprime/tokenizer/tokenizer.h"
#include "test_support.h"

namespace {

using kvprime::Tokenizer;
using nlohmann::json;

std::string real_path(const std::string& name) {
  return kvprime::test::npm_dir() + "/" + name + "/tokenizer.json";
}

#define REQUIRE_REAL(name)                                                                    \
  if (!std::filesystem::exists(real_path(name)))                                              \
    GTEST_SKIP() << real_path(name) << " is absent: run scripts/fetch_tokenizers.sh";

TEST(TokenizerReal, Smoke) {
  REQUIRE_REAL("llama3");
  Tokenizer t = Tokenizer::from_file(real_path("llama3"));
  auto ids = t.encode("Hello world");
  ASSERT_EQ(ids, (std::vector<int32_t>{9906, 1917}));
}

}  // namespace
