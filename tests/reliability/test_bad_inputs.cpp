// The bad-input matrix: malformed checkpoints (config.json, safetensors), tokenizer files, JSONL
// datasets, TOML experiments, results stores, cache files and command line arguments, each run
// through the `kvprime` CLI. Every case must end with exit status 1 (a kvprime::Error) or CLI11's
// usage error, print a message naming the file / argument at fault, and never crash (a signal) or
// leak a foreign exception ("unexpected error", exit 3).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <csignal>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "kvprime/core/compat.h"
#include "test_support.h"

namespace fs = std::filesystem;
using json = nlohmann::json;
using kvprime::test::read_file;
using kvprime::test::source_dir;
using kvprime::test::TempDir;
using kvprime::test::write_file;

namespace {

std::string demo() { return source_dir() + "/models/demo"; }
std::string q(const std::string& s) { return "'" + s + "'"; }  // paths here hold no quote

// A copy of the demo checkpoint in dir/model: small files copied (to be edited), the 27 MB weights
// linked unless `copy_weights`.
std::string model_copy(const std::string& dir, bool copy_weights = false) {
  const std::string m = dir + "/model";
  fs::create_directories(m);
  for (const char* f : {"config.json", "tokenizer.json", "tokenizer_config.json"})
    fs::copy_file(demo() + "/" + f, m + "/" + f);
  if (copy_weights) fs::copy_file(demo() + "/model.safetensors", m + "/model.safetensors");
  else fs::create_symlink(demo() + "/model.safetensors", m + "/model.safetensors");
  return m;
}

void edit_json(const std::string& path, const std::function<void(json&)>& edit) {
  json j = json::parse(read_file(path));
  edit(j);
  write_file(path, j.dump(1));
}

// A safetensors file's parts: header JSON and the bytes after it.
struct Parts {
  json header;
  std::string data;
};
Parts split(const std::string& bytes) {
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[i]);
  return {json::parse(bytes.substr(8, n)), bytes.substr(8 + n)};
}
std::string join(const std::string& header_text, const std::string& data) {
  std::string out(8, '\0');
  uint64_t n = header_text.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + header_text + data;
}
// Rewrites the weights of a model copy (made with copy_weights) through `edit`.
void edit_weights(const std::string& model, const std::function<void(Parts&)>& edit) {
  const std::string path = model + "/model.safetensors";
  Parts p = split(read_file(path));
  edit(p);
  write_file(path, join(p.header.dump(), p.data));
}

std::string experiment(const std::string& dir, const std::string& model, const std::string& dataset,
                       const std::string& extra_experiment = "", const std::string& conditions = "") {
  const std::string path = dir + "/e.toml";
  write_file(path, "[experiment]\nname = \"bad\"\nmodel = \"" + model + "\"\ndataset = \"" + dataset +
                       "\"\nsamples = 3\nout = \"out\"\n" + extra_experiment +
                       (conditions.empty() ? "[[condition]]\nname = \"oracle\"\nprefix = \"oracle\"\n"
                                           : conditions));
  return path;
}
std::string demo_data() { return source_dir() + "/data/demo/qa.jsonl"; }
std::string good_line(const std::string& id) {
  return json{{"id", id}, {"passage", "Water boils at 83 degrees on a high mountain."},
              {"query", "At what temperature does water boil up there?"}, {"answer", "83 degrees"}}
      .dump();
}
std::string jsonl(const std::string& dir, const std::string& text) {
  write_file(dir + "/d.jsonl", text);
  return dir + "/d.jsonl";
}
std::string cache_of(const std::string& dir, const std::string& model, const std::string& name) {
  const std::string out = dir + "/" + name;
  const auto r = kvprime::test::run_cli("cache build -m " + q(model) + " --passage 'Water boils at 83 degrees.' -o " + q(out));
  EXPECT_EQ(r.code, 0) << r.out;
  return out;
}

struct Case {
  const char* name;
  // Prepares files in the (fresh) directory and returns the CLI arguments.
  std::function<std::string(const std::string& dir)> setup;
  std::vector<std::string> expect;  // each must appear in the output ("$DIR" is replaced)
};

