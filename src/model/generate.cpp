#include "kvprime/model/generate.h"

#include <algorithm>

#include "kvprime/core/error.h"

namespace kvprime {

GenerateResult generate_greedy(const Model& model, const std::vector<int64_t>& prompt,
                               KVCache& cache, const GenerateOptions& options) {
  KVP_CHECK(!prompt.empty(), "generate: the prompt is empty; give at least one token (e.g. BOS)");
  KVP_CHECK(cache.batch() == 1, "generate: the cache must have batch 1, got ", cache.batch());
  KVP_CHECK(options.max_new_tokens >= 0, "generate: max_new_tokens must be >= 0");
  std::vector<int64_t> stops = options.stop_ids;
  if (stops.empty() && options.stop_at_eos) stops = model.config().eos_token_ids;

  GenerateResult out;
  if (options.max_new_tokens == 0) return out;
  auto ids = at::tensor(prompt, at::kLong).unsqueeze(0);  // [1, T]
  ForwardOptions fo;
  fo.logits = LogitsMode::Last;
  for (int64_t step = 0; step < options.max_new_tokens; ++step) {
    auto pos = model.continue_positions(cache, ids.size(1));
    auto logits = model.forward(ids, pos, cache, fo);  // [1, vocab]
    const int64_t next = logits.argmax(-1).item<int64_t>();
    out.tokens.push_back(next);
    if (std::find(stops.begin(), stops.end(), next) != stops.end()) {
      out.stopped = true;
      break;
    }
    ids = at::full({1, 1}, next, at::kLong);
  }
  return out;
}

}  // namespace kvprime
