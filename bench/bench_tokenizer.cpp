// Encode throughput of kvprime's tokenizer (single thread) on a deterministic ~4 MiB corpus.
//
//   bench_tokenizer [--npm-dir DIR] [--names llama2,llama3,qwen3,gemma3] [--mib 4]
//                   [--corpus-out FILE.json] [--json-out FILE.json]
//
// The corpus (a JSON list of documents) is built from tests/fixtures/tokenizer/strings.json with a
// fixed generator; --corpus-out writes it so tools/bench_tokenizer_hf.py can time HF tokenizers
// (Rust) on exactly the same text. Each document is encoded with add_special_tokens=true.
// Reported: load time, first pass (cold word cache) and best of 3 warm passes, MB/s = 1e6 bytes/s.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "kvprime/tokenizer/tokenizer.h"

using nlohmann::json;

namespace {

std::string read(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) throw std::runtime_error("cannot read " + p);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

struct Lcg {
  uint64_t x;
  uint64_t next() {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    return x >> 33;
  }
  size_t pick(size_t n) { return static_cast<size_t>(next() % n); }
};

std::vector<std::string> make_corpus(size_t bytes) {
  auto strings = json::parse(read(std::string(KVPRIME_SOURCE_DIR) + "/tests/fixtures/tokenizer/strings.json"))
                     .get<std::vector<std::string>>();
  std::vector<std::string> words;
  for (const auto& s : strings) {
    size_t i = 0;
    while (i < s.size()) {
      size_t j = s.find(' ', i);
      if (j == std::string::npos) j = s.size();
      if (j > i) words.push_back(s.substr(i, j - i));
      i = j + 1;
    }
  }
  static const char* seps[] = {" ", " ", " ", " ", " ", " ", ", ", ". ", "\n", "\n\n", "  ", "\t"};
  Lcg rng{42};
  std::vector<std::string> docs;
  size_t total = 0;
  while (total < bytes) {
    size_t target = 1000 + rng.pick(7000);
    std::string d;
    while (d.size() < target) {
      // Mostly words of the pool, sometimes a whole string (special tokens, emoji, code...).
      if (rng.pick(20) == 0) d += strings[rng.pick(strings.size())];
      else d += words[rng.pick(words.size())];
      d += seps[rng.pick(sizeof seps / sizeof *seps)];
    }
    total += d.size();
    docs.push_back(std::move(d));
  }
  return docs;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  std::string npm = std::string(KVPRIME_SOURCE_DIR) + "/third_party/npm";
  if (const char* e = std::getenv("KVPRIME_NPM_DIR")) npm = e;
  std::string names = "llama2,llama3,qwen3,gemma3", corpus_out, json_out;
  double mib = 4;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i], v = argv[i + 1];
    if (a == "--npm-dir") npm = v;
    else if (a == "--names") names = v;
    else if (a == "--mib") mib = std::stod(v);
    else if (a == "--corpus-out") corpus_out = v;
    else if (a == "--json-out") json_out = v;
    else {
      std::cerr << "unknown option " << a << "\n";
      return 2;
    }
  }
  auto docs = make_corpus(static_cast<size_t>(mib * 1024 * 1024));
  size_t bytes = 0;
  for (const auto& d : docs) bytes += d.size();
  if (!corpus_out.empty()) {
    std::ofstream(corpus_out) << json(docs).dump() << "\n";
    std::cout << "corpus: " << docs.size() << " documents, " << bytes << " bytes -> " << corpus_out << "\n";
  }
  json results = json::object();
  results["corpus_bytes"] = bytes;
  results["documents"] = docs.size();
  std::stringstream ns(names);
  std::string name;
  std::printf("%-8s %8s %10s %12s %12s %12s\n", "name", "load_s", "tokens", "cold_MB/s", "warm_MB/s", "Mtok/s");
  while (std::getline(ns, name, ',')) {
    std::string path = npm + "/" + name + "/tokenizer.json";
    auto t0 = std::chrono::steady_clock::now();
    kvprime::Tokenizer tok = kvprime::Tokenizer::from_file(path, npm + "/" + name);
    double load = seconds_since(t0);
    size_t ntok = 0;
    t0 = std::chrono::steady_clock::now();
    for (const auto& d : docs) ntok += tok.encode(d).size();
    double cold = seconds_since(t0);
    double warm = 1e30;
    for (int rep = 0; rep < 3; ++rep) {
      t0 = std::chrono::steady_clock::now();
      size_t n = 0;
      for (const auto& d : docs) n += tok.encode(d).size();
      warm = std::min(warm, seconds_since(t0));
      if (n != ntok) std::cerr << "nondeterministic token count!\n";
    }
    std::printf("%-8s %8.2f %10zu %12.2f %12.2f %12.2f\n", name.c_str(), load, ntok, bytes / cold / 1e6,
                bytes / warm / 1e6, ntok / warm / 1e6);
    results[name] = {{"load_s", load}, {"tokens", ntok}, {"cold_MBps", bytes / cold / 1e6}, {"warm_MBps", bytes / warm / 1e6}};
  }
  if (!json_out.empty()) std::ofstream(json_out) << results.dump(2) << "\n";
  return 0;
}
