// Model configuration in two stages (as candle and gpt-fast do):
//   config.json --parse--> RawConfig (fields named exactly as in config.json, all optional)
//               --resolve--> ModelConfig (every derived field computed once, validated).
// Both transformers 4.x files (rope_theta, rope_scaling, rope_local_base_freq,
// sliding_window_pattern) and 5.x files (rope_parameters, per layer type for Gemma 3, layer_types)
// are read. Fields a file leaves out take transformers' defaults for that model_type.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace kvprime {

enum class Arch { Llama, Mistral, Qwen2, Qwen3, Gemma2, Gemma3 };
std::string arch_name(Arch a);

enum class Activation { SiLU, GeluTanh, GeluExact };

enum class RopeType { Default, Linear, Dynamic, Llama3, Yarn };
std::string rope_type_name(RopeType t);

// One RoPE setting (HF's `rope_parameters` entry / legacy rope_theta + rope_scaling).
struct RopeParams {
  RopeType type = RopeType::Default;
  double theta = 10000.0;
  double factor = 1.0;                        // linear, dynamic, llama3, yarn
  double partial_rotary_factor = 1.0;         // rotary_dim = int(head_dim * partial_rotary_factor)
  // llama3, yarn: the pre-training context (0 = max_position_embeddings, as HF's default). Dynamic
  // NTK scaling ignores it: transformers rescales against max_position_embeddings.
  int64_t original_max_position_embeddings = 0;
  double low_freq_factor = 1.0, high_freq_factor = 4.0;  // llama3
  std::optional<double> attention_factor;     // yarn (HF: get_mscale(factor) when absent)
  double beta_fast = 32.0, beta_slow = 1.0;   // yarn
  std::optional<double> mscale, mscale_all_dim;  // yarn (DeepSeek style)
  bool truncate = true;                       // yarn
};

enum class AttentionKind { Full, Sliding };

// Per-layer attention settings (Gemma 2/3 alternate local and global layers).
struct LayerSpec {
  AttentionKind kind = AttentionKind::Full;
  int64_t sliding_window = 0;  // 0: unlimited; else a key is visible iff q_slot - k_slot < window
  RopeParams rope;
};

// config.json as written: every field optional, names as in the file. A field that is absent
// and one written as null both read as nullopt / empty; `null_fields` tells them apart, because
// for transformers an explicit None can differ from the default (Mistral's "sliding_window": null
// means no window, an absent one means 4096).
struct RawConfig {
  nlohmann::json json;  // the (text_)config object this was read from
  std::string source;   // file path, for error messages
  std::string field_prefix;  // "text_config." when read from a multimodal wrapper; for messages
  std::vector<std::string> architectures;
  std::optional<std::string> model_type;
  std::optional<int64_t> vocab_size, hidden_size, intermediate_size, num_hidden_layers,
      num_attention_heads, num_key_value_heads, head_dim, max_position_embeddings,
      sliding_window, sliding_window_pattern, max_window_layers, bos_token_id, pad_token_id;
  std::vector<int64_t> eos_token_id;  // int or list in the file
  std::optional<double> rms_norm_eps, rope_theta, rope_local_base_freq, partial_rotary_factor,
      query_pre_attn_scalar, attn_logit_softcapping, final_logit_softcapping;
  std::optional<bool> attention_bias, mlp_bias, tie_word_embeddings, use_sliding_window,
      use_bidirectional_attention;
  std::optional<std::string> hidden_act, hidden_activation, torch_dtype, dtype;
  nlohmann::json rope_scaling;     // null when absent
  nlohmann::json rope_parameters;  // transformers 5.x; null when absent
  std::vector<std::string> layer_types;
  std::set<std::string> null_fields;  // names of the fields written as null
  // Read from the `text_config` of a multimodal wrapper (Gemma3ForConditionalGeneration, whose
  // weights live under "language_model.model." / "model.language_model.").
  bool from_text_config = false;

  bool is_null(const std::string& field) const { return null_fields.count(field) != 0; }
};

// `source` names the file in error messages. A Gemma3ForConditionalGeneration config (model_type
// "gemma3") is read from its `text_config`; token ids, dtype and tie_word_embeddings that the
// text_config leaves out are taken from the outer object.
RawConfig parse_raw_config(const nlohmann::json& j, const std::string& source);

struct ModelConfig {
  std::string source;        // path of config.json
  std::string architecture;  // e.g. "LlamaForCausalLM"
  std::string model_type;    // e.g. "llama", "gemma3_text"
  Arch arch = Arch::Llama;

  int64_t vocab_size = 0;
  int64_t hidden_size = 0;         // d_model
  int64_t intermediate_size = 0;   // d_ff
  int64_t n_layer = 0;
  int64_t n_head = 0;
  int64_t n_head_kv = 0;           // GQA: n_head % n_head_kv == 0
  int64_t head_dim = 0;            // may differ from hidden_size / n_head (Gemma, Qwen3)
  int64_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;

  bool qkv_bias = false;           // Qwen2: q/k/v projections have bias
  bool o_bias = false;             // attention_bias on Llama also biases o_proj
  bool mlp_bias = false;
  bool tie_word_embeddings = false;
  bool qk_norm = false;            // Qwen3, Gemma3: RMSNorm over head_dim on q and k before RoPE
  bool norm_one_plus = false;      // Gemma: RMSNorm multiplies by (1 + w), computed in float32
  bool sandwich_norm = false;      // Gemma 2/3: post-attention and pre/post-feedforward norms
  double embed_scale = 1.0;        // Gemma: sqrt(hidden_size)
  double attn_scale = 0.0;         // softmax scale: head_dim^-0.5, or query_pre_attn_scalar^-0.5
  std::optional<double> attn_logit_softcap;   // Gemma 2
  std::optional<double> final_logit_softcap;  // Gemma 2
  Activation act = Activation::SiLU;

  std::vector<LayerSpec> layers;  // n_layer entries

  std::optional<int64_t> bos_token_id, pad_token_id;
  std::vector<int64_t> eos_token_ids;
  std::string torch_dtype;  // as published ("bfloat16"), informative

  // Prefix of the language model's tensors in the checkpoint: "model." for causal LMs; for
  // Gemma3ForConditionalGeneration "language_model.model." (4.x) or "model.language_model." (5.x),
  // chosen by the loader from the names present. The LM head is found next to it.
  std::vector<std::string> weight_prefixes;

  int64_t rotary_dim(int64_t il) const;  // int(head_dim * partial_rotary_factor) of layer il
};

// Resolves a raw config: applies the model type's defaults, reads RoPE in either format,
// validates (positive sizes, n_head % n_head_kv == 0, known activation and rope type, ...).
// Supported model types: llama, mistral, qwen2, qwen3, gemma2, gemma3_text (also inside a
// Gemma3ForConditionalGeneration wrapper). Errors name the file, the field and the fix.
ModelConfig resolve_config(const RawConfig& raw);

// Reads `path` (a config.json, or a directory holding one). Errors name the file and field.
ModelConfig load_model_config(const std::string& path);

}  // namespace kvprime
