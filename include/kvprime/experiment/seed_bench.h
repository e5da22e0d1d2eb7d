// The seed's pipeline on any checkpoint: structural checks, then timings (`kvprime bench`).
//
// Checks on the first sample (printed and in the JSON): cached vs one-forward NLL, corrected primed
// vs bare layer-0 keys (bounds 1e-5 in float32, 2e-2 in bf16/fp16: one bf16 rounding of a matmul
// output or a re-rotation), and that scoring leaves the cache unchanged. Timings after a warm-up:
// the seed's loop at batch 1 (bare build + score, truncated corrected build + score per sample)
// and the batched forms (prefill_batch / build_primed_caches, score_answers) at `batch`.
#pragma once

#include <cstdint>
#include <string>

namespace kvprime {

struct SeedBenchOptions {
  std::string model_dir;               // config.json + safetensors + tokenizer.json
  std::string dtype = "float32", device = "cpu";
  std::string data;                    // JSONL: passage, query, answer, surrogates
  size_t samples = 16;                 // samples with answers of >= 2 tokens (cycled if fewer)
  int64_t batch = 16;
  std::string json_out;                // optional results file
};

// Prints a checks line and a timings line to stdout; returns 0 when every check holds, else 1.
int run_seed_bench(const SeedBenchOptions& options);

}  // namespace kvprime
