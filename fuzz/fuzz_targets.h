// The parsers' fuzz targets, one function per input format. Each takes arbitrary bytes and returns
// normally when they are valid or rejected with a kvprime::Error; anything else (a crash, a
// sanitizer report, another exception type escaping) is a bug. Used by the libFuzzer drivers
// (fuzz/fuzz_main.cpp, sanitizer builds only) and by tests/reliability/test_fuzz_regressions.cpp,
// which replays the committed corpora and crashers in every build.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace kvprime::fuzz {

void safetensors(const uint8_t* data, size_t size);      // a .safetensors file (header + data)
void config(const uint8_t* data, size_t size);           // a config.json, parsed and resolved
void tokenizer_load(const uint8_t* data, size_t size);   // a tokenizer.json, then encode + decode
void tokenizer_encode(const uint8_t* data, size_t size); // text through the demo model's tokenizer
void dataset(const uint8_t* data, size_t size);          // JSONL dataset text
void experiment_toml(const uint8_t* data, size_t size);  // an experiment TOML
void cache_file(const uint8_t* data, size_t size);       // a saved cache file

struct Target {
  const char* name;  // the folder name under fuzz/corpus and fuzz/regressions
  void (*run)(const uint8_t*, size_t);
};
const std::vector<Target>& targets();

}  // namespace kvprime::fuzz
