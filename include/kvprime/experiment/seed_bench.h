// The seed's pipeline on any checkpoint: structural checks, then timings (`kvprime bench`,
// bench/bench_seed; bench/gpu_bench.sh runs it against HF transformers on the GPU machine).
//
// Checks on the first sample (printed and in the JSON): cached vs one-forward NLL, corrected primed
// vs bare layer-0 keys (bounds 1e-5 in float32, 2e-2 in bf16/fp16: one bf16 rounding of a matmul
// output or a re-rotation), and that scoring leaves the cache unchanged.
// Timings after a warm-up:
//   seed loop   the seed's code path one sample at a time (bare build + score, truncated corrected
//               build + score): the batch-1 latency;
//   pipeline    the standard two-condition experiment (bare; surrogate-primed, truncated,
//               RoPE-corrected) through the ExperimentRunner exactly as `kvprime run` does it:
//               batched builds and scores, results written to a SQLite store.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kvprime {

struct SeedBenchOptions {
  std::string model_dir;               // config.json + safetensors + tokenizer.json
  std::string dtype = "float32", device = "cpu";
  std::string data;                    // JSONL: id, passage, query, answer, surrogates
  size_t samples = 16;                 // pipeline samples (the first ones of `data`)
  size_t seed_samples = 8;             // samples of the batch-1 seed loop
  std::vector<int64_t> batch{64};      // samples per chunk of the pipeline (one timed run each)
  std::string out_dir;                 // the pipeline's results store (default: a temp directory)
  std::string json_out;                // optional results file (timings, checks, per-sample NLLs)
};

// Prints a checks line and a timings line to stdout; returns 0 when every check holds, else 1.
int run_seed_bench(const SeedBenchOptions& options);

}  // namespace kvprime
