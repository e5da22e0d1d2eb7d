// The seed's pipeline on a real-shaped checkpoint: structural checks, then timings
// (`kvprime bench`, bench/bench_seed). See seed_bench.h for what is measured.
//
// DIR holds config.json, safetensors and tokenizer.json (tools/make_random_hf_model.py makes a
// random-weight one of a published config on the GPU machine). For each sample: passage, query,
// answer and surrogates[0] from the JSONL.
//
// Check bounds: cached_vs_full 1e-5 in float32, 2e-2 in bf16/fp16 (a 7B bf16 forward rounds every
// matmul output to 8 mantissa bits; the two paths differ in shape); layer0_keys the same (one bf16
// re-rotation); score_mutates must be false.
#include <nlohmann/json.hpp>

#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <iostream>
#include <string>
#include <vector>

#include "kvprime/experiment/seed_bench.h"

#include "kvprime/cache/batch.h"
#include "kvprime/cache/kv_cache.h"
#include "kvprime/core/compat.h"
#include "kvprime/core/dtype.h"
#include "kvprime/core/error.h"
#include "kvprime/experiment/dataset.h"
#include "kvprime/experiment/runner.h"
#include "kvprime/experiment/spec.h"
#include "kvprime/experiment/store.h"
#include "kvprime/model/model.h"
#include "kvprime/prime/build.h"
#include "kvprime/prime/experiment_config.h"
#include "kvprime/prime/score.h"
#include "kvprime/tokenizer/tokenizer.h"

using nlohmann::json;
namespace fs = std::filesystem;

