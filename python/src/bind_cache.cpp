// KVCache (per-layer K/V as torch tensors, shared with C++), cache surgery, the seed's RoPE helpers,
// cache files and batching.
//
// Where the seed's functions changed a cache in place (correct_rope_positions[_with_bos],
// apply_rope_roundtrip_noise) the Python ones do too, and return the same cache object; the C++
// functions return a new cache and the binding moves it into the Python object. Everything else
// returns a new cache and leaves its arguments alone, as in C++.
#include <torch/csrc/utils/pybind.h>
#include <pybind11/stl.h>

#include <fstream>

#include "bindings.h"
#include "kvprime/cache/batch.h"
#include "kvprime/cache/cache_file.h"
#include "kvprime/cache/compare.h"
#include "kvprime/cache/kv_cache.h"
#include "kvprime/cache/seed_rope.h"
#include "kvprime/cache/surgery.h"
#include "kvprime/core/dtype.h"
#include "kvprime/core/error.h"
#include "kvprime/model/config.h"
#include "kvprime/model/model.h"

namespace kvprime::py {

namespace {

// KVCache::from_tensors with the bookkeeping a notebook rarely has: positions 0..S-1, unknown token
// ids (-1), every slot valid.
KVCache cache_from_tensors(const Model& model, std::vector<at::Tensor> keys, std::vector<at::Tensor> values,
                           std::optional<at::Tensor> positions, std::optional<at::Tensor> token_ids,
                           std::optional<at::Tensor> valid) {
  KVP_CHECK(!keys.empty() && keys.size() == values.size(), "KVCache.from_tensors: ", keys.size(),
            " key and ", values.size(), " value tensors; expected one of each per layer (",
            model.config().n_layer, ")");
  KVP_CHECK(keys[0].dim() == 4, "KVCache.from_tensors: keys[0] has shape ", keys[0].sizes(),
            "; expected [batch, n_head_kv, slots, head_dim]");
  const int64_t B = keys[0].size(0), S = keys[0].size(2);
  auto i64 = at::TensorOptions().dtype(at::kLong).device(keys[0].device());
  at::Tensor pos = positions ? *positions : at::arange(S, i64).unsqueeze(0).expand({B, S}).contiguous();
  at::Tensor ids = token_ids ? *token_ids : at::full({B, S}, -1, i64);
  at::Tensor val = valid ? *valid : at::ones({B, S}, i64.dtype(at::kBool));
  return KVCache::from_tensors(model.identity(), std::move(keys), std::move(values), pos, ids, val,
                               "KVCache.from_tensors");
}

double rope_theta_of(const Model& model) {
  // The seed's _get_rope_theta read the published config (rope_theta, or rope_parameters of
  // transformers 5.x), not the per-layer resolved RoPE: read the same file.
  const std::string& src = model.config().source;
  std::ifstream in(src);
  KVP_CHECK(in, "get_rope_theta: cannot read ", src, " (the model's config.json)");
  nlohmann::json j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  KVP_CHECK(!j.is_discarded(), "get_rope_theta: ", src, " is not valid JSON");
  return get_rope_theta(parse_raw_config(j, src));
}

}  // namespace

void bind_cache(pyb::module_& m) {
  using namespace pybind11::literals;

  pyb::class_<KVCache>(m, "KVCache",
      "An explicit KV cache: per layer keys and values [B, n_head_kv, S, head_dim] (torch tensors "
      "shared with C++, no copies), positions / token ids / validity [B, S] and the identity of "
      "the model that made it.")
      .def_static("from_tensors", &cache_from_tensors, "model"_a, "keys"_a, "values"_a,
                  "positions"_a = std::nullopt, "token_ids"_a = std::nullopt, "valid"_a = std::nullopt,
                  "A cache of `model` from one key and one value tensor per layer (the tensors are "
                  "used as they are, not copied). positions default to 0..S-1, token ids to -1 "
                  "(unknown), valid to all true.")
      .def_property_readonly("n_layer", &KVCache::n_layer)
      .def_property_readonly("batch", &KVCache::batch)
      .def_property_readonly("length", &KVCache::length, "Slots S.")
      .def("__len__", &KVCache::length)
      .def_property_readonly("dtype", [](const KVCache& c) { return dtype_name(c.dtype()); })
      .def_property_readonly("device", [](const KVCache& c) { return c.device().str(); })
      .def_property_readonly("model_name", [](const KVCache& c) { return c.model().name; })
      .def_property_readonly("model_fingerprint", [](const KVCache& c) { return c.model().fingerprint; })
      .def("key", &KVCache::key, "layer"_a, "Keys of a layer, [B, n_head_kv, S, head_dim] (shared).")
      .def("value", &KVCache::value, "layer"_a, "Values of a layer (shared).")
      .def("set_key", &KVCache::set_key, "layer"_a, "key"_a)
      .def("set_value", &KVCache::set_value, "layer"_a, "value"_a)
      .def_property_readonly("keys", [](const KVCache& c) {
        std::vector<at::Tensor> out;
        for (int64_t i = 0; i < c.n_layer(); ++i) out.push_back(c.key(i));
        return out;
      })
      .def_property_readonly("values", [](const KVCache& c) {
        std::vector<at::Tensor> out;
        for (int64_t i = 0; i < c.n_layer(); ++i) out.push_back(c.value(i));
        return out;
      })
      .def_property("positions", &KVCache::positions, &KVCache::set_positions)
      .def_property_readonly("token_ids", &KVCache::token_ids)
      .def_property_readonly("valid", &KVCache::valid)
      .def("clone", &KVCache::clone, "A deep copy.")
      .def("slice", &KVCache::slice, "begin"_a, "end"_a, "Slots [begin, end) (shares memory).")
      .def("nonfinite_rows", &KVCache::nonfinite_rows,
           "[B] bool: rows with NaN/inf in a valid slot's keys or values.")
      .def("__copy__", [](const KVCache& c) { return KVCache(c); })
      .def("__deepcopy__", [](const KVCache& c, pyb::dict) { return c.clone(); }, "memo"_a)
      .def("__repr__", [](const KVCache& c) {
        return "<kvprime.KVCache " + c.model().name + " layers=" + std::to_string(c.n_layer()) +
               " batch=" + std::to_string(c.batch()) + " slots=" + std::to_string(c.length()) + " " +
               dtype_name(c.dtype()) + " " + c.device().str() + ">";
      });

  // ---- surgery ----------------------------------------------------------------------------------
  m.def("extract_and_truncate_cache", &extract_and_truncate_cache, "cache"_a, "keep_len"_a,
        "The first keep_len slots (a new cache).");
  m.def("extract_and_truncate_cache_with_bos", &extract_and_truncate_cache_with_bos, "cache"_a,
        "doc_len"_a, "BOS + the last doc_len slots (a new cache).");
  auto in_place = [&m](const char* name, KVCache (*fn)(const KVCache&, int64_t, const Model&),
                       const char* doc) {
    m.def(
        name,
        [fn](KVCache& cache, int64_t offset, const Model& model) -> KVCache& {
          KVCache out;
          {
            pyb::gil_scoped_release release;
            out = fn(cache, offset, model);
          }
          cache = std::move(out);
          return cache;
        },
        "cache"_a, "offset"_a, "model"_a, doc, pyb::return_value_policy::reference);
  };
  in_place("correct_rope_positions", &correct_rope_positions,
           "Moves every key back by `offset` positions with the model's own RoPE (in place, as in "
           "the seed; returns the cache).");
  in_place("correct_rope_positions_with_bos", &correct_rope_positions_with_bos,
           "As correct_rope_positions, BOS (slot 0) untouched (in place; returns the cache).");
  in_place("apply_rope_roundtrip_noise", &apply_rope_roundtrip_noise,
           "Rotates non-BOS keys forward by `offset` and back: the rounding noise of a correction "
           "without a net move (in place; returns the cache).");
  m.def("reposition_keys", &reposition_keys, "cache"_a, "new_positions"_a, "model"_a,
        "Re-rotates every key to new_positions [B, S] (a new cache).");
  m.def("build_hybrid_cache", &build_hybrid_cache, "keys_from"_a, "values_from"_a);
  m.def("swap_bos_entry", &swap_bos_entry, "target"_a, "source"_a);
  m.def("replace_values_at_layers", &replace_values_at_layers, "target"_a, "source"_a, "layers"_a);
  m.def("interpolate_values",
        pyb::overload_cast<const KVCache&, const KVCache&, double>(&interpolate_values), "a"_a, "b"_a,
        "alpha"_a, "Values (1 - alpha) * a + alpha * b, keys of a.");
  m.def("interpolate_values",
        pyb::overload_cast<const KVCache&, const KVCache&, const std::vector<double>&>(
            &interpolate_values),
        "a"_a, "b"_a, "alpha"_a, "Per-layer alpha.");
  m.def(
      "select_layer_sources",
      [](const std::vector<KVCache>& sources, const std::vector<int64_t>& key_source,
         const std::vector<int64_t>& value_source) {
        std::vector<const KVCache*> ptrs;
        for (const auto& s : sources) ptrs.push_back(&s);
        return select_layer_sources(ptrs, key_source, value_source);
      },
      "sources"_a, "key_source"_a, "value_source"_a,
      "Layer l takes its keys from sources[key_source[l]] and values from sources[value_source[l]].");

  // ---- the seed's single-theta RoPE --------------------------------------------------------------
  m.def("build_rope_correction", &build_rope_correction, "offset"_a, "head_dim"_a, "theta"_a,
        "The seed's _build_rope_correction: (cos, sin) [head_dim] float32 that rotate a key back by "
        "`offset` positions (angles in float64).");
  m.def("get_rope_theta", &rope_theta_of, "model"_a,
        "The seed's _get_rope_theta of the model's config.json.");
  m.def("correct_rope_positions_single_theta", &correct_rope_positions_single_theta, "cache"_a,
        "offset"_a, "theta"_a, "head_dim"_a, "keep_bos"_a = true,
        "The seed's own correction (one theta, no RoPE scaling), for comparison (a new cache).");

  // ---- files, batching, comparison ---------------------------------------------------------------
  m.def(
      "save_cache",
      [](const std::string& path, const KVCache& cache, const std::map<std::string, std::string>& md) {
        pyb::gil_scoped_release release;
        save_cache(path, cache, md);
      },
      "path"_a, "cache"_a, "metadata"_a = std::map<std::string, std::string>{},
      "Writes a checksummed cache file (safetensors), atomically.");
  m.def(
      "load_cache",
      [](const std::string& path, const std::string& device, const Model* model) {
        at::Device dev = parse_device(device, "device");
        pyb::gil_scoped_release release;
        LoadedCache lc = model ? load_cache_for(path, model->identity(), dev) : load_cache(path, dev);
        return std::make_pair(std::move(lc.cache), std::move(lc.user_metadata));
      },
      "path"_a, "device"_a = "cpu", "model"_a = nullptr,
      "(cache, metadata). The checksum is verified; with `model`, a cache of another model is "
      "refused.");
  m.def("stack_caches", pyb::overload_cast<const std::vector<KVCache>&>(&stack_caches), "caches"_a,
        "One batched cache from single-row caches (left-padded).");
  m.def("cache_row", &cache_row, "cache"_a, "row"_a, "Row b without its padding.");
  m.def("unstack_cache", &unstack_cache, "cache"_a);
  m.def(
      "relative_l2_per_layer",
      [](const KVCache& ref, const KVCache& other) {
        LayerDistance d = relative_l2_per_layer(ref, other);
        return pyb::dict("key"_a = d.key, "value"_a = d.value);
      },
      "reference"_a, "other"_a, "Per layer ||other - ref|| / ||ref|| of keys and values.");
}

}  // namespace kvprime::py
