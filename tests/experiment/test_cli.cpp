// The command line end to end: run / explain / report on a small experiment, tokenize, cache
// build / inspect / diff, and errors that name the file, line and field with exit code 1.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <sys/wait.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "test_support.h"

using kvprime::test::TempDir;

namespace {

using Result = kvprime::test::CliResult;

Result sh(const std::string& args) { return kvprime::test::run_cli(args); }

std::string demo_toml(const std::string& dir) {
  return kvprime::test::write_demo_experiment(dir, "cli", "out", 4,
                                              "[[condition]]\nname = \"surrogate\"\nprefix = \"surrogate\"\n");
}

TEST(Cli, RunExplainReport) {
  TempDir tmp;
  const std::string toml = demo_toml(tmp.path());
  Result e = sh("explain " + toml + " --sample 1");
  EXPECT_EQ(e.code, 0) << e.out;
  EXPECT_NE(e.out.find("surrogate: build [BOS]["), std::string::npos) << e.out;
  Result r = sh("run -q " + toml);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("computed"), std::string::npos) << r.out;
  for (const char* f : {"results.sqlite", "report.md", "report.html", "results.csv", "summary.csv"})
    EXPECT_TRUE(std::filesystem::exists(tmp.path() + "/out/" + f)) << f;
  Result again = sh("run -q " + toml);
  EXPECT_EQ(again.code, 0) << again.out;
  EXPECT_NE(again.out.find(" 0 computed"), std::string::npos) << again.out;  // resumed: nothing left
  std::filesystem::remove(tmp.path() + "/out/report.md");
  Result rep = sh("report " + toml);
  EXPECT_EQ(rep.code, 0) << rep.out;
  EXPECT_TRUE(std::filesystem::exists(tmp.path() + "/out/report.md"));
}

TEST(Cli, ExperimentErrorsNameFileLineAndField) {
  TempDir tmp;
  const std::string path = tmp.file("bad.toml");
  std::ofstream(path) << "[experiment]\nname = \"x\"\nmodel = \"m\"\ndataset = \"d\"\n"
                      << "[[condition]]\nname = \"c\"\nprefix = \"oracel\"\n";
  Result r = sh("run " + path);
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find("bad.toml:7"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("condition[0].prefix"), std::string::npos) << r.out;
  Result missing = sh("run " + tmp.file("nope.toml"));
  EXPECT_NE(missing.code, 0);
}

TEST(Cli, TokenizeAndCacheFiles) {
  TempDir tmp;
  const std::string model = kvprime::test::source_dir() + "/models/demo";
  Result t = sh("tokenize -t " + model + " --json \"Hello world\"");
  ASSERT_EQ(t.code, 0) << t.out;
  EXPECT_EQ(t.out.rfind("{\"ids\":[1,", 0), 0u) << t.out;  // BOS first
  const std::string a = tmp.file("a.safetensors"), b = tmp.file("b.safetensors");
  ASSERT_EQ(sh("cache build -m " + model + " --passage \"Water boils at 83 degrees.\" -o " + a).code, 0);
  ASSERT_EQ(sh("cache build -m " + model + " --passage \"Water boils at 83 degrees.\" --prefix \"boiling\" -o " + b).code, 0);
  Result i = sh("cache inspect " + b + " -t " + model);
  EXPECT_EQ(i.code, 0) << i.out;
  EXPECT_NE(i.out.find("prefix = \"boiling\""), std::string::npos) << i.out;
  Result d = sh("cache diff " + a + " " + b);
  EXPECT_EQ(d.code, 0) << d.out;
  EXPECT_NE(d.out.find("token ids equal, positions equal"), std::string::npos) << d.out;
  // A file that is not a cache: a clear error naming it.
  Result bad = sh("cache diff " + a + " " + model + "/model.safetensors");
  EXPECT_EQ(bad.code, 1);
  EXPECT_NE(bad.out.find("is not a kvprime cache"), std::string::npos) << bad.out;
}

TEST(Cli, BenchRunsTheSeedPipelineChecks) {
  TempDir tmp;
  const std::string root = kvprime::test::source_dir();
  Result b = sh("bench -m " + root + "/models/demo --data " + root + "/data/demo/qa.jsonl --samples 3 --seed-samples 1 "
                "--batch 2 --out " + tmp.file("store") + " --json-out " + tmp.file("b.json"));
  ASSERT_EQ(b.code, 0) << b.out;  // exit 0: every check within its bound
  EXPECT_NE(b.out.find("score_mutates no"), std::string::npos) << b.out;
  auto j = nlohmann::json::parse(kvprime::test::read_file(tmp.file("b.json")));
  // Of the first 3 demo samples those with answers of >= 2 tokens (the seed skips the first one).
  const int64_t n = j["pipeline"]["samples"];
  EXPECT_GE(n, 2);
  EXPECT_LE(n, 3);
  ASSERT_EQ(static_cast<int64_t>(j["nll"].size()), n);
  // The batched pipeline's bare NLL of the checked sample equals the seed code path's (float32:
  // the two differ only in matmul shapes).
  const std::string id = j["checks"]["sample"];
  ASSERT_TRUE(j["nll"].contains(id)) << id;
  const double seed = j["checks"]["nll_cached"], pipe = j["nll"][id]["bare"];
  EXPECT_NEAR(pipe, seed, 1e-5 * std::abs(seed)) << id;
  for (const auto& [sid, conds] : j["nll"].items()) {
    EXPECT_TRUE(conds.contains("bare") && conds.contains("primed")) << sid;
  }
}

}  // namespace
