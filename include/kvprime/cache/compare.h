// Comparing two caches of the same model: how far each layer's keys and values moved.
#pragma once

#include <vector>

#include "kvprime/cache/kv_cache.h"

namespace kvprime {

struct LayerDistance {
  std::vector<double> key, value;  // per layer
};

// Per layer, ||K_other - K_reference|| / ||K_reference|| and the same for values, in float64 over
// all rows and slots (padding slots included: compare caches of the same layout). The caches must
// be compatible (KVCache::check_compatible: same model, dtype, batch, length, device); errors
// name `what`. One host synchronisation.
LayerDistance relative_l2_per_layer(const KVCache& reference, const KVCache& other,
                                    const std::string& what = "relative_l2_per_layer");

}  // namespace kvprime
