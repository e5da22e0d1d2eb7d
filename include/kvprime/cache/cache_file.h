// Saving and loading a KVCache as one safetensors file.
//
// Tensors: "k.<layer>", "v.<layer>" [B, n_head_kv, S, head_dim] in the cache dtype; "positions",
// "token_ids" [B, S] int64; "valid" [B, S] int64 0/1 (safetensors readers disagree on BOOL).
// "__metadata__": format ("kvprime.kvcache"), format_version (2), model_name,
// model_fingerprint, n_layer, n_head_kv, head_dim, dtype, batch, length, kvprime_version, checksum
// (cache_checksum of the tensors), plus caller metadata under "user.<key>". Writes are atomic
// (temp file + rename), so a crash never leaves half a cache; the checksum catches what happens to
// the file afterwards (a flipped bit, a bad copy). Version 1 files (no checksum) are refused with
// the advice to rebuild: a cache is cheap to rebuild and an unverifiable one is not worth trusting.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "kvprime/cache/kv_cache.h"

namespace kvprime {

// "fnv1a64:<16 hex digits>": FNV-1a over every tensor in name order, each as its name, a NUL, its
// dtype name ("float32", ...), its shape and its raw little-endian bytes. Detects corruption, not
// tampering (not a cryptographic hash).
std::string cache_checksum(const std::vector<std::pair<std::string, at::Tensor>>& tensors);

void save_cache(const std::string& path, const KVCache& cache,
                const std::map<std::string, std::string>& user_metadata = {});

struct LoadedCache {
  KVCache cache;
  std::map<std::string, std::string> user_metadata;  // without the "user." prefix
};

// Loads onto `device`. Every inconsistency (missing tensor, a layer count, shape or dtype that
// disagrees with the metadata, unknown format version, a checksum that does not match the data) is
// a kvprime::Error naming the file.
LoadedCache load_cache(const std::string& path, at::Device device = at::kCPU);

// As load_cache, and refuses (naming the file and both models) a cache made by another model.
LoadedCache load_cache_for(const std::string& path, const ModelIdentity& expected,
                           at::Device device = at::kCPU);

}  // namespace kvprime
