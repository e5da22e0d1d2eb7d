// Shared by the seed ports (test_seed_demo.cpp, test_seed_structural.cpp, test_seed_tokenizers.cpp):
// the seed's texts, and the small measurements its checks make (per-layer key/value differences,
// a full forward over identical ids, a random cache like the seed's DynamicCache of randn).
//
// Tolerances used across the three files (each test repeats the reason where it uses one):
//  * kF32Tol = 1e-5, relative to the reference tensor's largest magnitude (max_rel_diff): two float32
//    forwards over the same tokens but different sequence lengths or cache layouts differ only in
//    the reduction order of their matmuls (a few float32 ulps, ~1e-7, accumulated over a handful
//    of layers to ~1e-6). The seed's 0.05 - 0.15 were for 4-bit weights whose dequantised GEMM
//    depends on the sequence length.
//  * kEps32 = 2^-24, the float32 unit roundoff, and kEps16 = 2^-11 for float16: the RoPE tests bound
//    their errors by counting roundings, not by a guessed constant.
#pragma once

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <sstream>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kvprime/cache/kv_cache.h"
#include "kvprime/model/config.h"
#include "kvprime/model/model.h"
#include "kvprime/prime/build.h"
#include "kvprime/tokenizer/tokenizer.h"
#include "test_support.h"

