// The seed's pipeline on a real-shaped checkpoint: structural checks, then timings
// (`kvprime bench`, bench/bench_seed).
//
// DIR holds config.json, safetensors and tokenizer.json (tools/make_random_hf_model.py makes a
// random-weight one of a published config on the GPU machine). For each sample: passage, query,
// answer and surrogates[0] from the JSONL.
//
// Checks (printed and in the JSON; the exit status is 1 when one fails its bound):
//   cached_vs_full   |NLL(answer | bare cache, query) - NLL(answer | one forward of all)|,
//                    relative; bound 1e-5 in float32, 2e-2 in bf16/fp16 (a 7B bf16 forward
//                    rounds every matmul output to 8 mantissa bits; the two paths differ in shape);
//   layer0_keys      corrected primed layer-0 keys vs bare ones (build_matched_caches), max
//                    relative diff; bound 1e-5 float32, 2e-2 bf16 (one bf16 re-rotation);
//   score_mutates    whether scoring changed any tensor of the cache (must be false).
// Timings (after one warm-up sample): the seed's loop at batch 1 (bare build + score, truncated
// corrected build + score per sample, as the HF baseline in ../shared/GPU.md) and the batched
// forms (prefill_batch / build_primed_caches, score_answers) at --batch.
#include <nlohmann/json.hpp>

#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "kvprime/experiment/seed_bench.h"

#include "kvprime/cache/batch.h"
#include "kvprime/cache/kv_cache.h"
#include "kvprime/core/dtype.h"
#include "kvprime/core/error.h"
#include "kvprime/model/model.h"
#include "kvprime/prime/build.h"
#include "kvprime/prime/experiment_config.h"
#include "kvprime/prime/score.h"
#include "kvprime/tokenizer/tokenizer.h"

using nlohmann::json;

