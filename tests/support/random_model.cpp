#include "random_model.h"

#include <ATen/ATen.h>

#include <filesystem>
#include <fstream>
#include <utility>
#include <vector>

#include "kvprime/io/safetensors.h"
#include "kvprime/model/config.h"

namespace kvprime::test {

nlohmann::json tiny_config(const std::string& model_type) {
  nlohmann::json c = {{"model_type", model_type},
                      {"vocab_size", 96},
                      {"hidden_size", 32},
                      {"intermediate_size", 48},
                      {"num_hidden_layers", 2},
                      {"num_attention_heads", 4},
                      {"num_key_value_heads", 2},
                      {"max_position_embeddings", 256},
                      {"rms_norm_eps", 1e-6},
                      {"rope_theta", 10000.0},
                      {"bos_token_id", 1},
                      {"eos_token_id", 2},
                      {"tie_word_embeddings", false}};
  if (model_type == "llama") c["architectures"] = {"LlamaForCausalLM"};
  if (model_type == "mistral") {
    c["architectures"] = {"MistralForCausalLM"};
    c["sliding_window"] = 5;
  }
  if (model_type == "qwen2") {
    c["architectures"] = {"Qwen2ForCausalLM"};
    c["tie_word_embeddings"] = true;
  }
  if (model_type == "qwen3") {
    c["architectures"] = {"Qwen3ForCausalLM"};
    c["head_dim"] = 16;
  }
  if (model_type == "gemma2") {
    c["architectures"] = {"Gemma2ForCausalLM"};
    c["head_dim"] = 8;
    c["query_pre_attn_scalar"] = 8;
    c["sliding_window"] = 4;
    c["attn_logit_softcapping"] = 5.0;
    c["final_logit_softcapping"] = 3.0;
    c["tie_word_embeddings"] = true;
  }
  if (model_type == "gemma3_text") {
    c["architectures"] = {"Gemma3ForCausalLM"};
    c["num_hidden_layers"] = 3;
    c["head_dim"] = 16;
    c["query_pre_attn_scalar"] = 16;
    c["sliding_window"] = 4;
    c["sliding_window_pattern"] = 3;
    c["rope_local_base_freq"] = 10000.0;
    c["rope_theta"] = 1000000.0;
    c["rope_scaling"] = {{"rope_type", "linear"}, {"factor", 8.0}};
    c["tie_word_embeddings"] = true;
  }
  return c;
}

void write_random_model(const std::string& dir, const nlohmann::json& config, uint64_t seed) {
  std::filesystem::create_directories(dir);
  {
    std::ofstream f(dir + "/config.json");
    f << config.dump(2);
  }
  ModelConfig cfg = load_model_config(dir + "/config.json");
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  std::vector<std::pair<std::string, at::Tensor>> t;
  auto normal = [&](std::vector<int64_t> shape, double std) {
    return at::normal(0.0, std, shape, gen, at::TensorOptions().dtype(at::kFloat));
  };
  // Norm weights: HF multiplies by w (Llama) or (1 + w) (Gemma); keep both near 1, not exactly.
  auto norm = [&](int64_t n) {
    auto w = normal({n}, 0.1);
    return cfg.norm_one_plus ? w : w + 1.0;
  };
  const int64_t d = cfg.hidden_size, dff = cfg.intermediate_size, hd = cfg.head_dim;
  const int64_t q_out = cfg.n_head * hd, kv_out = cfg.n_head_kv * hd;
  const double ws = 1.0 / std::sqrt(static_cast<double>(d));
  t.emplace_back("model.embed_tokens.weight", normal({cfg.vocab_size, d}, 1.0));
  t.emplace_back("model.norm.weight", norm(d));
  if (!cfg.tie_word_embeddings) t.emplace_back("lm_head.weight", normal({cfg.vocab_size, d}, ws));
  for (int64_t il = 0; il < cfg.n_layer; ++il) {
    const std::string L = "model.layers." + std::to_string(il) + ".";
    t.emplace_back(L + "input_layernorm.weight", norm(d));
    t.emplace_back(L + "post_attention_layernorm.weight", norm(d));
    if (cfg.sandwich_norm) {
      t.emplace_back(L + "pre_feedforward_layernorm.weight", norm(d));
      t.emplace_back(L + "post_feedforward_layernorm.weight", norm(d));
    }
    t.emplace_back(L + "self_attn.q_proj.weight", normal({q_out, d}, ws));
    t.emplace_back(L + "self_attn.k_proj.weight", normal({kv_out, d}, ws));
    t.emplace_back(L + "self_attn.v_proj.weight", normal({kv_out, d}, ws));
    t.emplace_back(L + "self_attn.o_proj.weight", normal({d, q_out}, ws));
    if (cfg.qkv_bias) {
      t.emplace_back(L + "self_attn.q_proj.bias", normal({q_out}, 0.1));
      t.emplace_back(L + "self_attn.k_proj.bias", normal({kv_out}, 0.1));
      t.emplace_back(L + "self_attn.v_proj.bias", normal({kv_out}, 0.1));
    }
    if (cfg.o_bias) t.emplace_back(L + "self_attn.o_proj.bias", normal({d}, 0.1));
    if (cfg.qk_norm) {
      t.emplace_back(L + "self_attn.q_norm.weight", norm(hd));
      t.emplace_back(L + "self_attn.k_norm.weight", norm(hd));
    }
    t.emplace_back(L + "mlp.gate_proj.weight", normal({dff, d}, ws));
    t.emplace_back(L + "mlp.up_proj.weight", normal({dff, d}, ws));
    t.emplace_back(L + "mlp.down_proj.weight", normal({d, dff}, 1.0 / std::sqrt(double(dff))));
  }
  save_safetensors(dir + "/model.safetensors", t, {{"format", "pt"}});
}

}  // namespace kvprime::test
