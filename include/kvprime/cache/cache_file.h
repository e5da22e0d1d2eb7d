// Saving and loading a KVCache as one safetensors file.
//
// Tensors: "k.<layer>", "v.<layer>" [B, n_head_kv, S, head_dim] in the cache dtype; "positions",
// "token_ids" [B, S] int64; "valid" [B, S] int64 0/1 (safetensors readers disagree on BOOL).
// "__metadata__": format ("kvprime.kvcache"), format_version, model_name,
// model_fingerprint, n_layer, n_head_kv, head_dim, dtype, batch, length, plus caller metadata under
// "user.<key>". Writes are atomic (temp file + rename), so a crash never leaves half a cache.
#pragma once

#include <map>
#include <string>

#include "kvprime/cache/kv_cache.h"

namespace kvprime {

void save_cache(const std::string& path, const KVCache& cache,
                const std::map<std::string, std::string>& user_metadata = {});

struct LoadedCache {
  KVCache cache;
  std::map<std::string, std::string> user_metadata;  // without the "user." prefix
};

// Loads onto `device`. Every inconsistency (missing tensor, a layer count, shape or dtype that
// disagrees with the metadata, unknown format version) is a kvprime::Error naming the file.
LoadedCache load_cache(const std::string& path, at::Device device = at::kCPU);

// As load_cache, and refuses (naming the file and both models) a cache made by another model.
LoadedCache load_cache_for(const std::string& path, const ModelIdentity& expected,
                           at::Device device = at::kCPU);

}  // namespace kvprime
