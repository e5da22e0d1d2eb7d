// A decoder-only transformer loaded from a Hugging Face checkpoint directory (config.json +
// safetensors), run with an explicit KV cache and explicit positions:
//   logits = model.forward(input_ids [B,T], positions [B,T], cache, options)
// appends T slots to `cache`. Llama, Mistral, Qwen2, Qwen3, Gemma 2 and Gemma 3 (text) share one
// block structure; their differences are switches in ModelConfig (see model/config.h).
#pragma once

#include <ATen/ATen.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kvprime/cache/kv_cache.h"
#include "kvprime/model/config.h"
#include "kvprime/model/rope.h"

namespace kvprime {

// How the linear layers' weights are held (model/nf4.h). Nf4: q/k/v/o and gate/up/down are
// quantized at load time (blocks of 64) and dequantized to the compute dtype for each matmul;
// embeddings, norms and lm_head stay in the compute dtype (as bitsandbytes leaves them).
// Nf4DoubleQuant: the same codes, the block scales stored in 8 bits (bnb_4bit_use_double_quant).
enum class WeightFormat { Native, Nf4, Nf4DoubleQuant };
WeightFormat parse_weight_format(const std::string& name, const std::string& what = "weights");
const char* weight_format_name(WeightFormat f);

struct LoadOptions {
  at::ScalarType dtype = at::kFloat;  // compute and cache dtype
  at::Device device = at::kCPU;
  std::string name;                   // identity name; default: the directory's name
  WeightFormat weights = WeightFormat::Native;
};

enum class LogitsMode { All, Last, None, Rows };

struct ForwardOptions {
  LogitsMode logits = LogitsMode::All;
  // [B, T] bool/int (true/1 = real token). Padding tokens are stored as invalid slots that no
  // query ever attends to. Undefined: all tokens are real.
  at::Tensor attention_mask;
  // [B, T, S + T] bool (true = may attend) over the cache's S slots then the T new ones. Replaces
  // the causal rule (padding validity and sliding windows still apply). Undefined: causal.
  at::Tensor custom_mask;
  // LogitsMode::Rows: [N] int64 indices b * T + t of the tokens whose logits are wanted (scoring
  // needs a few answer positions, not the whole [B, T, vocab]); returns [N, vocab].
  at::Tensor logits_rows;
  // false: the new K/V are not appended to `cache` (scoring a cache it must not keep). Saves a
  // copy of every layer's cache.
  bool update_cache = true;
};


class Model {
 public:
  static Model load(const std::string& dir, const LoadOptions& options = {});
  ~Model();
  Model(Model&&) noexcept;
  Model& operator=(Model&&) noexcept;

  const ModelConfig& config() const { return config_; }
  const ModelIdentity& identity() const { return identity_; }
  at::ScalarType dtype() const { return dtype_; }
  at::Device device() const { return device_; }
  const Rotary& rotary(int64_t il) const { return rotary_.at(il); }

  KVCache new_cache(int64_t batch = 1) const;

  // input_ids, positions: [B, T] int64 (any device; moved to the model's). Returns logits
  // [B, T, vocab] (All), [B, vocab] (Last: each row's last real token), [N, vocab] (Rows) or
  // undefined (None), in float32. The cache must come from this model; on error the cache is left
  // unchanged. Token ids and positions given on the host are range-checked there; on the device
  // only the token ids are (one synchronisation), positions are trusted.
  at::Tensor forward(const at::Tensor& input_ids, const at::Tensor& positions, KVCache& cache,
                     const ForwardOptions& options = {}) const;

  // Positions continuing the cache: row b gets next_positions()[b] + 0..T-1.
  at::Tensor continue_positions(const KVCache& cache, int64_t T) const;

 private:
  Model();
  ModelConfig config_;
  ModelIdentity identity_;
  at::ScalarType dtype_ = at::kFloat;
  at::Device device_ = at::kCPU;
  std::vector<Rotary> rotary_;  // one per layer
  // rope_group_[il]: the first layer with the same rotary frequencies (cos/sin computed once).
  std::vector<int64_t> rope_group_;
  struct Weights;
  std::unique_ptr<Weights> w_;
};

}  // namespace kvprime
