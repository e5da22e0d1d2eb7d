#include "kvprime/cache/batch.h"

#include <algorithm>

#include "kvprime/core/error.h"

namespace kvprime {

KVCache stack_caches(const std::vector<KVCache>& caches) {
  std::vector<const KVCache*> ptrs;
  ptrs.reserve(caches.size());
  for (const auto& c : caches) ptrs.push_back(&c);
  return stack_caches(ptrs);
}

KVCache stack_caches(const std::vector<const KVCache*>& caches) {
  KVP_CHECK(!caches.empty(), "stack_caches: no caches given");
  const KVCache& first = *caches[0];
  int64_t s_max = 0;
  for (size_t i = 0; i < caches.size(); ++i) {
    const KVCache& c = *caches[i];
    KVP_CHECK(c.batch() == 1, "stack_caches: cache ", i, " has ", c.batch(),
              " rows; stack single-row caches (split batched ones with unstack_cache)");
    KVP_CHECK(c.model() == first.model(), "stack_caches: cache ", i, " comes from model '",
              c.model().name, "' (fingerprint ", c.model().fingerprint, "), cache 0 from '",
              first.model().name, "' (", first.model().fingerprint,
              "); build all caches with the same model");
    KVP_CHECK(c.dtype() == first.dtype() && c.device() == first.device(), "stack_caches: cache ", i,
              " has dtype/device ", c.dtype(), "/", c.device().str(), ", cache 0 ", first.dtype(),
              "/", first.device().str());
    s_max = std::max(s_max, c.length());
  }
  const int64_t N = static_cast<int64_t>(caches.size()), L = first.n_layer();
  const ModelIdentity& id = first.model();
  auto kv_opts = at::TensorOptions().dtype(first.dtype()).device(first.device());
  auto long_opts = at::TensorOptions().dtype(at::kLong).device(first.device());
  std::vector<at::Tensor> keys, values;
  for (int64_t il = 0; il < L; ++il) {
    keys.push_back(at::zeros({N, id.n_head_kv, s_max, id.head_dim}, kv_opts));
    values.push_back(at::zeros({N, id.n_head_kv, s_max, id.head_dim}, kv_opts));
  }
  at::Tensor positions = at::zeros({N, s_max}, long_opts);
  at::Tensor token_ids = at::full({N, s_max}, -1, long_opts);
  at::Tensor valid = at::zeros({N, s_max}, long_opts.dtype(at::kBool));
  for (int64_t b = 0; b < N; ++b) {
    const KVCache& c = *caches[b];
    const int64_t pad = s_max - c.length();  // left padding: real slots end at s_max
    for (int64_t il = 0; il < L; ++il) {
      keys[il][b].slice(1, pad, s_max).copy_(c.key(il)[0]);
      values[il][b].slice(1, pad, s_max).copy_(c.value(il)[0]);
    }
    positions[b].slice(0, pad, s_max).copy_(c.positions()[0]);
    token_ids[b].slice(0, pad, s_max).copy_(c.token_ids()[0]);
    valid[b].slice(0, pad, s_max).copy_(c.valid()[0]);
  }
  return KVCache::from_tensors(id, std::move(keys), std::move(values), std::move(positions),
                               std::move(token_ids), std::move(valid), "stack_caches");
}

KVCache cache_row(const KVCache& cache, int64_t b) {
  KVP_CHECK(b >= 0 && b < cache.batch(), "cache_row: row ", b, " out of range; the cache has ",
            cache.batch(), " rows");
  // Valid slots of row b, in slot order: [n_valid] int64 indices.
  at::Tensor idx = cache.valid()[b].nonzero().view({-1});
  std::vector<at::Tensor> keys, values;
  for (int64_t il = 0; il < cache.n_layer(); ++il) {
    keys.push_back(cache.key(il).slice(0, b, b + 1).index_select(2, idx));
    values.push_back(cache.value(il).slice(0, b, b + 1).index_select(2, idx));
  }
  auto row_meta = [&](const at::Tensor& t) { return t.slice(0, b, b + 1).index_select(1, idx); };
  return KVCache::from_tensors(cache.model(), std::move(keys), std::move(values),
                               row_meta(cache.positions()), row_meta(cache.token_ids()),
                               row_meta(cache.valid()), "cache_row");
}

std::vector<KVCache> unstack_cache(const KVCache& cache) {
  std::vector<KVCache> rows;
  rows.reserve(cache.batch());
  for (int64_t b = 0; b < cache.batch(); ++b) rows.push_back(cache_row(cache, b));
  return rows;
}

}  // namespace kvprime
