// Batching caches: many single-row caches of different lengths become one batched cache (and back)
// so that many documents are scored in one forward.
//
// Stacking LEFT-pads: row b's slots sit at the end, after length_max - length_b invalid slots.
// Left padding keeps every row's real slots contiguous with the tokens appended after them, so
// slot distances (which sliding windows use, as HF does) are the same as one at a time.
#pragma once

#include <vector>

#include "kvprime/cache/kv_cache.h"

namespace kvprime {

// Rows of single-row caches -> one [N, .., S_max, ..] cache. All from the same model, dtype and
// device; padding slots have zero K/V, position 0, token id -1 and valid = false.
KVCache stack_caches(const std::vector<KVCache>& caches);
KVCache stack_caches(const std::vector<const KVCache*>& caches);

// Row b of a batched cache, keeping only its valid slots (in slot order).
KVCache cache_row(const KVCache& cache, int64_t b);
std::vector<KVCache> unstack_cache(const KVCache& cache);

}  // namespace kvprime