namespace kvprime {
namespace {

struct BenchSample {
  std::string id, passage, query, answer, surrogate;
};

// The samples of --data, read and checked like an experiment's dataset (errors name path:line).
std::vector<BenchSample> read_samples(const std::string& path, size_t n) {
  DatasetOptions o;
  o.limit = static_cast<int64_t>(n);
  std::vector<BenchSample> out;
  for (const Sample& smp : read_dataset(path, o))
    out.push_back({smp.id, smp.passage, smp.query, smp.answer,
                   smp.surrogates.empty() ? smp.query : smp.surrogates[0]});
  KVP_CHECK(!out.empty(), "bench: --data ", path, " holds no samples");
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
  KVP_CHECK(o.samples > 0 && !o.batch.empty(), "bench: --samples must be positive and --batch given");
  for (const int64_t b : o.batch) KVP_CHECK(b > 0, "bench: --batch values must be positive, got ", b);
  LoadOptions lo;
  lo.dtype = parse_dtype(o.dtype, "--dtype");
  lo.device = parse_device(o.device, "--device");
  double t0 = now_s();
  Model model = Model::load(o.model_dir, lo);
  Tokenizer tok = Tokenizer::from_checkpoint(o.model_dir);
  const double load_s = now_s() - t0;
  ExperimentConfig cfg;
  Primer primer(model, tok, cfg);
  // The seed scores answer tokens after the first: answers of one token cannot be scored.
  auto samples = read_samples(o.data, std::max<size_t>(1, 4 * o.seed_samples));
  samples.erase(std::remove_if(samples.begin(), samples.end(),
                               [&](const BenchSample& s) { return primer.tokenize(s.answer).size() < 2; }),
                samples.end());
  if (samples.empty()) throw std::runtime_error("bench: no sample has an answer of >= 2 tokens");
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

  // ---- timings: the seed loop at batch 1 ----
  auto seed_sample = [&](const BenchSample& s) {
    const std::string d = format_template(cfg.document_template, {{"document", s.passage}});
    const std::string p = format_template(cfg.query_template, {{"query", s.query}});
    BuiltCache b = primer.build_kv_cache(d);
    double x = score_answer_with_cache(primer, b.cache, b.length, p, s.answer);
    TruncatedCache t = primer.build_truncated_kv_cache_corrected(s.surrogate, s.passage);
    x += score_answer_with_cache(primer, t.cache, t.keep_len, p, s.answer);
    return x;
  };
  const size_t n_seed = std::min(o.seed_samples, samples.size());
  double seed_s = 0;
  if (n_seed > 0) {
    seed_sample(samples[0]);  // warm-up
    sync(model);
    std::vector<double> per;  // each sample ends in a host copy of its NLLs: host time is exact
    t0 = now_s();
    for (size_t i = 0; i < n_seed; ++i) {
      const double a = now_s();
      seed_sample(samples[i]);
      per.push_back(1e3 * (now_s() - a));
    }
    sync(model);
    seed_s = now_s() - t0;
    std::vector<double> sorted = per;
    std::sort(sorted.begin(), sorted.end());
    std::printf("seed loop per sample (ms): min %.1f median %.1f max %.1f; first 8:", sorted.front(),
                sorted[sorted.size() / 2], sorted.back());
    for (size_t i = 0; i < std::min<size_t>(8, per.size()); ++i) std::printf(" %.1f", per[i]);
    std::printf("\n");
  }
  // Where a batch-1 sample's time goes: each step timed to completion (synchronised), median of
  // up to 8 samples, and the bare forwards alone (prefill of the document, the query+answer step).
  json latency = json::object();
  if (n_seed > 0) {
    std::map<std::string, std::vector<double>> steps;
    auto timed = [&](const char* name, auto&& f) {
      sync(model);
      const double a = now_s();
      auto r = f();
      sync(model);
      steps[name].push_back(1e3 * (now_s() - a));
      return r;
    };
    for (size_t i = 0; i < std::min<size_t>(n_seed, 8); ++i) {
      const BenchSample& s = samples[i];
      const std::string d = format_template(cfg.document_template, {{"document", s.passage}});
      const std::string p = format_template(cfg.query_template, {{"query", s.query}});
      BuiltCache b = timed("build_bare", [&] { return primer.build_kv_cache(d); });
      timed("score_bare", [&] { return score_answer_with_cache(primer, b.cache, b.length, p, s.answer); });
      TruncatedCache t = timed("build_primed", [&] { return primer.build_truncated_kv_cache_corrected(s.surrogate, s.passage); });
      timed("score_primed", [&] { return score_answer_with_cache(primer, t.cache, t.keep_len, p, s.answer); });
      TokenIds ids = primer.tokenize_with_bos(d);
      const int64_t T = static_cast<int64_t>(ids.size());
      at::Tensor it = at::empty({1, T}, at::kLong);
      for (int64_t k = 0; k < T; ++k) it[0][k] = ids[static_cast<size_t>(k)];
      timed("forward_only_prefill", [&] {
        KVCache c = model.new_cache(1);
        ForwardOptions fo;
        fo.logits = LogitsMode::None;
        model.forward(it, at::arange(T, at::kLong).unsqueeze(0), c, fo);
        return 0;
      });
    }
    std::printf("batch-1 steps (median ms):");
    for (auto& [name, v] : steps) {
      std::sort(v.begin(), v.end());
      latency[name] = v[v.size() / 2];
      std::printf("  %s %.1f", name.c_str(), v[v.size() / 2]);
    }
    std::printf("\n");
  }

  // ---- timings: the standard two-condition experiment through the runner ----
  std::string out_dir = o.out_dir;
  if (out_dir.empty()) {
    char tmpl[] = "/tmp/kvprime-bench-XXXXXX";
    KVP_CHECK(mkdtemp(tmpl) != nullptr, "bench: cannot create a temporary directory for the store");
    out_dir = tmpl;
  }
  // One timed run per chunk size (after a warm-up run of the same shapes); the fastest is reported.
  struct Variant {
    int64_t batch;
    RunSummary run;
    double seconds;
    int64_t peak;
    std::string store, name;
  };
  std::vector<Variant> variants;
  // The seed's surrogate template as an experiment prefix template ({surrogate} -> {prefix}).
  std::string surrogate_as_prefix = cfg.surrogate_template;
  const size_t at_ph = surrogate_as_prefix.find("{surrogate}");
  KVP_ASSERT(at_ph != std::string::npos, "surrogate_template without {surrogate}");
  surrogate_as_prefix.replace(at_ph, std::string("{surrogate}").size(), "{prefix}");
  for (const int64_t batch : o.batch) {
    const std::string dir = out_dir + "/batch" + std::to_string(batch);
    const std::string toml = std::string("[experiment]\n") +
        "name = \"bench\"\nmodel = " + json(fs::absolute(o.model_dir).string()).dump() +
        "\ndataset = " + json(fs::absolute(o.data).string()).dump() + "\ndtype = " + json(o.dtype).dump() +
        "\ndevice = " + json(o.device).dump() + "\nsamples = " + std::to_string(o.samples) +
        "\nbatch = " + std::to_string(batch) + "\nout = " + json(dir).dump() +
        "\ndivergence_samples = 0\n"
        "[[condition]]\nname = \"bare\"\n"
        "[[condition]]\nname = \"primed\"\nprefix = \"surrogate\"\nprefix_template = " +
        json(surrogate_as_prefix).dump() + "\n";
    ExperimentSpec spec = parse_experiment(toml, "kvprime bench (generated)", "/");
    ExperimentRunner runner(spec, model, tok, read_dataset(spec.dataset, dataset_options_for(spec)));
    RunOptions ro;
    ro.progress = false;
    ro.new_run = true;
    runner.run(ro);  // warm-up (kernels, allocator, cuBLAS heuristics); archived by the timed run
    sync(model);
    compat::cuda_reset_peak(model.device());
    t0 = now_s();
    RunSummary run = runner.run(ro);
    sync(model);
    const double secs = now_s() - t0;
    variants.push_back({batch, run, secs, compat::cuda_peak_allocated_bytes(model.device()),
                        spec.store_path(), spec.name});
    // One more run with the runner's phase profile (KVPRIME_PROFILE synchronises at every
    // phase, so it is not the timed run).
    setenv("KVPRIME_PROFILE", "1", 1);
    runner.run(ro);
    unsetenv("KVPRIME_PROFILE");
    std::printf("pipeline, chunks of %ld: %ld samples, %.2f ms/sample, %.1f samples/s, %.0f tok/s\n",
                static_cast<long>(batch), static_cast<long>(run.samples),
                1e3 * secs / static_cast<double>(run.samples), static_cast<double>(run.samples) / secs,
                static_cast<double>(run.tokens) / secs);
  }
  const Variant best = *std::min_element(variants.begin(), variants.end(),
                                          [](const Variant& a, const Variant& b) { return a.seconds < b.seconds; });
  const RunSummary& run = best.run;
  const double pipe_s = best.seconds;
  const int64_t peak = best.peak;
  const double n_pipe = static_cast<double>(run.samples);

  // The model's raw forward on the shape HF's batched forward is timed with (32 x 160 random
  // ids, no padding, logits at every position as HF computes them): best of 3 after a warm-up.
  double raw_tok_s = 0;
  if (model.device().is_cuda()) {
    const int64_t RB = 32, RT = 160;
    auto g = at::make_generator<at::CPUGeneratorImpl>(1234);
    at::Tensor ids = at::randint(0, model.config().vocab_size, {RB, RT}, g, at::kLong);
    at::Tensor pos = at::arange(RT, at::kLong).repeat({RB, 1});
    double best_s = 1e30;
    for (int rep = 0; rep < 4; ++rep) {
      KVCache c = model.new_cache(RB);
      sync(model);
      const double a = now_s();
      model.forward(ids, pos, c);
      sync(model);
      if (rep > 0) best_s = std::min(best_s, now_s() - a);
    }
    raw_tok_s = static_cast<double>(RB * RT) / best_s;
    std::printf("raw forward 32x160 (all logits): %.1f ms, %.0f tok/s\n", 1e3 * best_s, raw_tok_s);
  }

  // Linear-layer parameters a token goes through (q/k/v/o, gate/up/down in every layer; the
  // lm_head only runs on scored answer positions and is left out): FLOPs ~ 2 x this x tokens.
  const ModelConfig& mcfg = model.config();
  const int64_t n_linear = mcfg.n_layer * (mcfg.hidden_size * (mcfg.n_head + 2 * mcfg.n_head_kv) * mcfg.head_dim +
                                         mcfg.n_head * mcfg.head_dim * mcfg.hidden_size +
                                         3 * mcfg.hidden_size * mcfg.intermediate_size);
  std::printf("best: load %.2fs | seed loop (batch 1, %zu samples): %.1f ms/sample | pipeline (%ld samples, "
              "chunks of %ld): %.2f ms/sample, %.1f samples/s, %.0f tok/s, %.0f TFLOP/s (linear layers)%s\n",
              load_s, n_seed, n_seed ? 1e3 * seed_s / static_cast<double>(n_seed) : 0.0,
              static_cast<long>(run.samples), static_cast<long>(best.batch), 1e3 * pipe_s / n_pipe, n_pipe / pipe_s,
              static_cast<double>(run.tokens) / pipe_s,
              2.0 * static_cast<double>(n_linear) * static_cast<double>(run.tokens) / pipe_s / 1e12,
              peak >= 0 ? (", peak GPU memory " + std::to_string(peak >> 20) + " MiB").c_str() : "");
  if (!o.json_out.empty()) {
    json nll = json::object();
    for (const ResultRow& r : ResultStore::open_readonly(best.store, best.name).rows())
      nll[r.sample_id][r.condition] = r.nll;
    json r{{"model", o.model_dir}, {"dtype", o.dtype}, {"device", o.device}, {"load_s", load_s},
           {"bare_ids", "alone"},  // the bare condition tokenizes the document on its own (the seed)
           {"gpu_peak_memory_bytes", peak}, {"n_params_linear", n_linear},
           {"checks", {{"sample", s0.id}, {"bound", bound}, {"cached_vs_full", cached_vs_full}, {"layer0_keys", layer0},
                       {"score_mutates", mutated}, {"nll_cached", nll_cached}, {"nll_full", nll_full}}},
           {"seed_loop", {{"samples", n_seed}, {"seconds", seed_s}, {"steps_ms", latency},
                          {"ms_per_sample", n_seed ? 1e3 * seed_s / static_cast<double>(n_seed) : 0.0}}},
           {"pipeline", {{"samples", run.samples}, {"seconds", pipe_s}, {"samples_per_s", n_pipe / pipe_s},
                         {"tokens", run.tokens}, {"tokens_per_s", static_cast<double>(run.tokens) / pipe_s},
                         {"batch", best.batch}, {"store", best.store}}},
           {"raw_forward_32x160_tokens_per_s", raw_tok_s},
           {"nll", nll}};
    for (const Variant& v : variants)
      r["pipeline_variants"].push_back({{"batch", v.batch}, {"seconds", v.seconds}, {"tokens", v.run.tokens},
                                        {"samples", v.run.samples}, {"peak_bytes", v.peak}});
    std::ofstream(o.json_out) << r.dump(2) << "\n";
  }
  return ok ? 0 : 1;
}

}  // namespace kvprime