namespace kvprime {
namespace {

struct BenchSample {
  std::string passage, query, answer, surrogate;
};

std::vector<BenchSample> read_samples(const std::string& path, size_t n) {
  std::ifstream f(path);
  if (!f) throw std::runtime_error("bench: cannot read --data " + path);
  std::vector<BenchSample> out;
  std::string line;
  while (std::getline(f, line) && out.size() < n) {
    if (line.empty()) continue;
    json j = json::parse(line);
    BenchSample s{j.at("passage"), j.at("query"), j.at("answer"), ""};
    if (j.contains("surrogates") && !j["surrogates"].empty()) s.surrogate = j["surrogates"][0];
    else s.surrogate = s.query;
    out.push_back(s);
  }
  if (out.empty()) throw std::runtime_error("bench: no samples in " + path);
  while (out.size() < n) out.push_back(out[out.size() % out.size()]);  // cycle to reach n
  return out;
}

double max_rel(const at::Tensor& a, const at::Tensor& b) {
  auto x = a.to(at::kDouble).cpu(), y = b.to(at::kDouble).cpu();
  return (x - y).abs().max().item<double>() / std::max(y.abs().max().item<double>(), 1e-30);
}

void sync(const Model& m) {
  if (m.device().is_cuda()) at::zeros({1}, at::TensorOptions().device(m.device())).cpu();
}

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

int run_seed_bench(const SeedBenchOptions& o) {
  KVP_CHECK(!o.model_dir.empty(), "bench: give a checkpoint directory (--model)");
  KVP_CHECK(o.samples > 0 && o.batch > 0, "bench: --samples and --batch must be positive");
  LoadOptions lo;
  lo.dtype = parse_dtype(o.dtype, "--dtype");
  lo.device = parse_device(o.device, "--device");
  double t0 = now_s();
  Model model = Model::load(o.model_dir, lo);
  Tokenizer tok = Tokenizer::from_file(o.model_dir + "/tokenizer.json");
  const double load_s = now_s() - t0;
  ExperimentConfig cfg;
  Primer primer(model, tok, cfg);
  // The seed scores answer tokens after the first: answers of one token cannot be scored.
  auto samples = read_samples(o.data, 4 * o.samples);
  samples.erase(std::remove_if(samples.begin(), samples.end(),
                               [&](const BenchSample& s) { return primer.tokenize(s.answer).size() < 2; }),
                samples.end());
  if (samples.empty()) throw std::runtime_error("bench: no sample has an answer of >= 2 tokens");
  if (samples.size() > o.samples) samples.resize(o.samples);
  const bool f32 = lo.dtype == at::kFloat;
  const double bound = f32 ? 1e-5 : 2e-2;

  // ---- checks on the first sample ----
  const BenchSample& s0 = samples[0];
  const std::string doc = format_template(cfg.document_template, {{"document", s0.passage}});
  const std::string qp = format_template(cfg.query_template, {{"query", s0.query}});
  BuiltCache bare = primer.build_kv_cache(doc);
  KVCache before = bare.cache.clone();
  const double nll_cached = score_answer_with_cache(primer, bare.cache, bare.length, qp, s0.answer);
  bool mutated = false;
  for (int64_t il = 0; il < before.n_layer(); ++il)
    mutated |= !at::equal(before.key(il), bare.cache.key(il)) || !at::equal(before.value(il), bare.cache.value(il));
  mutated |= !at::equal(before.positions(), bare.cache.positions());
  // One forward of everything after BOS (same ids) from a BOS-only cache.
  TokenIds ctx = primer.tokenize_with_bos(doc), q = primer.tokenize(qp), ans = primer.tokenize(s0.answer);
  TokenIds rest(ctx.begin() + 1, ctx.end());
  rest.insert(rest.end(), q.begin(), q.end());
  const double nll_full = score_answer(model, bos_only_cache(model, ctx[0]), rest, ans).nll;
  const double cached_vs_full = std::abs(nll_cached - nll_full) / std::max(std::abs(nll_full), 1e-12);
  MatchedCaches mc = primer.build_matched_caches(s0.surrogate, s0.passage);
  const double layer0 = max_rel(mc.primed.key(0), mc.bare.key(0));
  const bool ok = cached_vs_full < bound && layer0 < bound && !mutated;
  std::printf("checks (%s %s, bound %.0e): cached_vs_full %.3e  layer0_keys %.3e  score_mutates %s  -> %s\n",
              o.dtype.c_str(), o.device.c_str(), bound, cached_vs_full, layer0, mutated ? "yes" : "no",
              ok ? "OK" : "FAILED");

  // ---- timings ----
  auto seed_sample = [&](const BenchSample& s) {
    const std::string d = format_template(cfg.document_template, {{"document", s.passage}});
    const std::string p = format_template(cfg.query_template, {{"query", s.query}});
    BuiltCache b = primer.build_kv_cache(d);
    double x = score_answer_with_cache(primer, b.cache, b.length, p, s.answer);
    TruncatedCache t = primer.build_truncated_kv_cache_corrected(s.surrogate, s.passage);
    x += score_answer_with_cache(primer, t.cache, t.keep_len, p, s.answer);
    return x;
  };
  seed_sample(samples[0]);  // warm-up
  sync(model);
  t0 = now_s();
  for (const auto& s : samples) seed_sample(s);
  sync(model);
  const double seed_s = now_s() - t0;

  // Batched: the same two caches per sample, built and scored `batch` samples per forward.
  std::vector<TokenIds> docs, prefixes, queries, answers;
  int64_t tokens = 0;
  for (const auto& s : samples) {
    JointTokens j = tokenize_joint(tok, format_template(cfg.surrogate_template, {{"surrogate", s.surrogate}}),
                                   format_template(cfg.document_template, {{"document", s.passage}}));
    prefixes.push_back(j.prefix_ids());
    docs.push_back(j.doc_ids());
    queries.push_back(primer.tokenize(format_template(cfg.query_template, {{"query", s.query}})));
    answers.push_back(primer.tokenize(s.answer));
    tokens += 2 * (1 + static_cast<int64_t>(docs.back().size() + queries.back().size() + answers.back().size())) +
              static_cast<int64_t>(prefixes.back().size()) - 1;
  }
  auto batched_pass = [&]() {
    for (size_t begin = 0; begin < samples.size(); begin += static_cast<size_t>(o.batch)) {
      const size_t end = std::min(samples.size(), begin + static_cast<size_t>(o.batch));
      std::vector<TokenIds> bare_rows, pre(prefixes.begin() + begin, prefixes.begin() + end),
          dd(docs.begin() + begin, docs.begin() + end);
      for (size_t i = begin; i < end; ++i) {
        TokenIds r{prefixes[i][0]};
        r.insert(r.end(), docs[i].begin(), docs[i].end());
        bare_rows.push_back(r);
      }
      KVCache bare_b = prefill_batch(model, bare_rows);
      std::vector<KVCache> bare_rows_c;
      for (size_t i = 0; i < end - begin; ++i) bare_rows_c.push_back(cache_row(bare_b, static_cast<int64_t>(i)));
      std::vector<KVCache> primed = build_primed_caches(model, pre, dd);
      std::vector<ScoreRequest> reqs;
      for (size_t i = 0; i < end - begin; ++i) {
        reqs.push_back({&bare_rows_c[i], queries[begin + i], answers[begin + i], {}});
        reqs.push_back({&primed[i], queries[begin + i], answers[begin + i], {}});
      }
      score_answers(model, reqs);
    }
  };
  batched_pass();  // warm-up
  sync(model);
  t0 = now_s();
  batched_pass();
  sync(model);
  const double batched_s = now_s() - t0;
  const double n = static_cast<double>(samples.size());
  std::printf("load %.2fs | seed loop (batch 1): %.1f ms/sample, %.2f samples/s, %.0f tok/s | "
              "batched (%ld): %.2f ms/sample, %.1f samples/s, %.0f tok/s\n",
              load_s, 1e3 * seed_s / n, n / seed_s, tokens / seed_s, static_cast<long>(o.batch),
              1e3 * batched_s / n, n / batched_s, tokens / batched_s);
  if (!o.json_out.empty()) {
    json r{{"model", o.model_dir}, {"dtype", o.dtype}, {"device", o.device}, {"samples", samples.size()},
           {"batch", o.batch}, {"load_s", load_s},
           {"checks", {{"bound", bound}, {"cached_vs_full", cached_vs_full}, {"layer0_keys", layer0},
                       {"score_mutates", mutated}, {"nll_cached", nll_cached}, {"nll_full", nll_full}}},
           {"seed_loop", {{"seconds", seed_s}, {"ms_per_sample", 1e3 * seed_s / n}, {"tokens", tokens}}},
           {"batched", {{"seconds", batched_s}, {"ms_per_sample", 1e3 * batched_s / n}}}};
    std::ofstream(o.json_out) << r.dump(2) << "\n";
  }
  return ok ? 0 : 1;
}

}  // namespace kvprime
