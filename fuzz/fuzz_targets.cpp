#include "fuzz_targets.h"

#include <unistd.h>

#include <cstdio>
#include <optional>
#include <string_view>

#include "kvprime/cache/cache_file.h"
#include "kvprime/core/error.h"
#include "kvprime/experiment/dataset.h"
#include "kvprime/experiment/spec.h"
#include "kvprime/io/safetensors.h"
#include "kvprime/model/config.h"
#include "kvprime/tokenizer/tokenizer.h"

namespace kvprime::fuzz {
namespace {

std::string_view text(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// File formats are read through their path (mmap): one scratch file per process, rewritten per
// input and removed at exit.
class Scratch {
 public:
  explicit Scratch(const char* suffix)
      : path_("/tmp/kvprime-fuzz-" + std::to_string(getpid()) + suffix) {}
  ~Scratch() { std::remove(path_.c_str()); }
  const std::string& write(const uint8_t* data, size_t size) {
    FILE* f = std::fopen(path_.c_str(), "wb");
    if (!f) throw std::runtime_error("fuzz: cannot write " + path_);
    if (size) std::fwrite(data, 1, size, f);
    std::fclose(f);
    return path_;
  }

 private:
  std::string path_;
};

// Runs `f`; a kvprime::Error is the expected answer to bad input.
template <typename F>
void expect_clean(F&& f) {
  try {
    f();
  } catch (const Error&) {
  }
}

}  // namespace

void safetensors(const uint8_t* data, size_t size) {
  static Scratch scratch(".safetensors");
  const std::string& path = scratch.write(data, size);
  expect_clean([&] {
    SafeTensorsFile f = SafeTensorsFile::open(path);
    for (const TensorInfo& info : f.tensors()) {
      at::Tensor t = f.tensor(info.name);
      if (t.numel() > 0 && at::isFloatingType(t.scalar_type())) (void)t.to(at::kDouble).sum().item<double>();
      else if (t.numel() > 0) (void)t.to(at::kLong).sum().item<int64_t>();
    }
  });
}

void config(const uint8_t* data, size_t size) {
  const nlohmann::json j = nlohmann::json::parse(text(data, size), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return;  // not JSON: the file reader's own error, covered by the tests
  expect_clean([&] { (void)resolve_config(parse_raw_config(j, "fuzz/config.json")); });
}

void tokenizer_load(const uint8_t* data, size_t size) {
  expect_clean([&] {
    Tokenizer t = Tokenizer::from_json(text(data, size));
    const std::vector<int32_t> ids = t.encode("Hello world, 123 \xC3\xBCn\xC3\xAF  <s> x");
    (void)t.decode(ids);
  });
}

void tokenizer_encode(const uint8_t* data, size_t size) {
  static const Tokenizer t = Tokenizer::from_file(KVPRIME_SOURCE_DIR "/models/demo/tokenizer.json",
                                                  KVPRIME_SOURCE_DIR "/models/demo/tokenizer_config.json");
  expect_clean([&] {
    const std::vector<int32_t> ids = t.encode(text(data, size));
    const std::string back = t.decode(ids);
    (void)t.encode_with_offsets(text(data, size), false);
    (void)back;
  });
}

void dataset(const uint8_t* data, size_t size) {
  expect_clean([&] {
    DatasetOptions o;
    o.required.emplace("surrogates", "fuzz");
    (void)parse_dataset(std::string(text(data, size)), "fuzz.jsonl");
    (void)parse_dataset(std::string(text(data, size)), "fuzz.jsonl", o);
  });
}

void experiment_toml(const uint8_t* data, size_t size) {
  expect_clean([&] {
    ExperimentSpec s = parse_experiment(std::string(text(data, size)), "fuzz.toml", "/nonexistent");
    (void)s.results_identity();
  });
}

void cache_file(const uint8_t* data, size_t size) {
  static Scratch scratch(".kvcache.safetensors");
  const std::string& path = scratch.write(data, size);
  expect_clean([&] { (void)load_cache(path); });
}

const std::vector<Target>& targets() {
  static const std::vector<Target> all = {
      {"safetensors", safetensors},   {"config", config},
      {"tokenizer_load", tokenizer_load}, {"tokenizer_encode", tokenizer_encode},
      {"dataset", dataset},           {"experiment_toml", experiment_toml},
      {"cache_file", cache_file},
  };
  return all;
}

}  // namespace kvprime::fuzz
