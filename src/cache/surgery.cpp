#include "kvprime/cache/surgery.h"

#include <string>

#include "kvprime/core/error.h"
#include "kvprime/model/model.h"

namespace kvprime {

namespace {

// Rebuilds a cache from per-layer tensors and metadata (shapes already known to be right).
KVCache rebuild(const KVCache& like, std::vector<at::Tensor> keys, std::vector<at::Tensor> values,
                at::Tensor positions, at::Tensor token_ids, at::Tensor valid, const char* what) {
  return KVCache::from_tensors(like.model(), std::move(keys), std::move(values),
                               std::move(positions), std::move(token_ids), std::move(valid), what);
}

std::vector<at::Tensor> all_keys(const KVCache& c) {
  std::vector<at::Tensor> out;
  for (int64_t il = 0; il < c.n_layer(); ++il) out.push_back(c.key(il));
  return out;
}
std::vector<at::Tensor> all_values(const KVCache& c) {
  std::vector<at::Tensor> out;
  for (int64_t il = 0; il < c.n_layer(); ++il) out.push_back(c.value(il));
  return out;
}

// Keeps the slots listed in `idx` ([n] int64) of every tensor.
KVCache select_slots(const KVCache& c, const at::Tensor& idx, const char* what) {
  std::vector<at::Tensor> k, v;
  for (int64_t il = 0; il < c.n_layer(); ++il) {
    k.push_back(c.key(il).index_select(2, idx));
    v.push_back(c.value(il).index_select(2, idx));
  }
  return rebuild(c, std::move(k), std::move(v), c.positions().index_select(1, idx),
                 c.token_ids().index_select(1, idx), c.valid().index_select(1, idx), what);
}

void check_model(const KVCache& cache, const Model& model, const char* what) {
  KVP_CHECK(cache.model() == model.identity(), what, ": the cache was built by model '",
            cache.model().name, "' but the rotary frequencies given are model '",
            model.identity().name, "'s; pass the model that built the cache");
}

// Same model/dtype/device/batch/length, and equal token ids where both caches know them.
void check_mixable(const KVCache& a, const KVCache& b, const char* what) {
  a.check_compatible(b, what);
  if (a.length() == 0) return;
  auto known = (a.token_ids() >= 0).logical_and(b.token_ids() >= 0);
  auto differ = known.logical_and(a.token_ids() != b.token_ids());
  if (differ.any().item<bool>()) {
    auto nz = differ.nonzero();  // [n, 2] (row, slot)
    const int64_t row = nz[0][0].item<int64_t>(), slot = nz[0][1].item<int64_t>();
    KVP_FAIL(what, ": the caches hold different tokens (row ", row, ", slot ", slot, ": id ",
             a.token_ids()[row][slot].item<int64_t>(), " vs ", b.token_ids()[row][slot].item<int64_t>(),
             "); their document tokenizations differ (BPE boundary). Build both from the same "
             "document ids, e.g. with build_matched_caches");
  }
}

}  // namespace

KVCache extract_and_truncate_cache(const KVCache& cache, int64_t keep_len) {
  KVP_CHECK(keep_len > 0 && keep_len <= cache.length(), "extract_and_truncate_cache: keep_len ",
            keep_len, " must be in [1, ", cache.length(), "] (the cache has ", cache.length(),
            " slots)");
  return cache.slice(cache.length() - keep_len, cache.length());
}

KVCache extract_and_truncate_cache_with_bos(const KVCache& cache, int64_t doc_len) {
  KVP_CHECK(cache.length() >= 1, "extract_and_truncate_cache_with_bos: the cache is empty");
  KVP_CHECK(doc_len >= 0 && doc_len < cache.length(), "extract_and_truncate_cache_with_bos: "
            "doc_len ", doc_len, " must be in [0, ", cache.length() - 1, "]: slot 0 is BOS and the "
            "cache has ", cache.length(), " slots");
  const int64_t S = cache.length();
  auto idx = at::cat({at::zeros({1}, at::kLong), at::arange(S - doc_len, S, at::kLong)})
                 .to(cache.device());
  return select_slots(cache, idx, "extract_and_truncate_cache_with_bos");
}

KVCache reposition_keys(const KVCache& cache, const at::Tensor& new_positions, const Model& model) {
  check_model(cache, model, "reposition_keys");
  const int64_t B = cache.batch(), S = cache.length();
  KVP_CHECK(new_positions.defined() && !at::isFloatingType(new_positions.scalar_type()),
            "reposition_keys: new_positions must be an integer tensor");
  at::Tensor target = new_positions.to(cache.device(), at::kLong);
  if (target.dim() == 1) target = target.unsqueeze(0).expand({B, S});
  KVP_CHECK(target.dim() == 2 && target.size(0) == B && target.size(1) == S,
            "reposition_keys: new_positions must be [", B, ", ", S, "] or [", S, "], got ",
            shape_str(new_positions.sizes().vec()));
  at::Tensor delta = target - cache.positions();  // [B, S]
  std::vector<at::Tensor> keys;
  for (int64_t il = 0; il < cache.n_layer(); ++il)
    keys.push_back(model.rotary(il).shift(cache.key(il), delta).contiguous());
  return rebuild(cache, std::move(keys), all_values(cache), target.contiguous(),
                 cache.token_ids(), cache.valid(), "reposition_keys");
}

// delta[b, s] = -offset for slots >= first, 0 before.
static KVCache move_back(const KVCache& cache, int64_t offset, const Model& model, int64_t first,
                         const char* what) {
  check_model(cache, model, what);
  if (offset == 0 || cache.length() <= first) return cache;  // nothing moves: bit-identical
  at::Tensor delta = at::zeros({cache.length()}, at::kLong);
  delta.slice(0, first).fill_(-offset);
  delta = delta.to(cache.device());
  std::vector<at::Tensor> keys;
  for (int64_t il = 0; il < cache.n_layer(); ++il) {
    at::Tensor k = cache.key(il);
    at::Tensor moved = model.rotary(il).shift(k.slice(2, first), delta.slice(0, first));
    keys.push_back(first ? at::cat({k.slice(2, 0, first), moved}, 2) : moved.contiguous());
  }
  return rebuild(cache, std::move(keys), all_values(cache), cache.positions() + delta.unsqueeze(0),
                 cache.token_ids(), cache.valid(), what);
}

KVCache correct_rope_positions(const KVCache& cache, int64_t offset, const Model& model) {
  return move_back(cache, offset, model, 0, "correct_rope_positions");
}

KVCache correct_rope_positions_with_bos(const KVCache& cache, int64_t offset, const Model& model) {
  return move_back(cache, offset, model, 1, "correct_rope_positions_with_bos");
}

KVCache apply_rope_roundtrip_noise(const KVCache& cache, int64_t offset, const Model& model) {
  check_model(cache, model, "apply_rope_roundtrip_noise");
  if (cache.length() <= 1) return cache;
  auto plus = at::full({}, offset, at::kLong), minus = at::full({}, -offset, at::kLong);
  std::vector<at::Tensor> keys;
  for (int64_t il = 0; il < cache.n_layer(); ++il) {
    const Rotary& rot = model.rotary(il);
    at::Tensor k = cache.key(il);
    // shift() rounds its result to k's dtype: away and back is two roundings in the cache dtype.
    at::Tensor doc = rot.shift(rot.shift(k.slice(2, 1), plus), minus);
    keys.push_back(at::cat({k.slice(2, 0, 1), doc}, 2));
  }
  return rebuild(cache, std::move(keys), all_values(cache), cache.positions(), cache.token_ids(),
                 cache.valid(), "apply_rope_roundtrip_noise");
}

KVCache build_hybrid_cache(const KVCache& keys_from, const KVCache& values_from) {
  check_mixable(keys_from, values_from, "build_hybrid_cache");
  return rebuild(keys_from, all_keys(keys_from), all_values(values_from), keys_from.positions(),
                 keys_from.token_ids(), keys_from.valid().logical_and(values_from.valid()),
                 "build_hybrid_cache");
}

KVCache swap_bos_entry(const KVCache& target, const KVCache& source) {
  KVP_CHECK(target.length() >= 1 && source.length() >= 1, "swap_bos_entry: both caches need a "
            "slot 0 (target has ", target.length(), " slots, source ", source.length(), ")");
  KVP_CHECK(target.model() == source.model(), "swap_bos_entry: caches come from different models ('",
            target.model().name, "' vs '", source.model().name, "')");
  KVP_CHECK(target.dtype() == source.dtype() && target.batch() == source.batch() &&
                target.device() == source.device(),
            "swap_bos_entry: caches differ in dtype, batch or device");
  std::vector<at::Tensor> k, v;
  for (int64_t il = 0; il < target.n_layer(); ++il) {
    k.push_back(at::cat({source.key(il).slice(2, 0, 1), target.key(il).slice(2, 1)}, 2));
    v.push_back(at::cat({source.value(il).slice(2, 0, 1), target.value(il).slice(2, 1)}, 2));
  }
  auto first = [&](const at::Tensor& s, const at::Tensor& t) {
    return at::cat({s.slice(1, 0, 1), t.slice(1, 1)}, 1);
  };
  return rebuild(target, std::move(k), std::move(v), first(source.positions(), target.positions()),
                 first(source.token_ids(), target.token_ids()),
                 first(source.valid(), target.valid()), "swap_bos_entry");
}

KVCache replace_values_at_layers(const KVCache& target, const KVCache& source,
                                 const std::vector<int64_t>& layers) {
  check_mixable(target, source, "replace_values_at_layers");
  auto values = all_values(target);
  for (int64_t il : layers) {
    KVP_CHECK(il >= 0 && il < target.n_layer(), "replace_values_at_layers: layer ", il,
              " out of range [0, ", target.n_layer(), ")");
    values[il] = source.value(il);
  }
  return rebuild(target, all_keys(target), std::move(values), target.positions(),
                 target.token_ids(), target.valid(), "replace_values_at_layers");
}

KVCache interpolate_values(const KVCache& a, const KVCache& b, const std::vector<double>& alpha) {
  check_mixable(a, b, "interpolate_values");
  KVP_CHECK(static_cast<int64_t>(alpha.size()) == a.n_layer(), "interpolate_values: ",
            alpha.size(), " alphas given for ", a.n_layer(), " layers; give one per layer");
  std::vector<at::Tensor> values;
  for (int64_t il = 0; il < a.n_layer(); ++il) {
    const double t = alpha[il];
    if (t == 0.0) { values.push_back(a.value(il)); continue; }
    if (t == 1.0) { values.push_back(b.value(il)); continue; }
    // Blend in float32 (or wider) and round once to the cache dtype.
    const auto work = at::promote_types(a.dtype(), at::kFloat);
    at::Tensor va = a.value(il).to(work), vb = b.value(il).to(work);
    values.push_back((va * (1.0 - t) + vb * t).to(a.dtype()));
  }
  return rebuild(a, all_keys(a), std::move(values), a.positions(), a.token_ids(),
                 a.valid().logical_and(b.valid()), "interpolate_values");
}

KVCache interpolate_values(const KVCache& a, const KVCache& b, double alpha) {
  return interpolate_values(a, b, std::vector<double>(a.n_layer(), alpha));
}

KVCache select_layer_sources(const std::vector<const KVCache*>& sources,
                             const std::vector<int64_t>& key_source,
                             const std::vector<int64_t>& value_source) {
  KVP_CHECK(!sources.empty() && sources[0], "select_layer_sources: no source caches given");
  const KVCache& first = *sources[0];
  for (size_t i = 0; i < sources.size(); ++i) {
    KVP_CHECK(sources[i] != nullptr, "select_layer_sources: source ", i, " is null");
    check_mixable(first, *sources[i], ("select_layer_sources (source " + std::to_string(i) + ")").c_str());
    KVP_CHECK(at::equal(first.positions(), sources[i]->positions()), "select_layer_sources: source ",
              i, " holds keys at other positions than source 0; correct both to the same "
              "positions first (correct_rope_positions_with_bos)");
  }
  const int64_t L = first.n_layer();
  KVP_CHECK(static_cast<int64_t>(key_source.size()) == L && static_cast<int64_t>(value_source.size()) == L,
            "select_layer_sources: key_source and value_source need one entry per layer (", L, ")");
  std::vector<at::Tensor> k, v;
  at::Tensor valid = first.valid();
  for (int64_t il = 0; il < L; ++il) {
    for (int64_t s : {key_source[il], value_source[il]})
      KVP_CHECK(s >= 0 && s < static_cast<int64_t>(sources.size()), "select_layer_sources: layer ",
                il, " names source ", s, " but only ", sources.size(), " were given");
    k.push_back(sources[key_source[il]]->key(il));
    v.push_back(sources[value_source[il]]->value(il));
  }
  for (const KVCache* s : sources) valid = valid.logical_and(s->valid());
  return rebuild(first, std::move(k), std::move(v), first.positions(), first.token_ids(), valid,
                 "select_layer_sources");
}

}  // namespace kvprime
