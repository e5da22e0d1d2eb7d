// The explicit KV cache: per layer K and V tensors plus per-slot metadata, kept apart as in
// llama.cpp (tensors vs cells). Slots are the S axis; slot order is attention order (causality
// and sliding windows are by slot), `positions` is what RoPE was applied with. Surgery (next
// issues) edits positions and re-rotates keys explicitly.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <string>
#include <vector>

namespace kvprime {

// Which model made a cache. Caches from different identities are never combined.
struct ModelIdentity {
  std::string name;         // human-readable (checkpoint directory name or given id)
  std::string fingerprint;  // hash of config + weight headers (Checkpoint::fingerprint)
  int64_t n_layer = 0, n_head_kv = 0, head_dim = 0;

  bool operator==(const ModelIdentity& o) const {
    return fingerprint == o.fingerprint && n_layer == o.n_layer && n_head_kv == o.n_head_kv &&
           head_dim == o.head_dim;
  }
  bool operator!=(const ModelIdentity& o) const { return !(*this == o); }
};

class KVCache {
 public:
  KVCache() = default;
  // An empty cache (S = 0) for `batch` rows on `device` in `dtype`.
  KVCache(ModelIdentity model, int64_t batch, at::ScalarType dtype, at::Device device);

  const ModelIdentity& model() const { return model_; }
  int64_t n_layer() const { return static_cast<int64_t>(keys_.size()); }
  int64_t batch() const { return batch_; }
  int64_t length() const { return positions_.defined() ? positions_.size(1) : 0; }  // S
  at::ScalarType dtype() const { return dtype_; }
  at::Device device() const { return device_; }

  const at::Tensor& key(int64_t il) const;    // [B, n_head_kv, S, head_dim]
  const at::Tensor& value(int64_t il) const;  // [B, n_head_kv, S, head_dim]
  // Replace one layer's keys/values: shape, dtype and device must equal the current ones.
  void set_key(int64_t il, at::Tensor k);
  void set_value(int64_t il, at::Tensor v);

  const at::Tensor& positions() const { return positions_; }  // [B, S] int64
  const at::Tensor& token_ids() const { return token_ids_; }  // [B, S] int64, -1 if unknown
  const at::Tensor& valid() const { return valid_; }          // [B, S] bool, false = padding
  void set_positions(at::Tensor positions);                    // [B, S] int64

  // Assembles a cache from tensors (as loaded from a file or stacked): keys/values n_layer x
  // [B, n_head_kv, S, head_dim] of one dtype and device, positions/token_ids [B, S] int64, valid
  // [B, S] bool. Every shape, dtype and device is checked against `model`; errors name `origin`.
  static KVCache from_tensors(ModelIdentity model, std::vector<at::Tensor> keys,
                              std::vector<at::Tensor> values, at::Tensor positions,
                              at::Tensor token_ids, at::Tensor valid,
                              const std::string& origin = "KVCache::from_tensors");

  // Copies (copy construction / assignment) share tensors with the original. That is safe: no
  // kvprime operation writes into a cache tensor in place (append and set_* rebind).
  // Deep copy: no tensor is shared with the original.
  KVCache clone() const;

  // Appends T slots to every layer at once. k[il], v[il]: [B, n_head_kv, T, head_dim];
  // positions, token_ids: [B, T] int64; valid: [B, T] bool.
  void append(const std::vector<at::Tensor>& k, const std::vector<at::Tensor>& v,
              const at::Tensor& positions, const at::Tensor& token_ids, const at::Tensor& valid);

  // Keeps slots [begin, end) of every layer and of the metadata.
  KVCache slice(int64_t begin, int64_t end) const;

  // Position the next token of each row takes: max valid position + 1 ([B] int64; 0 if empty).
  at::Tensor next_positions() const;

  // [B] bool (on the cache's device, no host synchronisation): true for each row with a NaN or an
  // infinity in a valid slot's key or value in any layer. Padding slots are not looked at (their
  // contents are never attended to). All false for an empty cache.
  at::Tensor nonfinite_rows() const;

  // Throws (naming `what`) unless `other` comes from the same model, dtype, batch and shape.
  void check_compatible(const KVCache& other, const std::string& what) const;

 private:
  void check_layer(int64_t il) const;

  ModelIdentity model_;
  int64_t batch_ = 0;
  at::ScalarType dtype_ = at::kFloat;
  at::Device device_ = at::kCPU;
  std::vector<at::Tensor> keys_;    // n_layer x [B, n_head_kv, S, head_dim]
  std::vector<at::Tensor> values_;  // n_layer x [B, n_head_kv, S, head_dim]
  at::Tensor positions_;            // [B, S] int64
  at::Tensor token_ids_;            // [B, S] int64
  at::Tensor valid_;                // [B, S] bool
};

}  // namespace kvprime
