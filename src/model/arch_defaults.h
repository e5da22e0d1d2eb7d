// transformers' defaults per model type: what a config.json field means when the file leaves it
// out. Values are those of the configuration_<model>.py classes of transformers 5.x (the same as
// 4.x for every field listed here); see arch_defaults.cpp for the sources.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "kvprime/model/config.h"

namespace kvprime::detail {

struct ArchDefaults {
  Arch arch = Arch::Llama;
  std::string model_type;    // config.json "model_type"
  std::string architecture;  // the causal-LM class
  int64_t vocab_size = 0, hidden_size = 0, intermediate_size = 0, num_hidden_layers = 0,
          num_attention_heads = 0;
  std::optional<int64_t> num_key_value_heads;  // nullopt: num_attention_heads
  std::optional<int64_t> head_dim;             // nullopt: hidden_size / num_attention_heads
  int64_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  bool tie_word_embeddings = false;
  double rope_theta = 10000.0;            // all layers; Gemma 3: full-attention layers
  double rope_local_base_freq = 10000.0;  // Gemma 3 sliding-window layers
  std::optional<int64_t> sliding_window;  // Mistral, Qwen (if use_sliding_window), Gemma
  int64_t sliding_window_pattern = 0;     // Gemma 3
  int64_t max_window_layers = 0;          // Qwen 2/3
  std::string activation;                 // hidden_act (hidden_activation for Gemma)
  double query_pre_attn_scalar = 0;       // Gemma
  std::optional<double> attn_logit_softcapping, final_logit_softcapping;  // Gemma
  std::optional<int64_t> bos_token_id, eos_token_id, pad_token_id;
};

// A class name in "architectures" and the model_type of the language model it runs.
struct ArchitectureInfo {
  std::string name;             // e.g. "Gemma3ForConditionalGeneration"
  std::string text_model_type;  // e.g. "gemma3_text"
  bool multimodal = false;      // the language model sits in a wrapper (text_config)
};

const ArchDefaults* find_arch_defaults(const std::string& model_type);
const ArchitectureInfo* find_architecture(const std::string& name);
std::string supported_model_types();     // "llama, mistral, ..."
std::string supported_architectures();   // "LlamaForCausalLM, ..."

}  // namespace kvprime::detail
