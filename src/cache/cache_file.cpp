#include "kvprime/cache/cache_file.h"

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "kvprime/core/dtype.h"
#include "kvprime/core/error.h"
#include "kvprime/core/hash.h"
#include "kvprime/core/version.h"
#include "kvprime/io/safetensors.h"

namespace kvprime {
namespace {

constexpr const char* kFormat = "kvprime.kvcache";
constexpr const char* kFormatVersion = "2";
constexpr const char* kUserPrefix = "user.";

std::string layer_name(const char* kv, int64_t il) { return std::string(kv) + "." + std::to_string(il); }

const std::string& meta(const std::map<std::string, std::string>& m, const std::string& key,
                        const std::string& path) {
  auto it = m.find(key);
  KVP_CHECK(it != m.end(), "cache file '", path, "': metadata lacks '", key,
            "'; it was not written by kvprime's save_cache (or was edited)");
  return it->second;
}

int64_t meta_int(const std::map<std::string, std::string>& m, const std::string& key,
                 const std::string& path) {
  const std::string& s = meta(m, key, path);
  size_t used = 0;
  int64_t v = -1;
  try {
    v = std::stoll(s, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  KVP_CHECK(used == s.size() && !s.empty() && v >= 0, "cache file '", path, "': metadata '", key,
            "' = '", s, "' is not a non-negative integer");
  return v;
}

}  // namespace

std::string cache_checksum(const std::vector<std::pair<std::string, at::Tensor>>& tensors) {
  std::vector<const std::pair<std::string, at::Tensor>*> order;
  for (const auto& t : tensors) order.push_back(&t);
  std::sort(order.begin(), order.end(), [](auto* a, auto* b) { return a->first < b->first; });
  uint64_t h = fnv1a64("kvprime.kvcache checksum v1");
  for (const auto* nt : order) {
    const at::Tensor t = nt->second.contiguous().cpu();
    std::string head = nt->first + '\0' + dtype_name(t.scalar_type());
    for (int64_t d : t.sizes()) head += "," + std::to_string(d);
    h = fnv1a64(head + '\0', h);
    if (t.numel() > 0)
      h = fnv1a64(std::string_view(static_cast<const char*>(t.data_ptr()), t.nbytes()), h);
  }
  return "fnv1a64:" + hex64(h);
}

void save_cache(const std::string& path, const KVCache& cache,
                const std::map<std::string, std::string>& user_metadata) {
  KVP_CHECK(cache.n_layer() > 0, "save_cache('", path, "'): the cache has no layers");
  const ModelIdentity& id = cache.model();
  std::map<std::string, std::string> m{
      {"format", kFormat},
      {"format_version", kFormatVersion},
      {"model_name", id.name},
      {"model_fingerprint", id.fingerprint},
      {"n_layer", std::to_string(id.n_layer)},
      {"n_head_kv", std::to_string(id.n_head_kv)},
      {"head_dim", std::to_string(id.head_dim)},
      {"dtype", dtype_name(cache.dtype())},
      {"batch", std::to_string(cache.batch())},
      {"length", std::to_string(cache.length())},
      {"kvprime_version", kVersion},
  };
  for (const auto& [k, v] : user_metadata) {
    KVP_CHECK(!k.empty(), "save_cache('", path, "'): empty user metadata key");
    m[kUserPrefix + k] = v;
  }
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  tensors.reserve(2 * cache.n_layer() + 3);
  for (int64_t il = 0; il < cache.n_layer(); ++il) {
    tensors.emplace_back(layer_name("k", il), cache.key(il));
    tensors.emplace_back(layer_name("v", il), cache.value(il));
  }
  tensors.emplace_back("positions", cache.positions());
  tensors.emplace_back("token_ids", cache.token_ids());
  // BOOL is read inconsistently across safetensors implementations: store 0/1 as int64.
  tensors.emplace_back("valid", cache.valid().to(at::kLong));
  m["checksum"] = cache_checksum(tensors);
  save_safetensors(path, tensors, m);
}

LoadedCache load_cache(const std::string& path, at::Device device) {
  SafeTensorsFile f = SafeTensorsFile::open(path);
  const auto& m = f.metadata();
  KVP_CHECK(m.count("format") && m.at("format") == kFormat, "cache file '", path,
            "' is not a kvprime cache (metadata format = '",
            m.count("format") ? m.at("format") : std::string("<missing>"), "', expected '", kFormat,
            "'); write caches with save_cache / `kvprime cache build`");
  const std::string& version = meta(m, "format_version", path);
  KVP_CHECK(version == kFormatVersion, "cache file '", path, "' has format_version ", version,
            "; this kvprime reads version ", kFormatVersion, ": rebuild the cache with this version");

  ModelIdentity id;
  id.name = meta(m, "model_name", path);
  id.fingerprint = meta(m, "model_fingerprint", path);
  id.n_layer = meta_int(m, "n_layer", path);
  id.n_head_kv = meta_int(m, "n_head_kv", path);
  id.head_dim = meta_int(m, "head_dim", path);
  KVP_CHECK(id.n_layer > 0 && id.n_head_kv > 0 && id.head_dim > 0, "cache file '", path,
            "': metadata n_layer/n_head_kv/head_dim must be positive");
  const at::ScalarType dtype = parse_dtype(meta(m, "dtype", path), "cache file '" + path + "' dtype");
  const int64_t batch = meta_int(m, "batch", path), length = meta_int(m, "length", path);

  auto get = [&](const std::string& name, at::ScalarType want) {
    KVP_CHECK(f.contains(name), "cache file '", path, "' lacks tensor '", name,
              "' (truncated or edited file); rebuild the cache");
    const TensorInfo& info = f.info(name);
    KVP_CHECK(info.scalar_type == want, "cache file '", path, "': tensor '", name, "' is ",
              info.dtype, ", metadata says ", dtype_name(want));
    // Copy off the mapping: the cache must not depend on the file staying as it is.
    return f.tensor(name).to(device, want, /*non_blocking=*/false, /*copy=*/true);
  };
  std::vector<at::Tensor> keys, values;
  for (int64_t il = 0; il < id.n_layer; ++il) {
    keys.push_back(get(layer_name("k", il), dtype));
    values.push_back(get(layer_name("v", il), dtype));
  }
  KVP_CHECK(!f.contains(layer_name("k", id.n_layer)), "cache file '", path, "' holds more layers than its metadata n_layer = ",
            id.n_layer);
  at::Tensor positions = get("positions", at::kLong);
  at::Tensor token_ids = get("token_ids", at::kLong);
  at::Tensor valid_i = get("valid", at::kLong);
  KVP_CHECK(positions.dim() == 2 && positions.size(0) == batch && positions.size(1) == length,
            "cache file '", path, "': positions have shape ", shape_str(positions.sizes().vec()),
            " but metadata says batch ", batch, ", length ", length);
  KVP_CHECK(((valid_i == 0) | (valid_i == 1)).all().item<bool>(), "cache file '", path,
            "': 'valid' holds values other than 0/1");
  {
    // Last: the structural errors above say more about an edited file than a checksum would.
    const std::string& stored = meta(m, "checksum", path);
    std::vector<std::pair<std::string, at::Tensor>> all;
    for (const TensorInfo& info : f.tensors()) all.emplace_back(info.name, f.tensor(info.name));
    const std::string computed = cache_checksum(all);
    KVP_CHECK(stored == computed, "cache file '", path, "' is corrupted: its data's checksum is ",
              computed, " but the file says ", stored,
              " (damaged disk or copy, or an edited file); rebuild the cache");
  }
  LoadedCache out{KVCache::from_tensors(id, std::move(keys), std::move(values), std::move(positions),
                                        std::move(token_ids), valid_i.to(at::kBool),
                                        "cache file '" + path + "'"),
                  {}};
  const std::string prefix = kUserPrefix;
  for (const auto& [k, v] : m)
    if (k.compare(0, prefix.size(), prefix) == 0) out.user_metadata[k.substr(prefix.size())] = v;
  return out;
}

LoadedCache load_cache_for(const std::string& path, const ModelIdentity& expected, at::Device device) {
  LoadedCache c = load_cache(path, device);
  const ModelIdentity& got = c.cache.model();
  KVP_CHECK(got == expected, "cache file '", path, "' was built by model '", got.name,
            "' (fingerprint ", got.fingerprint, ", ", got.n_layer, " layers, ", got.n_head_kv,
            " kv heads x ", got.head_dim, "), not by the loaded model '", expected.name,
            "' (fingerprint ", expected.fingerprint, ", ", expected.n_layer, " layers, ",
            expected.n_head_kv, " kv heads x ", expected.head_dim,
            "); rebuild the cache with this model or load the model it came from");
  return c;
}

}  // namespace kvprime
