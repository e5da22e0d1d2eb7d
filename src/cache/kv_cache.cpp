#include "kvprime/cache/kv_cache.h"

#include "kvprime/core/compat.h"

#include "kvprime/core/dtype.h"
#include "kvprime/core/error.h"

namespace kvprime {

KVCache::KVCache(ModelIdentity model, int64_t batch, at::ScalarType dtype, at::Device device)
    : model_(std::move(model)), batch_(batch), dtype_(dtype), device_(device) {
  KVP_CHECK(batch > 0, "KVCache: batch must be positive, got ", batch);
  KVP_CHECK(model_.n_layer > 0 && model_.n_head_kv > 0 && model_.head_dim > 0,
            "KVCache: model identity '", model_.name, "' has no layer/head sizes");
  auto opts = at::TensorOptions().dtype(dtype).device(device);
  for (int64_t il = 0; il < model_.n_layer; ++il) {
    keys_.push_back(at::empty({batch, model_.n_head_kv, 0, model_.head_dim}, opts));
    values_.push_back(at::empty({batch, model_.n_head_kv, 0, model_.head_dim}, opts));
  }
  auto meta = at::TensorOptions().device(device);
  positions_ = at::empty({batch, 0}, meta.dtype(at::kLong));
  token_ids_ = at::empty({batch, 0}, meta.dtype(at::kLong));
  valid_ = at::empty({batch, 0}, meta.dtype(at::kBool));
}

void KVCache::check_layer(int64_t il) const {
  KVP_CHECK(il >= 0 && il < n_layer(), "KVCache: layer ", il, " out of range; the cache has ",
            n_layer(), " layers (0..", n_layer() - 1, ")");
}

const at::Tensor& KVCache::key(int64_t il) const {
  check_layer(il);
  return keys_[il];
}

const at::Tensor& KVCache::value(int64_t il) const {
  check_layer(il);
  return values_[il];
}

static void check_replacement(const at::Tensor& old, const at::Tensor& t, const char* what,
                              int64_t il) {
  KVP_CHECK(t.defined(), "KVCache::set_", what, "(layer ", il, "): tensor is undefined");
  KVP_CHECK(t.sizes() == old.sizes(), "KVCache::set_", what, "(layer ", il, "): shape ",
            shape_str(t.sizes().vec()), " does not match the cache's ", shape_str(old.sizes().vec()),
            "; use slice()/append() to change the length");
  KVP_CHECK(t.scalar_type() == old.scalar_type(), "KVCache::set_", what, "(layer ", il,
            "): dtype ", dtype_name(t.scalar_type()), " does not match the cache's ",
            dtype_name(old.scalar_type()));
  KVP_CHECK(t.device() == old.device(), "KVCache::set_", what, "(layer ", il, "): device ",
            t.device().str(), " does not match the cache's ", old.device().str());
}

void KVCache::set_key(int64_t il, at::Tensor k) {
  check_layer(il);
  check_replacement(keys_[il], k, "key", il);
  keys_[il] = std::move(k);
}

void KVCache::set_value(int64_t il, at::Tensor v) {
  check_layer(il);
  check_replacement(values_[il], v, "value", il);
  values_[il] = std::move(v);
}

void KVCache::set_positions(at::Tensor positions) {
  KVP_CHECK(positions.defined() && positions.sizes() == positions_.sizes(),
            "KVCache::set_positions: expected shape ", shape_str(positions_.sizes().vec()));
  positions_ = positions.to(device_, at::kLong);
}

KVCache KVCache::from_tensors(ModelIdentity model, std::vector<at::Tensor> keys,
                              std::vector<at::Tensor> values, at::Tensor positions,
                              at::Tensor token_ids, at::Tensor valid, const std::string& origin) {
  KVP_CHECK(model.n_layer > 0 && model.n_head_kv > 0 && model.head_dim > 0, origin,
            ": model identity '", model.name, "' has no layer/head sizes");
  KVP_CHECK(static_cast<int64_t>(keys.size()) == model.n_layer &&
                static_cast<int64_t>(values.size()) == model.n_layer,
            origin, ": ", keys.size(), " key and ", values.size(), " value tensors, but model '",
            model.name, "' has ", model.n_layer, " layers");
  KVP_CHECK(positions.defined() && positions.dim() == 2, origin,
            ": positions must be [batch, length], got ",
            positions.defined() ? shape_str(positions.sizes().vec()) : std::string("nothing"));
  const int64_t B = positions.size(0), S = positions.size(1);
  KVP_CHECK(B > 0, origin, ": a cache needs at least one row (positions ",
            shape_str(positions.sizes().vec()), ")");
  const std::vector<int64_t> meta_shape{B, S};
  for (auto* t : {&positions, &token_ids, &valid}) {
    const char* what = t == &positions ? "positions" : t == &token_ids ? "token_ids" : "valid";
    KVP_CHECK(t->defined() && t->sizes().vec() == meta_shape, origin, ": ", what, " has shape ",
              t->defined() ? shape_str(t->sizes().vec()) : std::string("(none)"), ", expected ",
              shape_str(meta_shape));
  }
  KVP_CHECK(positions.scalar_type() == at::kLong && token_ids.scalar_type() == at::kLong, origin,
            ": positions and token_ids must be int64 (got ", dtype_name(positions.scalar_type()),
            ", ", dtype_name(token_ids.scalar_type()), ")");
  KVP_CHECK(valid.scalar_type() == at::kBool, origin, ": valid must be bool, got ",
            dtype_name(valid.scalar_type()));
  const std::vector<int64_t> kv_shape{B, model.n_head_kv, S, model.head_dim};
  const at::ScalarType dtype = keys[0].defined() ? keys[0].scalar_type() : at::kFloat;
  const at::Device device = positions.device();
  for (int64_t il = 0; il < model.n_layer; ++il) {
    for (const auto* t : {&keys[il], &values[il]}) {
      const char* what = t == &keys[il] ? "keys" : "values";
      KVP_CHECK(t->defined() && t->sizes().vec() == kv_shape, origin, ": layer ", il, " ", what,
                " have shape ", t->defined() ? shape_str(t->sizes().vec()) : std::string("(none)"),
                ", expected [batch, n_head_kv, length, head_dim] = ", shape_str(kv_shape),
                " for model '", model.name, "'");
      KVP_CHECK(t->scalar_type() == dtype, origin, ": layer ", il, " ", what, " are ",
                dtype_name(t->scalar_type()), " but layer 0 keys are ", dtype_name(dtype),
                "; a cache has one dtype");
      KVP_CHECK(at::isFloatingType(dtype), origin, ": K/V dtype ", dtype_name(dtype),
                " is not a floating point type");
      KVP_CHECK(t->device() == device, origin, ": layer ", il, " ", what, " are on ",
                t->device().str(), " but positions are on ", device.str());
    }
  }
  KVP_CHECK(token_ids.device() == device && valid.device() == device, origin,
            ": token_ids/valid are not on the positions' device ", device.str());
  KVCache c;
  c.model_ = std::move(model);
  c.batch_ = B;
  c.dtype_ = dtype;
  c.device_ = device;
  c.keys_ = std::move(keys);
  c.values_ = std::move(values);
  c.positions_ = std::move(positions);
  c.token_ids_ = std::move(token_ids);
  c.valid_ = std::move(valid);
  return c;
}

at::Tensor KVCache::nonfinite_rows() const {
  at::Tensor bad = at::zeros({batch_}, at::TensorOptions().dtype(at::kBool).device(device_));
  if (length() == 0) return bad;
  for (size_t il = 0; il < keys_.size(); ++il)
    for (const at::Tensor* t : {&keys_[il], &values_[il]}) {
      // [B, H, S, D] -> [B, S]: a slot is bad when any head/element of it is not finite.
      at::Tensor slot_bad = at::logical_not(at::isfinite(*t)).any(3).any(1);
      bad = bad | (slot_bad & valid_).any(1);
    }
  return bad;
}

KVCache KVCache::clone() const {
  KVCache c;
  c.model_ = model_;
  c.batch_ = batch_;
  c.dtype_ = dtype_;
  c.device_ = device_;
  for (const auto& k : keys_) c.keys_.push_back(k.clone());
  for (const auto& v : values_) c.values_.push_back(v.clone());
  if (positions_.defined()) {
    c.positions_ = positions_.clone();
    c.token_ids_ = token_ids_.clone();
    c.valid_ = valid_.clone();
  }
  return c;
}

void KVCache::append(const std::vector<at::Tensor>& k, const std::vector<at::Tensor>& v,
                     const at::Tensor& positions, const at::Tensor& token_ids,
                     const at::Tensor& valid) {
  KVP_ASSERT(static_cast<int64_t>(k.size()) == n_layer() && k.size() == v.size(),
             "append: one K and V per layer");
  const int64_t T = positions.size(1);
  KVP_ASSERT(positions.dim() == 2 && positions.size(0) == batch_);
  KVP_ASSERT(token_ids.sizes() == positions.sizes() && valid.sizes() == positions.sizes());
  for (int64_t il = 0; il < n_layer(); ++il) {
    KVP_ASSERT(k[il].dim() == 4 && k[il].size(0) == batch_ && k[il].size(2) == T &&
                   k[il].size(1) == model_.n_head_kv && k[il].size(3) == model_.head_dim,
               "append: layer ", il, " key shape ", shape_str(k[il].sizes().vec()));
    KVP_ASSERT(v[il].sizes() == k[il].sizes());
  }
  // An empty cache takes the tensors as they are (no copy): append never writes into them later.
  const bool empty = length() == 0;
  for (int64_t il = 0; il < n_layer(); ++il) {
    keys_[il] = empty ? k[il].to(dtype_) : at::cat({keys_[il], k[il].to(dtype_)}, 2);
    values_[il] = empty ? v[il].to(dtype_) : at::cat({values_[il], v[il].to(dtype_)}, 2);
  }
  auto meta = [&](at::Tensor& mine, const at::Tensor& add, at::ScalarType t) {
    at::Tensor a = compat::to_device(add, device_).to(t);
    mine = empty ? a : at::cat({mine, a}, 1);
  };
  meta(positions_, positions, at::kLong);
  meta(token_ids_, token_ids, at::kLong);
  meta(valid_, valid, at::kBool);
}

KVCache KVCache::slice(int64_t begin, int64_t end) const {
  KVP_CHECK(0 <= begin && begin <= end && end <= length(), "KVCache::slice: range [", begin, ", ",
            end, ") is outside the cache of length ", length());
  KVCache c;
  c.model_ = model_;
  c.batch_ = batch_;
  c.dtype_ = dtype_;
  c.device_ = device_;
  for (const auto& k : keys_) c.keys_.push_back(k.slice(2, begin, end).contiguous().clone());
  for (const auto& v : values_) c.values_.push_back(v.slice(2, begin, end).contiguous().clone());
  c.positions_ = positions_.slice(1, begin, end).clone();
  c.token_ids_ = token_ids_.slice(1, begin, end).clone();
  c.valid_ = valid_.slice(1, begin, end).clone();
  return c;
}

at::Tensor KVCache::next_positions() const {
  if (length() == 0) return at::zeros({batch_}, positions_.options());
  // Invalid (padding) slots must not count: give them -1 before the max.
  auto p = at::where(valid_, positions_, at::full_like(positions_, -1));
  return std::get<0>(p.max(1)) + 1;
}

void KVCache::check_compatible(const KVCache& other, const std::string& what) const {
  KVP_CHECK(model_ == other.model_, what, ": caches come from different models ('", model_.name,
            "' fingerprint ", model_.fingerprint, " vs '", other.model_.name, "' fingerprint ",
            other.model_.fingerprint, "); build both caches with the same model");
  KVP_CHECK(dtype_ == other.dtype_, what, ": caches have different dtypes (",
            dtype_name(dtype_), " vs ", dtype_name(other.dtype_), ")");
  KVP_CHECK(batch_ == other.batch_, what, ": caches have different batch sizes (", batch_,
            " vs ", other.batch_, ")");
  KVP_CHECK(length() == other.length(), what, ": caches have different lengths (", length(),
            " vs ", other.length(), ")");
  KVP_CHECK(device_ == other.device_, what, ": caches live on different devices (",
            device_.str(), " vs ", other.device_.str(), ")");
}

}  // namespace kvprime