const std::vector<Case>& cases() {
  static const std::vector<Case> all = {
      // ---- checkpoint: config.json ----
      {"ModelDirMissing", [](const std::string& d) { return "generate -m " + q(d + "/nope") + " --ids 1,2"; },
       {"$DIR/nope"}},
      {"ConfigNotJson",
       [](const std::string& d) { auto m = model_copy(d); write_file(m + "/config.json", "{\"model_type\": \"llama\",");
                                   return "info " + q(m); },
       {"config.json"}},
      // A missing field takes Hugging Face's default (hidden_size 4096 for llama), as transformers
      // does; the weights then disagree with the config, and that is the error.
      {"ConfigMissingHiddenSize",
       [](const std::string& d) { auto m = model_copy(d); edit_json(m + "/config.json", [](json& j) { j.erase("hidden_size"); });
                                   return "generate -m " + q(m) + " --ids 1,2"; },
       {"config.json", "model.embed_tokens.weight", "[4096, 384]", "does not match"}},
      {"ConfigUnknownModelType",
       [](const std::string& d) { auto m = model_copy(d); edit_json(m + "/config.json", [](json& j) { j["model_type"] = "gpt99"; });
                                   return "info " + q(m); },
       {"config.json", "gpt99"}},
      {"ConfigNegativeLayers",
       [](const std::string& d) { auto m = model_copy(d); edit_json(m + "/config.json", [](json& j) { j["num_hidden_layers"] = -1; });
                                   return "info " + q(m); },
       {"config.json", "num_hidden_layers"}},
      {"ConfigHeadsDoNotDivide",
       [](const std::string& d) { auto m = model_copy(d); edit_json(m + "/config.json", [](json& j) { j["num_key_value_heads"] = 4; });
                                   return "info " + q(m); },
       {"config.json", "num_key_value_heads"}},
      {"ConfigDoesNotMatchWeights",
       [](const std::string& d) { auto m = model_copy(d); edit_json(m + "/config.json", [](json& j) { j["intermediate_size"] = 1000; });
                                   return "generate -m " + q(m) + " --ids 1,2"; },
       {"mlp", "1000"}},
      {"ConfigMoreLayersThanWeights",
       [](const std::string& d) { auto m = model_copy(d); edit_json(m + "/config.json", [](json& j) { j["num_hidden_layers"] = 9; });
                                   return "generate -m " + q(m) + " --ids 1,2"; },
       {"layers.8"}},
      // ---- checkpoint: model.safetensors ----
      {"WeightsMissing",
       [](const std::string& d) { auto m = model_copy(d); fs::remove(m + "/model.safetensors");
                                   return "generate -m " + q(m) + " --ids 1,2"; },
       {"model.safetensors"}},
      {"WeightsTruncated",
       [](const std::string& d) { auto m = model_copy(d, true); std::string b = read_file(m + "/model.safetensors");
                                   write_file(m + "/model.safetensors", b.substr(0, b.size() / 2));
                                   return "generate -m " + q(m) + " --ids 1,2"; },
       {"model.safetensors"}},
      {"WeightsHeaderLengthHuge",
       [](const std::string& d) { auto m = model_copy(d, true); std::string b = read_file(m + "/model.safetensors");
                                   for (int i = 0; i < 8; ++i) b[i] = '\xff';
                                   write_file(m + "/model.safetensors", b);
                                   return "generate -m " + q(m) + " --ids 1,2"; },
       {"model.safetensors", "header"}},
      {"WeightsHeaderNotJson",
       [](const std::string& d) { auto m = model_copy(d, true); std::string b = read_file(m + "/model.safetensors");
                                   b[9] = '#';
                                   write_file(m + "/model.safetensors", b);
                                   return "generate -m " + q(m) + " --ids 1,2"; },
       {"model.safetensors", "JSON"}},
      {"WeightsOffsetsBeyondFile",
       [](const std::string& d) { auto m = model_copy(d, true);
                                   edit_weights(m, [](Parts& p) { p.header["lm_head.weight"]["data_offsets"][1] = p.data.size() + 64; });
                                   return "generate -m " + q(m) + " --ids 1,2"; },
       {"model.safetensors", "lm_head.weight"}},
      {"WeightsUnknownDtype",
       [](const std::string& d) { auto m = model_copy(d, true);
                                   edit_weights(m, [](Parts& p) { p.header["lm_head.weight"]["dtype"] = "Q4"; });
                                   return "generate -m " + q(m) + " --ids 1,2"; },
       {"model.safetensors", "lm_head.weight", "Q4"}},
      {"WeightsShapeDisagreesWithBytes",
       [](const std::string& d) { auto m = model_copy(d, true);
                                   edit_weights(m, [](Parts& p) { p.header["model.norm.weight"]["shape"] = json::array({385}); });
                                   return "generate -m " + q(m) + " --ids 1,2"; },
       {"model.safetensors", "model.norm.weight"}},
      {"WeightsTensorMissing",
       [](const std::string& d) { auto m = model_copy(d, true);
                                   edit_weights(m, [](Parts& p) { p.header.erase("model.layers.3.self_attn.q_proj.weight"); });
                                   return "generate -m " + q(m) + " --ids 1,2"; },
       {"model.layers.3.self_attn.q_proj.weight"}},
      {"WeightsGiveANonFiniteCache",
       [](const std::string& d) { auto m = model_copy(d, true);
                                   edit_weights(m, [](Parts& p) {  // every float16 embedding = +inf
                                     const auto& o = p.header["model.embed_tokens.weight"]["data_offsets"];
                                     for (size_t i = o[0].get<size_t>(); i < o[1].get<size_t>(); i += 2) {
                                       p.data[i] = '\x00';
                                       p.data[i + 1] = '\x7c';
                                     }
                                   });
                                   return "cache build -m " + q(m) + " --passage 'Water boils.' -o " + q(d + "/c.safetensors"); },
       {"NaN or infinity", "nothing was written to $DIR/c.safetensors"}},
      // ---- tokenizer.json ----
      {"TokenizerNotJson",
       [](const std::string& d) { auto m = model_copy(d); write_file(m + "/tokenizer.json", "[1, 2");
                                   return "tokenize -t " + q(m) + " hello"; },
       {"tokenizer.json"}},
      {"TokenizerUnknownModel",
       [](const std::string& d) { auto m = model_copy(d); edit_json(m + "/tokenizer.json", [](json& j) { j["model"]["type"] = "Unigram2"; });
                                   return "tokenize -t " + q(m) + " hello"; },
       {"tokenizer.json", "Unigram2"}},
      {"TokenizerMissing",
       [](const std::string& d) { auto m = model_copy(d); fs::remove(m + "/tokenizer.json");
                                   return "tokenize -t " + q(m) + " hello"; },
       {"tokenizer.json"}},
      {"TokenizeInvalidUtf8", [](const std::string&) { return "tokenize -t " + q(demo()) + " \"$(printf 'a\\377b')\""; },
       {"UTF-8"}},
      // ---- token ids on the command line ----
      {"IdBeyondVocabulary", [](const std::string&) { return "generate -m " + q(demo()) + " --ids 1,999999"; },
       {"999999", "out of range [0, 4096)"}},
      {"IdsNotNumbers", [](const std::string&) { return "generate -m " + q(demo()) + " --ids 1,x"; },
       {"--ids"}},
      {"EmptyContinuation",
       [](const std::string&) { return "score -m " + q(demo()) + " --context-ids 1 --continuation-ids ''"; },
       {"--continuation-ids"}},
      {"UnknownDtype", [](const std::string&) { return "generate -m " + q(demo()) + " --dtype float8 --ids 1"; },
       {"float8"}},
      {"MalformedDevice", [](const std::string&) { return "generate -m " + q(demo()) + " --device cuda:x --ids 1"; },
       {"cuda:x"}},
      // ---- JSONL datasets ----
      {"JsonlBadLine",
       [](const std::string& d) { return "run -q " + q(experiment(d, demo(), jsonl(d, good_line("a") + "\n{\"id\": \"b\", \n"))); },
       {"d.jsonl:2"}},
      {"JsonlMissingAnswer",
       [](const std::string& d) { json j = json::parse(good_line("a")); j.erase("answer");
                                   return "run -q " + q(experiment(d, demo(), jsonl(d, j.dump() + "\n"))); },
       {"d.jsonl:1", "answer"}},
      {"JsonlEmptyAnswer",
       [](const std::string& d) { json j = json::parse(good_line("a")); j["answer"] = "";
                                   return "run -q " + q(experiment(d, demo(), jsonl(d, j.dump() + "\n"))); },
       {"d.jsonl:1", "answer"}},
      {"JsonlDuplicateId",
       [](const std::string& d) { return "run -q " + q(experiment(d, demo(), jsonl(d, good_line("a") + "\n" + good_line("a") + "\n"))); },
       {"d.jsonl:2", "'a'"}},
      {"JsonlNotAnObject",
       [](const std::string& d) { return "run -q " + q(experiment(d, demo(), jsonl(d, "[1, 2, 3]\n"))); },
       {"d.jsonl:1"}},
      {"JsonlEmpty",
       [](const std::string& d) { return "run -q " + q(experiment(d, demo(), jsonl(d, "\n\n"))); },
       {"d.jsonl"}},
      {"JsonlMissing",
       [](const std::string& d) { return "run -q " + q(experiment(d, demo(), d + "/none.jsonl")); },
       {"none.jsonl"}},
      // ---- TOML experiments ----
      {"TomlSyntaxError",
       [](const std::string& d) { write_file(d + "/e.toml", "[experiment]\nname = \"x\"\nmodel = \n"); return "run -q " + q(d + "/e.toml"); },
       {"e.toml:3"}},
      {"TomlUnknownField",
       [](const std::string& d) { return "run -q " + q(experiment(d, demo(), demo_data(), "bacth = 4\n")); },
       {"e.toml", "bacth"}},
      {"TomlMissingModel",
       [](const std::string& d) { write_file(d + "/e.toml", "[experiment]\nname = \"x\"\ndataset = \"" + demo_data() + "\"\n");
                                   return "run -q " + q(d + "/e.toml"); },
       {"e.toml", "model"}},
      {"TomlBatchZero",
       [](const std::string& d) { return "run -q " + q(experiment(d, demo(), demo_data(), "batch = 0\n")); },
       {"e.toml", "batch"}},
      {"TomlMeaninglessCombination",
       [](const std::string& d) { return "run -q " + q(experiment(d, demo(), demo_data(), "",
                                   "[[condition]]\nname = \"x\"\nprefix = \"oracle\"\ncontext = \"full\"\nkeys = \"bare\"\n")); },
       {"e.toml", "'x'", "truncated"}},
      {"TomlBadDtype",
       [](const std::string& d) { return "run -q " + q(experiment(d, demo(), demo_data(), "dtype = \"float8\"\n")); },
       {"float8"}},
      {"TomlModelWithoutWeights",
       [](const std::string& d) { auto m = model_copy(d); fs::remove(m + "/model.safetensors");
                                   return "run -q " + q(experiment(d, m, demo_data())); },
       {"model.safetensors"}},
      // ---- results stores ----
      {"StoreNotSqlite",
       [](const std::string& d) { fs::create_directories(d + "/out"); write_file(d + "/out/results.sqlite", std::string(8192, 'x'));
                                   return "run -q " + q(experiment(d, demo(), demo_data())); },
       {"results.sqlite", "not a database"}},
      {"ReportWithoutStore", [](const std::string& d) { return "report " + q(experiment(d, demo(), demo_data())); },
       {"results.sqlite"}},
      {"OutputPathIsAFile",
       [](const std::string& d) { write_file(d + "/out", "a file where the output directory should be");
                                   return "run -q " + q(experiment(d, demo(), demo_data())); },
       {"$DIR/out"}},
      // ---- cache files ----
      {"CacheTruncated",
       [](const std::string& d) { auto c = cache_of(d, demo(), "c.safetensors"); std::string b = read_file(c);
                                   write_file(c, b.substr(0, b.size() - 100)); return "cache inspect " + q(c); },
       {"c.safetensors"}},
      {"CacheBitFlip",
       [](const std::string& d) { auto c = cache_of(d, demo(), "c.safetensors"); std::string b = read_file(c);
                                   Parts p = split(b); const auto& k = p.header["k.3"]["data_offsets"];
                                   b[b.size() - p.data.size() + (k[0].get<size_t>() + k[1].get<size_t>()) / 2] ^= 1;
                                   write_file(c, b); return "cache inspect " + q(c); },
       {"c.safetensors", "corrupted", "checksum"}},
      {"CacheIsWeights", [](const std::string&) { return "cache inspect " + q(demo() + "/model.safetensors"); },
       {"model.safetensors", "not a kvprime cache"}},
      {"CachesOfDifferentModels",
       [](const std::string& d) { auto m = model_copy(d, true);
                                   edit_weights(m, [](Parts& p) { p.data[p.data.size() - 1] ^= 1; });  // other weights
                                   auto a = cache_of(d, demo(), "a.safetensors"), b = cache_of(d, m, "b.safetensors");
                                   return "cache diff " + q(a) + " " + q(b); },
       {"different models"}},
      // ---- command line ----
      {"UnknownSubcommand", [](const std::string&) { return std::string("frobnicate"); }, {"frobnicate", "run"}},
      {"ExplainSampleBeyondDataset",
       [](const std::string& d) { return "explain " + q(experiment(d, demo(), demo_data())) + " --sample 999"; },
       {"999"}},
      {"NegativeSampleCount",
       [](const std::string& d) { return "run -q " + q(experiment(d, demo(), demo_data())) + " --samples -3"; },
       {"--samples", "-3"}},
  };
  return all;
}

