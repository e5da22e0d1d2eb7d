// Greedy decoding: a sanity tool (does the model produce sensible text?) and a CLI subcommand.
#pragma once

#include <cstdint>
#include <vector>

#include "kvprime/model/model.h"

namespace kvprime {

struct GenerateOptions {
  int64_t max_new_tokens = 32;
  std::vector<int64_t> stop_ids;  // stop after emitting any of these (default: the config's EOS)
  bool stop_at_eos = true;
};

struct GenerateResult {
  std::vector<int64_t> tokens;  // the new tokens only
  bool stopped = false;         // ended on a stop id rather than the length limit
};

// Prefills `prompt` (one sequence) into `cache` (which may already hold a context: the prompt
// continues it) and appends argmax tokens one at a time. The cache grows by the prompt and every
// generated token except the last.
GenerateResult generate_greedy(const Model& model, const std::vector<int64_t>& prompt,
                               KVCache& cache, const GenerateOptions& options = {});

}  // namespace kvprime
