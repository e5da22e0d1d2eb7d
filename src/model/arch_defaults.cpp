// Per-model-type defaults, read from huggingface/transformers
// src/transformers/models/<model>/configuration_<model>.py (transformers 5.x dataclass configs;
// RoPE defaults from RotaryEmbeddingConfigMixin.default_theta = 10000 and Gemma3TextConfig's
// default_theta = {global: 1e6, local: 1e4}).
#include "model/arch_defaults.h"

namespace kvprime::detail {

namespace {

ArchDefaults llama() {
  ArchDefaults d;
  d.arch = Arch::Llama;
  d.model_type = "llama";
  d.architecture = "LlamaForCausalLM";
  d.vocab_size = 32000;
  d.hidden_size = 4096;
  d.intermediate_size = 11008;
  d.num_hidden_layers = 32;
  d.num_attention_heads = 32;
  d.max_position_embeddings = 2048;
  d.rms_norm_eps = 1e-6;
  d.activation = "silu";
  d.bos_token_id = 1;
  d.eos_token_id = 2;
  return d;
}

ArchDefaults mistral() {
  ArchDefaults d;
  d.arch = Arch::Mistral;
  d.model_type = "mistral";
  d.architecture = "MistralForCausalLM";
  d.vocab_size = 32000;
  d.hidden_size = 4096;
  d.intermediate_size = 14336;
  d.num_hidden_layers = 32;
  d.num_attention_heads = 32;
  d.num_key_value_heads = 8;
  d.max_position_embeddings = 4096 * 32;
  d.rms_norm_eps = 1e-6;
  d.sliding_window = 4096;
  d.activation = "silu";
  d.bos_token_id = 1;
  d.eos_token_id = 2;
  return d;
}

ArchDefaults qwen2() {
  ArchDefaults d;
  d.arch = Arch::Qwen2;
  d.model_type = "qwen2";
  d.architecture = "Qwen2ForCausalLM";
  d.vocab_size = 151936;
  d.hidden_size = 4096;
  d.intermediate_size = 22016;
  d.num_hidden_layers = 32;
  d.num_attention_heads = 32;
  d.num_key_value_heads = 32;
  d.max_position_embeddings = 32768;
  d.rms_norm_eps = 1e-6;
  d.sliding_window = 4096;  // used only with use_sliding_window (default false)
  d.max_window_layers = 28;
  d.activation = "silu";
  return d;
}

ArchDefaults qwen3() {
  ArchDefaults d = qwen2();
  d.arch = Arch::Qwen3;
  d.model_type = "qwen3";
  d.architecture = "Qwen3ForCausalLM";
  d.head_dim = 128;
  return d;
}

ArchDefaults gemma2() {
  ArchDefaults d;
  d.arch = Arch::Gemma2;
  d.model_type = "gemma2";
  d.architecture = "Gemma2ForCausalLM";
  d.vocab_size = 256000;
  d.hidden_size = 2304;
  d.intermediate_size = 9216;
  d.num_hidden_layers = 26;
  d.num_attention_heads = 8;
  d.num_key_value_heads = 4;
  d.head_dim = 256;
  d.max_position_embeddings = 8192;
  d.rms_norm_eps = 1e-6;
  d.tie_word_embeddings = true;
  d.sliding_window = 4096;
  d.activation = "gelu_pytorch_tanh";
  d.query_pre_attn_scalar = 256;
  d.attn_logit_softcapping = 50.0;
  d.final_logit_softcapping = 30.0;
  d.pad_token_id = 0;
  d.eos_token_id = 1;
  d.bos_token_id = 2;
  return d;
}

ArchDefaults gemma3_text() {
  ArchDefaults d;
  d.arch = Arch::Gemma3;
  d.model_type = "gemma3_text";
  d.architecture = "Gemma3ForCausalLM";
  d.vocab_size = 262208;
  d.hidden_size = 2304;
  d.intermediate_size = 9216;
  d.num_hidden_layers = 26;
  d.num_attention_heads = 8;
  d.num_key_value_heads = 4;
  d.head_dim = 256;
  d.max_position_embeddings = 131072;
  d.rms_norm_eps = 1e-6;
  d.tie_word_embeddings = true;
  d.rope_theta = 1e6;
  d.rope_local_base_freq = 1e4;
  d.sliding_window = 4096;
  d.sliding_window_pattern = 6;
  d.activation = "gelu_pytorch_tanh";
  d.query_pre_attn_scalar = 256;
  d.pad_token_id = 0;
  d.eos_token_id = 1;
  d.bos_token_id = 2;
  return d;
}

const std::vector<ArchDefaults>& all_defaults() {
  static const std::vector<ArchDefaults> table = {llama(),  mistral(), qwen2(),
                                                  qwen3(),  gemma2(),  gemma3_text()};
  return table;
}

const std::vector<ArchitectureInfo>& all_architectures() {
  static const std::vector<ArchitectureInfo> table = {
      {"LlamaForCausalLM", "llama", false},
      {"MistralForCausalLM", "mistral", false},
      {"Qwen2ForCausalLM", "qwen2", false},
      {"Qwen3ForCausalLM", "qwen3", false},
      {"Gemma2ForCausalLM", "gemma2", false},
      {"Gemma3ForCausalLM", "gemma3_text", false},
      {"Gemma3ForConditionalGeneration", "gemma3_text", true},
  };
  return table;
}

}  // namespace

const ArchDefaults* find_arch_defaults(const std::string& model_type) {
  for (const auto& d : all_defaults())
    if (d.model_type == model_type) return &d;
  return nullptr;
}

const ArchitectureInfo* find_architecture(const std::string& name) {
  for (const auto& a : all_architectures())
    if (a.name == name) return &a;
  return nullptr;
}

std::string supported_model_types() {
  std::string s;
  for (const auto& d : all_defaults()) s += (s.empty() ? "" : ", ") + d.model_type;
  return s;
}

std::string supported_architectures() {
  std::string s;
  for (const auto& a : all_architectures()) s += (s.empty() ? "" : ", ") + a.name;
  return s;
}

}  // namespace kvprime::detail