class BadInput : public ::testing::TestWithParam<size_t> {};

TEST_P(BadInput, FailsWithAClearErrorAndNoCrash) {
  const Case& c = cases()[GetParam()];
  TempDir tmp;
  const std::string args = c.setup(tmp.path());
  const auto r = kvprime::test::run_cli(args);
  SCOPED_TRACE("kvprime " + args + "\n" + r.out);
  EXPECT_EQ(r.signal, 0) << "crashed";
  EXPECT_NE(r.code, 0) << "bad input was accepted";
  EXPECT_NE(r.code, 3) << "a foreign exception escaped (\"unexpected error\"): turn it into a kvprime::Error";
  EXPECT_EQ(r.out.find("unexpected error"), std::string::npos);
  EXPECT_LT(r.out.size(), 20000u) << "an error is a message, not a dump";
  for (std::string e : c.expect) {
    const auto at = e.find("$DIR");
    if (at != std::string::npos) e.replace(at, 4, tmp.path());
    EXPECT_NE(r.out.find(e), std::string::npos) << "the message does not mention '" << e << "'";
  }
}

INSTANTIATE_TEST_SUITE_P(Matrix, BadInput, ::testing::Range<size_t>(0, cases().size()),
                         [](const ::testing::TestParamInfo<size_t>& i) { return std::string(cases()[i.param].name); });

TEST(BadInputMatrix, CoversAtLeastThirtyCasesAcrossEveryFormat) {
  EXPECT_GE(cases().size(), 30u);
  // Every format of the issue has cases: the prefixes of the names above.
  for (const char* prefix : {"Config", "Weights", "Tokenizer", "Jsonl", "Toml", "Store", "Cache"}) {
    int n = 0;
    for (const auto& c : cases()) n += std::string(c.name).rfind(prefix, 0) == 0;
    EXPECT_GE(n, 1) << prefix;
  }
}

}  // namespace

namespace {

// Debian's LibTorch 1.13 has no float16 matrix multiply on the CPU; asking for it is an error that
// says so before any work, not LibTorch's "addmm_impl_cpu_ not implemented" with a C++ stack.
TEST(BadInputMatrix, UnsupportedCpuDtypeIsNamed) {
  if (kvprime::compat::cpu_matmul_supported(at::kHalf))
    GTEST_SKIP() << "this LibTorch multiplies float16 on the CPU";
  const auto r = kvprime::test::run_cli("generate -m " + q(demo()) + " --dtype float16 --ids 1,2");
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find("float16 on the CPU is not supported"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("frame #"), std::string::npos) << "no C++ stack in a message: " << r.out;
}

}  // namespace