namespace kvprime::seedtest {

// The seed's fixed inputs.
inline const std::string kPassage =
    "The Amazon rainforest produces approximately 20 percent of the world's oxygen. "
    "It covers over 5.5 million square kilometers and is home to roughly 10 percent "
    "of all species on Earth.";
inline const std::string kQuery = "how much oxygen does the amazon produce";
inline const std::string kAnswer = "approximately 20 percent";
inline const std::string kWrongAnswer = "purple elephants flying sideways";

constexpr double kF32Tol = 1e-5;
constexpr double kEps32 = 5.9604644775390625e-08;  // 2^-24
constexpr double kEps16 = 4.8828125e-04;           // 2^-11

// The seed's printouts: measured values go to stdout when KVPRIME_SEED_VERBOSE is set (the
// assertions carry them in their failure messages either way).
template <typename... Args>
void note(const Args&... args) {
  if (!std::getenv("KVPRIME_SEED_VERBOSE")) return;
  std::ostringstream os;
  os << "  [seed] ";
  (os << ... << args);
  std::cout << os.str() << std::endl;
}

inline TokenIds cat_ids(TokenIds a, const TokenIds& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

inline TokenIds slice_ids(const TokenIds& ids, size_t begin, size_t end = SIZE_MAX) {
  end = std::min(end, ids.size());
  return begin >= end ? TokenIds{} : TokenIds(ids.begin() + begin, ids.begin() + end);
}

// A cache's token ids of row 0 from slot `from` on.
inline TokenIds cache_ids(const KVCache& c, int64_t from = 0) {
  TokenIds out;
  at::Tensor t = c.token_ids()[0].to(at::kCPU);
  for (int64_t s = from; s < t.size(0); ++s) out.push_back(static_cast<int32_t>(t[s].item<int64_t>()));
  return out;
}

inline RawConfig raw_config(const std::string& dir) {
  std::ifstream f(dir + "/config.json");
  return parse_raw_config(nlohmann::json::parse(f), dir + "/config.json");
}

// Per-layer max |a - b| / max |b| of keys (or values) over slots [from, S).
inline std::vector<double> layer_rel_diffs(const KVCache& a, const KVCache& b, bool keys,
                                           int64_t from = 0) {
  std::vector<double> out;
  for (int64_t il = 0; il < a.n_layer(); ++il) {
    const at::Tensor& x = keys ? a.key(il) : a.value(il);
    const at::Tensor& y = keys ? b.key(il) : b.value(il);
    out.push_back(kvprime::test::max_rel_diff(x.slice(2, from), y.slice(2, from)));
  }
  return out;
}

// The seed's value divergence: ||a - b||_2 / sqrt(numel), per layer, over slots [from, S).
inline std::vector<double> layer_rms_diffs(const KVCache& a, const KVCache& b, bool keys,
                                           int64_t from = 0) {
  std::vector<double> out;
  for (int64_t il = 0; il < a.n_layer(); ++il) {
    at::Tensor x = (keys ? a.key(il) : a.value(il)).slice(2, from).to(at::kDouble);
    at::Tensor y = (keys ? b.key(il) : b.value(il)).slice(2, from).to(at::kDouble);
    out.push_back((x - y).norm().item<double>() / std::sqrt(static_cast<double>(x.numel())));
  }
  return out;
}

inline double rms(const at::Tensor& t) {
  at::Tensor d = t.to(at::kDouble);
  return d.norm().item<double>() / std::sqrt(static_cast<double>(d.numel()));
}

// One forward over `ids` (positions 0..T-1, fresh cache) and the seed's NLL definition: the mean
// over the last `answer_len` tokens, the first of them excluded.
inline double full_forward_nll(const Model& model, const TokenIds& ids, int64_t answer_len) {
  const int64_t T = static_cast<int64_t>(ids.size());
  at::Tensor t = at::empty({1, T}, at::kLong);
  for (int64_t i = 0; i < T; ++i) t[0][i] = static_cast<int64_t>(ids[i]);
  KVCache scratch = model.new_cache(1);
  at::Tensor logp =
      at::log_softmax(model.forward(t, at::arange(T, at::kLong).unsqueeze(0), scratch)[0].to(at::kDouble), -1);
  const int64_t a0 = T - answer_len;
  double sum = 0;
  for (int64_t i = a0 + 1; i < T; ++i) sum -= logp[i - 1][ids[i]].item<double>();
  return sum / static_cast<double>(answer_len - 1);
}

// The seed's `DynamicCache` of torch.randn keys/values for every layer: [1, n_head_kv, S, head_dim]
// in `dtype`, made for `model` (so surgery accepts its RoPE), at the given slot positions.
inline KVCache random_cache(const Model& model, at::ScalarType dtype, const std::vector<int64_t>& positions,
                            uint64_t seed) {
  const ModelIdentity& id = model.identity();
  const int64_t S = static_cast<int64_t>(positions.size());
  auto g = at::make_generator<at::CPUGeneratorImpl>(seed);
  std::vector<at::Tensor> k, v;
  for (int64_t il = 0; il < id.n_layer; ++il) {
    k.push_back(at::randn({1, id.n_head_kv, S, id.head_dim}, g, at::TensorOptions().dtype(at::kFloat)).to(dtype));
    v.push_back(at::randn({1, id.n_head_kv, S, id.head_dim}, g, at::TensorOptions().dtype(at::kFloat)).to(dtype));
  }
  at::Tensor pos = at::tensor(positions, at::kLong).unsqueeze(0);
  return KVCache::from_tensors(id, k, v, pos, at::full({1, S}, -1, at::kLong),
                               at::ones({1, S}, at::kBool), "seed random_cache");
}

inline std::vector<int64_t> iota_positions(int64_t n, int64_t first = 0) {
  std::vector<int64_t> p(n);
  for (int64_t i = 0; i < n; ++i) p[i] = first + i;
  return p;
}

// The demo model's byte-level BPE tokenizer.json (models/demo), cut to its first `n_ids` ids: the
// vocabulary entries below n_ids and the merges whose result is below n_ids (ids of a trained BPE
// follow merge rank, so this is the tokenizer after its first n_ids - 260 merges). It keeps the
// post-processor (BOS <s> = 1), the ByteLevel pre-tokenizer and decoder, so it behaves like the full
// tokenizer at the seed's token boundaries ("Document" = 394 is one token, "Ġthe" = 272 takes the
// space before it) while fitting the parity fixtures' 512-entry embeddings.
inline Tokenizer demo_tokenizer_cut(int64_t n_ids) {
  const std::string dir = kvprime::test::source_dir() + "/models/demo/";
  nlohmann::json j = nlohmann::json::parse(kvprime::test::read_file(dir + "tokenizer.json"));
  nlohmann::json vocab = nlohmann::json::object();
  for (auto it = j["model"]["vocab"].begin(); it != j["model"]["vocab"].end(); ++it)
    if (it.value().get<int64_t>() < n_ids) vocab[it.key()] = it.value();
  nlohmann::json merges = nlohmann::json::array();
  for (const auto& m : j["model"]["merges"]) {
    const std::string merged = m.is_array() ? m[0].get<std::string>() + m[1].get<std::string>()
                                            : [&] {
                                                std::string s = m.get<std::string>();
                                                return s.erase(s.find(' '), 1);
                                              }();
    if (vocab.contains(merged)) merges.push_back(m);
  }
  j["model"]["vocab"] = vocab;
  j["model"]["merges"] = merges;
  return Tokenizer::from_json(j.dump(), kvprime::test::read_file(dir + "tokenizer_config.json"),
                              "demo tokenizer cut to " + std::to_string(n_ids) + " ids");
}

}  // namespace kvprime::seedtest
