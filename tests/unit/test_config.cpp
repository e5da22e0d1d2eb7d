// config.json -> ModelConfig: the nine real configs (tests/fixtures/configs, see SOURCES.md),
// the same models written in the transformers-5 format, transformers' defaults, and bad configs.
#include <gtest/gtest.h>

#include <cmath>
#include <initializer_list>
#include <string>
#include <vector>

#include "kvprime/core/error.h"
#include "kvprime/model/config.h"
#include "kvprime/model/rope.h"
#include "test_support.h"

using kvprime::Activation;
using kvprime::Arch;
using kvprime::AttentionKind;
using kvprime::ModelConfig;
using kvprime::RopeParams;
using kvprime::RopeType;
using nlohmann::json;

using kvprime::test::expect_error_with;

namespace {

const std::vector<std::string> kRealConfigs = {
    "gemma-2-2b",        "gemma-2-9b",           "gemma-3-1b-it",
    "gemma-3-4b-it",     "llama-3.1-8b-instruct", "llama-3.2-1b",
    "mistral-7b-instruct-v0.2", "qwen2.5-7b-instruct", "qwen3-8b"};

std::string config_path(const std::string& name) {
  return kvprime::test::fixture("configs/" + name + ".config.json");
}

json read_config_json(const std::string& name) {
  return json::parse(kvprime::test::read_file(config_path(name)));
}

ModelConfig load(const std::string& name) { return kvprime::load_model_config(config_path(name)); }

ModelConfig resolve(const json& j, const std::string& source = "snippet/config.json") {
  return kvprime::resolve_config(kvprime::parse_raw_config(j, source));
}

std::vector<int64_t> full_layers(const ModelConfig& c) {
  std::vector<int64_t> out;
  for (size_t i = 0; i < c.layers.size(); ++i)
    if (c.layers[i].kind == AttentionKind::Full) out.push_back(static_cast<int64_t>(i));
  return out;
}

void expect_same_rope(const RopeParams& a, const RopeParams& b, const std::string& where) {
  SCOPED_TRACE(where);
  EXPECT_EQ(a.type, b.type);
  EXPECT_EQ(a.theta, b.theta);
  EXPECT_EQ(a.factor, b.factor);
  EXPECT_EQ(a.partial_rotary_factor, b.partial_rotary_factor);
  EXPECT_EQ(a.original_max_position_embeddings, b.original_max_position_embeddings);
  EXPECT_EQ(a.low_freq_factor, b.low_freq_factor);
  EXPECT_EQ(a.high_freq_factor, b.high_freq_factor);
  EXPECT_EQ(a.attention_factor, b.attention_factor);
  EXPECT_EQ(a.beta_fast, b.beta_fast);
  EXPECT_EQ(a.beta_slow, b.beta_slow);
  EXPECT_EQ(a.mscale, b.mscale);
  EXPECT_EQ(a.mscale_all_dim, b.mscale_all_dim);
  EXPECT_EQ(a.truncate, b.truncate);
}

// Every resolved field except `source`.
void expect_same_config(const ModelConfig& a, const ModelConfig& b) {
  EXPECT_EQ(a.architecture, b.architecture);
  EXPECT_EQ(a.model_type, b.model_type);
  EXPECT_EQ(a.arch, b.arch);
  EXPECT_EQ(a.vocab_size, b.vocab_size);
  EXPECT_EQ(a.hidden_size, b.hidden_size);
  EXPECT_EQ(a.intermediate_size, b.intermediate_size);
  EXPECT_EQ(a.n_layer, b.n_layer);
  EXPECT_EQ(a.n_head, b.n_head);
  EXPECT_EQ(a.n_head_kv, b.n_head_kv);
  EXPECT_EQ(a.head_dim, b.head_dim);
  EXPECT_EQ(a.max_position_embeddings, b.max_position_embeddings);
  EXPECT_EQ(a.rms_norm_eps, b.rms_norm_eps);
  EXPECT_EQ(a.qkv_bias, b.qkv_bias);
  EXPECT_EQ(a.o_bias, b.o_bias);
  EXPECT_EQ(a.mlp_bias, b.mlp_bias);
  EXPECT_EQ(a.tie_word_embeddings, b.tie_word_embeddings);
  EXPECT_EQ(a.qk_norm, b.qk_norm);
  EXPECT_EQ(a.norm_one_plus, b.norm_one_plus);
  EXPECT_EQ(a.sandwich_norm, b.sandwich_norm);
  EXPECT_EQ(a.embed_scale, b.embed_scale);
  EXPECT_EQ(a.attn_scale, b.attn_scale);
  EXPECT_EQ(a.attn_logit_softcap, b.attn_logit_softcap);
  EXPECT_EQ(a.final_logit_softcap, b.final_logit_softcap);
  EXPECT_EQ(a.act, b.act);
  ASSERT_EQ(a.layers.size(), b.layers.size());
  for (size_t i = 0; i < a.layers.size(); ++i) {
    EXPECT_EQ(a.layers[i].kind, b.layers[i].kind) << "layer " << i;
    EXPECT_EQ(a.layers[i].sliding_window, b.layers[i].sliding_window) << "layer " << i;
    expect_same_rope(a.layers[i].rope, b.layers[i].rope, "layer " + std::to_string(i));
  }
  EXPECT_EQ(a.bos_token_id, b.bos_token_id);
  EXPECT_EQ(a.pad_token_id, b.pad_token_id);
  EXPECT_EQ(a.eos_token_ids, b.eos_token_ids);
  EXPECT_EQ(a.torch_dtype, b.torch_dtype);
  EXPECT_EQ(a.weight_prefixes, b.weight_prefixes);
}

json layer_types(const ModelConfig& c) {
  json out = json::array();
  for (const auto& l : c.layers)
    out.push_back(l.kind == AttentionKind::Full ? "full_attention" : "sliding_attention");
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// The real configs.

TEST(ConfigReal, AllNineParseAndResolve) {
  for (const auto& name : kRealConfigs) {
    SCOPED_TRACE(name);
    ModelConfig c = load(name);
    EXPECT_EQ(c.source, config_path(name));
    EXPECT_EQ(static_cast<int64_t>(c.layers.size()), c.n_layer);
    EXPECT_EQ(c.n_head % c.n_head_kv, 0);
    EXPECT_EQ(c.head_dim % 2, 0);
    for (int64_t il = 0; il < c.n_layer; ++il) EXPECT_EQ(c.rotary_dim(il), c.head_dim);
    EXPECT_FALSE(c.weight_prefixes.empty());
    EXPECT_FALSE(c.eos_token_ids.empty());
  }
}

TEST(ConfigReal, Mistral7bInstructV02) {
  ModelConfig c = load("mistral-7b-instruct-v0.2");
  EXPECT_EQ(c.arch, Arch::Mistral);
  EXPECT_EQ(c.architecture, "MistralForCausalLM");
  EXPECT_EQ(c.vocab_size, 32000);
  EXPECT_EQ(c.hidden_size, 4096);
  EXPECT_EQ(c.intermediate_size, 14336);
  EXPECT_EQ(c.n_layer, 32);
  EXPECT_EQ(c.n_head, 32);
  EXPECT_EQ(c.n_head_kv, 8);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.max_position_embeddings, 32768);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-5);
  EXPECT_DOUBLE_EQ(c.attn_scale, 1.0 / std::sqrt(128.0));
  EXPECT_EQ(c.act, Activation::SiLU);
  EXPECT_FALSE(c.qkv_bias || c.o_bias || c.mlp_bias || c.qk_norm || c.tie_word_embeddings);
  EXPECT_FALSE(c.norm_one_plus || c.sandwich_norm);
  EXPECT_EQ(c.embed_scale, 1.0);
  // "sliding_window": null (v0.2): no window, unlike the 4096 default of an absent field.
  EXPECT_EQ(full_layers(c).size(), 32u);
  for (const auto& l : c.layers) {
    EXPECT_EQ(l.sliding_window, 0);
    EXPECT_EQ(l.rope.type, RopeType::Default);
    EXPECT_EQ(l.rope.theta, 1e6);
  }
  EXPECT_EQ(c.bos_token_id, 1);
  EXPECT_EQ(c.eos_token_ids, std::vector<int64_t>{2});
  EXPECT_EQ(c.torch_dtype, "bfloat16");
  EXPECT_EQ(c.weight_prefixes, std::vector<std::string>{"model."});
}

TEST(ConfigReal, Llama31_8bInstruct) {
  ModelConfig c = load("llama-3.1-8b-instruct");
  EXPECT_EQ(c.arch, Arch::Llama);
  EXPECT_EQ(c.vocab_size, 128256);
  EXPECT_EQ(c.hidden_size, 4096);
  EXPECT_EQ(c.n_layer, 32);
  EXPECT_EQ(c.n_head, 32);
  EXPECT_EQ(c.n_head_kv, 8);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.max_position_embeddings, 131072);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-5);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_FALSE(c.qkv_bias || c.o_bias || c.mlp_bias);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{128001, 128008, 128009}));
  EXPECT_EQ(c.bos_token_id, 128000);
  EXPECT_EQ(full_layers(c).size(), 32u);
  for (const auto& l : c.layers) {
    EXPECT_EQ(l.rope.type, RopeType::Llama3);
    EXPECT_EQ(l.rope.theta, 500000.0);
    EXPECT_EQ(l.rope.factor, 8.0);
    EXPECT_EQ(l.rope.low_freq_factor, 1.0);
    EXPECT_EQ(l.rope.high_freq_factor, 4.0);
    EXPECT_EQ(l.rope.original_max_position_embeddings, 8192);
  }
}

TEST(ConfigReal, Llama32_1b) {
  ModelConfig c = load("llama-3.2-1b");
  EXPECT_EQ(c.hidden_size, 2048);
  EXPECT_EQ(c.n_layer, 16);
  EXPECT_EQ(c.n_head, 32);
  EXPECT_EQ(c.n_head_kv, 8);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_DOUBLE_EQ(c.attn_scale, 0.125);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.eos_token_ids, std::vector<int64_t>{128001});
  EXPECT_EQ(c.layers[0].rope.type, RopeType::Llama3);
  EXPECT_EQ(c.layers[0].rope.factor, 32.0);
  EXPECT_EQ(c.layers[0].rope.original_max_position_embeddings, 8192);
}

TEST(ConfigReal, Qwen25_7bInstruct) {
  ModelConfig c = load("qwen2.5-7b-instruct");
  EXPECT_EQ(c.arch, Arch::Qwen2);
  EXPECT_EQ(c.vocab_size, 152064);
  EXPECT_EQ(c.hidden_size, 3584);
  EXPECT_EQ(c.intermediate_size, 18944);
  EXPECT_EQ(c.n_layer, 28);
  EXPECT_EQ(c.n_head, 28);
  EXPECT_EQ(c.n_head_kv, 4);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_TRUE(c.qkv_bias);
  EXPECT_FALSE(c.o_bias);
  EXPECT_FALSE(c.mlp_bias || c.qk_norm || c.tie_word_embeddings);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-6);
  // "sliding_window": 131072 but "use_sliding_window": false: every layer is full.
  EXPECT_EQ(full_layers(c).size(), 28u);
  for (const auto& l : c.layers) {
    EXPECT_EQ(l.sliding_window, 0);
    EXPECT_EQ(l.rope.type, RopeType::Default);
    EXPECT_EQ(l.rope.theta, 1e6);
  }
  EXPECT_EQ(c.eos_token_ids, std::vector<int64_t>{151645});
}

TEST(ConfigReal, Qwen3_8b) {
  ModelConfig c = load("qwen3-8b");
  EXPECT_EQ(c.arch, Arch::Qwen3);
  EXPECT_TRUE(c.qk_norm);
  EXPECT_FALSE(c.qkv_bias || c.o_bias);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.hidden_size, 4096);
  EXPECT_EQ(c.n_layer, 36);
  EXPECT_EQ(c.n_head, 32);
  EXPECT_EQ(c.n_head_kv, 8);
  EXPECT_EQ(c.max_position_embeddings, 40960);
  EXPECT_EQ(full_layers(c).size(), 36u);
  EXPECT_EQ(c.layers[0].rope.type, RopeType::Default);  // "rope_scaling": null
  EXPECT_EQ(c.layers[0].rope.theta, 1e6);               // an integer in the file
}

TEST(ConfigReal, Gemma2_2b) {
  ModelConfig c = load("gemma-2-2b");
  EXPECT_EQ(c.arch, Arch::Gemma2);
  EXPECT_EQ(c.vocab_size, 256000);
  EXPECT_EQ(c.hidden_size, 2304);
  EXPECT_EQ(c.n_layer, 26);
  EXPECT_EQ(c.n_head, 8);
  EXPECT_EQ(c.n_head_kv, 4);
  EXPECT_EQ(c.head_dim, 256);
  EXPECT_EQ(c.attn_logit_softcap, 50.0);
  EXPECT_EQ(c.final_logit_softcap, 30.0);
  EXPECT_DOUBLE_EQ(c.attn_scale, 1.0 / 16);  // query_pre_attn_scalar 256
  EXPECT_DOUBLE_EQ(c.embed_scale, 48.0);     // sqrt(2304)
  EXPECT_TRUE(c.norm_one_plus && c.sandwich_norm && c.tie_word_embeddings);
  EXPECT_FALSE(c.qk_norm);
  EXPECT_EQ(c.act, Activation::GeluTanh);
  for (int64_t i = 0; i < c.n_layer; ++i) {
    const auto& l = c.layers[i];
    EXPECT_EQ(l.kind, i % 2 == 0 ? AttentionKind::Sliding : AttentionKind::Full) << i;
    EXPECT_EQ(l.sliding_window, i % 2 == 0 ? 4096 : 0) << i;
    EXPECT_EQ(l.rope.type, RopeType::Default);
    EXPECT_EQ(l.rope.theta, 10000.0);
  }
  EXPECT_EQ(c.pad_token_id, 0);
  EXPECT_EQ(c.eos_token_ids, std::vector<int64_t>{1});
  EXPECT_EQ(c.torch_dtype, "float32");
}

TEST(ConfigReal, Gemma2_9b) {
  ModelConfig c = load("gemma-2-9b");
  EXPECT_EQ(c.hidden_size, 3584);
  EXPECT_EQ(c.intermediate_size, 14336);
  EXPECT_EQ(c.n_layer, 42);
  EXPECT_EQ(c.n_head, 16);
  EXPECT_EQ(c.n_head_kv, 8);
  EXPECT_EQ(c.head_dim, 256);
  EXPECT_DOUBLE_EQ(c.attn_scale, 1.0 / 16);
  EXPECT_DOUBLE_EQ(c.embed_scale, std::sqrt(3584.0));
  EXPECT_EQ(full_layers(c).size(), 21u);
  EXPECT_EQ(c.layers[40].sliding_window, 4096);
}

TEST(ConfigReal, Gemma3_1bIt) {
  ModelConfig c = load("gemma-3-1b-it");
  EXPECT_EQ(c.arch, Arch::Gemma3);
  EXPECT_EQ(c.architecture, "Gemma3ForCausalLM");
  EXPECT_EQ(c.model_type, "gemma3_text");
  EXPECT_EQ(c.vocab_size, 262144);
  EXPECT_EQ(c.hidden_size, 1152);
  EXPECT_EQ(c.intermediate_size, 6912);
  EXPECT_EQ(c.n_layer, 26);
  EXPECT_EQ(c.n_head, 4);
  EXPECT_EQ(c.n_head_kv, 1);
  EXPECT_EQ(c.head_dim, 256);
  EXPECT_EQ(c.max_position_embeddings, 32768);
  EXPECT_TRUE(c.qk_norm && c.norm_one_plus && c.sandwich_norm && c.tie_word_embeddings);
  EXPECT_FALSE(c.attn_logit_softcap.has_value());
  EXPECT_FALSE(c.final_logit_softcap.has_value());
  EXPECT_EQ(full_layers(c), (std::vector<int64_t>{5, 11, 17, 23}));
  for (const auto& l : c.layers) {
    EXPECT_EQ(l.rope.type, RopeType::Default);
    if (l.kind == AttentionKind::Full) {
      EXPECT_EQ(l.rope.theta, 1e6);
      EXPECT_EQ(l.sliding_window, 0);
    } else {
      EXPECT_EQ(l.rope.theta, 1e4);
      EXPECT_EQ(l.sliding_window, 512);
    }
  }
  EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{1, 106}));
  EXPECT_EQ(c.weight_prefixes, std::vector<std::string>{"model."});
}

TEST(ConfigReal, Gemma3_4bItMultimodalWrapper) {
  ModelConfig c = load("gemma-3-4b-it");
  EXPECT_EQ(c.arch, Arch::Gemma3);
  EXPECT_EQ(c.architecture, "Gemma3ForConditionalGeneration");
  EXPECT_EQ(c.model_type, "gemma3_text");
  // From text_config ...
  EXPECT_EQ(c.n_layer, 34);
  EXPECT_EQ(c.hidden_size, 2560);
  EXPECT_EQ(c.intermediate_size, 10240);
  // ... and from Gemma3TextConfig's defaults for what text_config leaves out.
  EXPECT_EQ(c.n_head, 8);
  EXPECT_EQ(c.n_head_kv, 4);
  EXPECT_EQ(c.head_dim, 256);
  EXPECT_EQ(c.vocab_size, 262208);
  EXPECT_EQ(c.max_position_embeddings, 131072);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-6);
  EXPECT_DOUBLE_EQ(c.attn_scale, 1.0 / 16);
  EXPECT_DOUBLE_EQ(c.embed_scale, std::sqrt(2560.0));
  EXPECT_EQ(c.act, Activation::GeluTanh);
  EXPECT_TRUE(c.tie_word_embeddings && c.qk_norm);
  EXPECT_EQ(full_layers(c), (std::vector<int64_t>{5, 11, 17, 23, 29}));
  for (const auto& l : c.layers) {
    if (l.kind == AttentionKind::Full) {
      EXPECT_EQ(l.rope.type, RopeType::Linear);
      EXPECT_EQ(l.rope.theta, 1e6);
      EXPECT_EQ(l.rope.factor, 8.0);
      EXPECT_EQ(l.sliding_window, 0);
    } else {
      EXPECT_EQ(l.rope.type, RopeType::Default);
      EXPECT_EQ(l.rope.theta, 1e4);
      EXPECT_EQ(l.sliding_window, 1024);
    }
  }
  // Token ids and dtype come from the outer object when text_config has none.
  EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{1, 106}));
  EXPECT_EQ(c.bos_token_id, 2);
  EXPECT_EQ(c.torch_dtype, "bfloat16");
  EXPECT_EQ(c.weight_prefixes,
            (std::vector<std::string>{"language_model.model.", "model.language_model."}));
}

TEST(ConfigReal, Gemma3_4bRotaryFrequenciesPerLayer) {
  ModelConfig c = load("gemma-3-4b-it");
  kvprime::Rotary global(c.layers[5].rope, c.head_dim, c.max_position_embeddings);
  kvprime::Rotary local(c.layers[0].rope, c.head_dim, c.max_position_embeddings);
  auto idx = at::arange(0, 256, 2, at::kDouble) / 256;
  auto expect_global = at::pow(1e6, idx).reciprocal() / 8;
  auto expect_local = at::pow(1e4, idx).reciprocal();
  EXPECT_LT(kvprime::test::max_rel_diff(global.frequencies().inv_freq, expect_global), 1e-6);
  EXPECT_LT(kvprime::test::max_rel_diff(local.frequencies().inv_freq, expect_local), 1e-6);
}

TEST(ConfigReal, DirectoryPathFindsConfigJson) {
  kvprime::test::TempDir dir;
  kvprime::test::write_file(dir.file("config.json"),
                            kvprime::test::read_file(config_path("qwen3-8b")));
  ModelConfig c = kvprime::load_model_config(dir.path());
  EXPECT_EQ(c.source, dir.file("config.json"));
  expect_same_config(c, load("qwen3-8b"));
}

// ---------------------------------------------------------------------------------------------
// transformers-5 files (rope_parameters, layer_types, dtype) resolve to the same ModelConfig.

TEST(ConfigV5, Llama31Snippet) {
  const json v5 = json::parse(R"({
    "architectures": ["LlamaForCausalLM"],
    "attention_bias": false,
    "attention_dropout": 0.0,
    "bos_token_id": 128000,
    "dtype": "bfloat16",
    "eos_token_id": [128001, 128008, 128009],
    "head_dim": 128,
    "hidden_act": "silu",
    "hidden_size": 4096,
    "initializer_range": 0.02,
    "intermediate_size": 14336,
    "max_position_embeddings": 131072,
    "mlp_bias": false,
    "model_type": "llama",
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": 8,
    "pad_token_id": null,
    "pretraining_tp": 1,
    "rms_norm_eps": 1e-05,
    "rope_parameters": {
      "factor": 8.0,
      "high_freq_factor": 4.0,
      "low_freq_factor": 1.0,
      "original_max_position_embeddings": 8192,
      "rope_theta": 500000.0,
      "rope_type": "llama3"
    },
    "tie_word_embeddings": false,
    "transformers_version": "5.0.0",
    "use_cache": true,
    "vocab_size": 128256
  })");
  expect_same_config(resolve(v5), load("llama-3.1-8b-instruct"));
}

TEST(ConfigV5, Gemma3_1bSnippet) {
  const json v5 = json::parse(R"({
    "architectures": ["Gemma3ForCausalLM"],
    "attention_bias": false,
    "attn_logit_softcapping": null,
    "bos_token_id": 2,
    "dtype": "bfloat16",
    "eos_token_id": [1, 106],
    "final_logit_softcapping": null,
    "head_dim": 256,
    "hidden_activation": "gelu_pytorch_tanh",
    "hidden_size": 1152,
    "intermediate_size": 6912,
    "layer_types": [
      "sliding_attention", "sliding_attention", "sliding_attention", "sliding_attention",
      "sliding_attention", "full_attention",
      "sliding_attention", "sliding_attention", "sliding_attention", "sliding_attention",
      "sliding_attention", "full_attention",
      "sliding_attention", "sliding_attention", "sliding_attention", "sliding_attention",
      "sliding_attention", "full_attention",
      "sliding_attention", "sliding_attention", "sliding_attention", "sliding_attention",
      "sliding_attention", "full_attention",
      "sliding_attention", "sliding_attention"
    ],
    "max_position_embeddings": 32768,
    "model_type": "gemma3_text",
    "num_attention_heads": 4,
    "num_hidden_layers": 26,
    "num_key_value_heads": 1,
    "pad_token_id": 0,
    "query_pre_attn_scalar": 256,
    "rms_norm_eps": 1e-06,
    "rope_parameters": {
      "full_attention": {"rope_theta": 1000000.0, "rope_type": "default"},
      "sliding_attention": {"rope_theta": 10000.0, "rope_type": "default"}
    },
    "sliding_window": 512,
    "transformers_version": "5.0.0",
    "use_bidirectional_attention": false,
    "vocab_size": 262144
  })");
  expect_same_config(resolve(v5), load("gemma-3-1b-it"));
}

TEST(ConfigV5, Gemma3_4bRewritten) {
  const ModelConfig v4 = load("gemma-3-4b-it");
  json v5 = read_config_json("gemma-3-4b-it");
  json& text = v5["text_config"];
  text.erase("rope_scaling");
  text["rope_parameters"] = json::parse(R"({
    "full_attention": {"factor": 8.0, "rope_theta": 1000000.0, "rope_type": "linear"},
    "sliding_attention": {"rope_theta": 10000.0, "rope_type": "default"}
  })");
  text["layer_types"] = layer_types(v4);
  v5["dtype"] = v5["torch_dtype"];
  v5.erase("torch_dtype");
  expect_same_config(resolve(v5), v4);

  // A sliding entry without rope_theta takes rope_local_base_freq (default 10000).
  text["rope_parameters"]["sliding_attention"].erase("rope_theta");
  expect_same_config(resolve(v5), v4);
}

TEST(ConfigV5, Gemma2AndQwenAndMistralRewritten) {
  for (const std::string name : {"gemma-2-2b", "gemma-2-9b", "qwen3-8b", "qwen2.5-7b-instruct",
                                 "mistral-7b-instruct-v0.2", "llama-3.2-1b"}) {
    SCOPED_TRACE(name);
    const ModelConfig v4 = load(name);
    json v5 = read_config_json(name);
    json rope = v5["rope_scaling"].is_object() ? v5["rope_scaling"] : json::object();
    if (!rope.contains("rope_type")) rope["rope_type"] = "default";
    rope["rope_theta"] = v5["rope_theta"];
    v5.erase("rope_scaling");
    v5.erase("rope_theta");
    v5["rope_parameters"] = rope;
    if (v4.arch != Arch::Llama && v4.arch != Arch::Mistral) v5["layer_types"] = layer_types(v4);
    if (v4.arch == Arch::Qwen2 || v4.arch == Arch::Qwen3)
      v5["sliding_window"] = nullptr;  // what transformers 5 saves when use_sliding_window=false
    expect_same_config(resolve(v5), v4);
  }
}

TEST(ConfigV5, AsSavedByTransformers517) {
  // Tiny models as transformers 5.17 save_pretrained writes them: private keys
  // ("_sliding_window_pattern"), null booleans, per-layer-type rope_parameters.
  const ModelConfig g3 = resolve(json::parse(R"({
    "_sliding_window_pattern": 6, "architectures": ["Gemma3ForCausalLM"],
    "attention_bias": false, "attention_dropout": 0.0, "attn_logit_softcapping": null,
    "bos_token_id": 2, "dtype": "float32", "eos_token_id": 1, "final_logit_softcapping": null,
    "head_dim": 32, "hidden_activation": "gelu_pytorch_tanh", "hidden_size": 64,
    "initializer_range": 0.02, "intermediate_size": 128,
    "layer_types": ["sliding_attention", "sliding_attention", "full_attention"],
    "max_position_embeddings": 256, "model_type": "gemma3_text", "num_attention_heads": 4,
    "num_hidden_layers": 3, "num_key_value_heads": 2, "pad_token_id": 0,
    "query_pre_attn_scalar": 32, "rms_norm_eps": 1e-06,
    "rope_parameters": {
      "full_attention": {"factor": 8.0, "rope_theta": 1000000.0, "rope_type": "linear"},
      "sliding_attention": {"rope_theta": 10000.0, "rope_type": "default"}},
    "sliding_window": 8, "tie_word_embeddings": true, "transformers_version": "5.17.0",
    "use_bidirectional_attention": false, "use_cache": true, "vocab_size": 512})"));
  EXPECT_EQ(full_layers(g3), std::vector<int64_t>{2});
  EXPECT_EQ(g3.layers[2].rope.type, RopeType::Linear);
  EXPECT_EQ(g3.layers[0].sliding_window, 8);
  EXPECT_DOUBLE_EQ(g3.attn_scale, 1.0 / std::sqrt(32.0));
  EXPECT_EQ(g3.torch_dtype, "float32");

  const ModelConfig g2 = resolve(json::parse(R"({
    "architectures": ["Gemma2ForCausalLM"], "attn_logit_softcapping": 5.0, "dtype": "float32",
    "final_logit_softcapping": 3.0, "head_dim": 16, "hidden_activation": "gelu_pytorch_tanh",
    "hidden_size": 64, "intermediate_size": 128,
    "layer_types": ["sliding_attention", "full_attention", "sliding_attention"],
    "max_position_embeddings": 256, "model_type": "gemma2", "num_attention_heads": 4,
    "num_hidden_layers": 3, "num_key_value_heads": 2, "query_pre_attn_scalar": 24,
    "rope_parameters": {"rope_theta": 10000.0, "rope_type": "default"}, "sliding_window": 8,
    "use_bidirectional_attention": null, "vocab_size": 512})"));
  EXPECT_EQ(full_layers(g2), std::vector<int64_t>{1});
  EXPECT_EQ(g2.attn_logit_softcap, 5.0);
  EXPECT_EQ(g2.final_logit_softcap, 3.0);
}

TEST(ConfigV5, LayerTypesOverrideThePattern) {
  json j = {{"model_type", "gemma2"}, {"num_hidden_layers", 4}};
  j["layer_types"] = {"full_attention", "full_attention", "sliding_attention", "full_attention"};
  ModelConfig c = resolve(j);
  EXPECT_EQ(full_layers(c), (std::vector<int64_t>{0, 1, 3}));
  EXPECT_EQ(c.layers[2].sliding_window, 4096);
}

TEST(ConfigV5, PartialRotaryFactorTopLevelOrInRopeParameters) {
  // Read in both places, but refused for these architectures: transformers rotates the whole head.
  json top = {{"model_type", "llama"}, {"partial_rotary_factor", 0.5}};
  expect_error_with([&] { resolve(top); }, {"partial_rotary_factor", "0.5"});
  json inner = {{"model_type", "llama"},
                {"rope_parameters", {{"rope_type", "default"}, {"partial_rotary_factor", 0.25}}}};
  expect_error_with([&] { resolve(inner); }, {"partial_rotary_factor", "0.25"});
  json one = {{"model_type", "llama"}, {"partial_rotary_factor", 1.0}};
  EXPECT_EQ(resolve(one).rotary_dim(0), 128);
}

// ---------------------------------------------------------------------------------------------
// transformers' defaults and rules per model type.

TEST(ConfigDefaults, LlamaEmpty) {
  ModelConfig c = resolve({{"model_type", "llama"}});
  EXPECT_EQ(c.architecture, "LlamaForCausalLM");
  EXPECT_EQ(c.vocab_size, 32000);
  EXPECT_EQ(c.hidden_size, 4096);
  EXPECT_EQ(c.intermediate_size, 11008);
  EXPECT_EQ(c.n_layer, 32);
  EXPECT_EQ(c.n_head, 32);
  EXPECT_EQ(c.n_head_kv, 32);  // num_key_value_heads None -> num_attention_heads
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.max_position_embeddings, 2048);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-6);
  EXPECT_EQ(c.layers[0].rope.theta, 10000.0);
  EXPECT_EQ(c.act, Activation::SiLU);
  EXPECT_EQ(c.bos_token_id, 1);
  EXPECT_EQ(c.eos_token_ids, std::vector<int64_t>{2});
  EXPECT_FALSE(c.pad_token_id.has_value());
  EXPECT_FALSE(c.tie_word_embeddings);
}

TEST(ConfigDefaults, LlamaAttentionAndMlpBias) {
  ModelConfig c = resolve({{"model_type", "llama"}, {"attention_bias", true}, {"mlp_bias", true}});
  EXPECT_TRUE(c.qkv_bias && c.o_bias && c.mlp_bias);
}

TEST(ConfigDefaults, Qwen3AttentionBias) {
  ModelConfig c = resolve({{"model_type", "qwen3"}, {"attention_bias", true}});
  EXPECT_TRUE(c.qkv_bias && c.o_bias);
  EXPECT_EQ(c.head_dim, 128);
}

TEST(ConfigDefaults, Gemma3TextEmpty) {
  ModelConfig c = resolve({{"model_type", "gemma3_text"}});
  EXPECT_EQ(c.vocab_size, 262208);
  EXPECT_EQ(c.hidden_size, 2304);
  EXPECT_EQ(c.intermediate_size, 9216);
  EXPECT_EQ(c.n_layer, 26);
  EXPECT_EQ(c.n_head, 8);
  EXPECT_EQ(c.n_head_kv, 4);
  EXPECT_EQ(c.head_dim, 256);
  EXPECT_EQ(c.max_position_embeddings, 131072);
  EXPECT_DOUBLE_EQ(c.attn_scale, 1.0 / 16);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.act, Activation::GeluTanh);
  EXPECT_EQ(full_layers(c), (std::vector<int64_t>{5, 11, 17, 23}));
  EXPECT_EQ(c.layers[5].rope.theta, 1e6);
  EXPECT_EQ(c.layers[0].rope.theta, 1e4);
  EXPECT_EQ(c.layers[0].sliding_window, 4096);
}

TEST(ConfigDefaults, Gemma3PatternAndWrapperWithoutTextConfig) {
  ModelConfig c = resolve({{"model_type", "gemma3_text"}, {"sliding_window_pattern", 2},
                           {"num_hidden_layers", 4}});
  EXPECT_EQ(full_layers(c), (std::vector<int64_t>{1, 3}));
  ModelConfig w = resolve({{"architectures", {"Gemma3ForConditionalGeneration"}},
                           {"model_type", "gemma3"}});
  EXPECT_EQ(w.n_layer, 26);
  EXPECT_EQ(w.model_type, "gemma3_text");
}

TEST(ConfigDefaults, Gemma2Empty) {
  ModelConfig c = resolve({{"model_type", "gemma2"}});
  EXPECT_EQ(c.attn_logit_softcap, 50.0);
  EXPECT_EQ(c.final_logit_softcap, 30.0);
  EXPECT_EQ(c.vocab_size, 256000);
  EXPECT_EQ(c.max_position_embeddings, 8192);
  EXPECT_EQ(full_layers(c).size(), 13u);
  // An explicit null disables a softcap.
  ModelConfig n = resolve({{"model_type", "gemma2"}, {"attn_logit_softcapping", nullptr}});
  EXPECT_FALSE(n.attn_logit_softcap.has_value());
  EXPECT_EQ(n.final_logit_softcap, 30.0);
}

TEST(ConfigDefaults, GemmaHiddenActivationWinsOverHiddenAct) {
  ModelConfig c = resolve({{"model_type", "gemma2"}, {"hidden_act", "gelu"}});
  EXPECT_EQ(c.act, Activation::GeluTanh);
  ModelConfig e = resolve({{"model_type", "gemma2"}, {"hidden_activation", "gelu"}});
  EXPECT_EQ(e.act, Activation::GeluExact);  // ACT2FN["gelu"] is the exact erf GELU
}

TEST(ConfigDefaults, MistralSlidingWindow) {
  ModelConfig absent = resolve({{"model_type", "mistral"}, {"num_hidden_layers", 3}});
  for (const auto& l : absent.layers) {
    EXPECT_EQ(l.kind, AttentionKind::Sliding);
    EXPECT_EQ(l.sliding_window, 4096);
  }
  ModelConfig null_window =
      resolve({{"model_type", "mistral"}, {"num_hidden_layers", 3}, {"sliding_window", nullptr}});
  EXPECT_EQ(full_layers(null_window).size(), 3u);
  EXPECT_EQ(absent.n_head_kv, 8);
  EXPECT_EQ(absent.max_position_embeddings, 131072);
}

TEST(ConfigDefaults, QwenSlidingWindowFromMaxWindowLayers) {
  ModelConfig c = resolve({{"model_type", "qwen2"}, {"num_hidden_layers", 4},
                           {"use_sliding_window", true}, {"max_window_layers", 2},
                           {"sliding_window", 128}});
  EXPECT_EQ(full_layers(c), (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(c.layers[2].sliding_window, 128);
  EXPECT_EQ(c.layers[3].sliding_window, 128);
  ModelConfig off = resolve({{"model_type", "qwen2"}, {"num_hidden_layers", 4},
                             {"max_window_layers", 2}, {"sliding_window", 128}});
  EXPECT_EQ(full_layers(off).size(), 4u);
}

TEST(ConfigDefaults, ArchitectureWithoutModelType) {
  ModelConfig c = resolve({{"architectures", {"Qwen3ForCausalLM"}}});
  EXPECT_EQ(c.arch, Arch::Qwen3);
  EXPECT_EQ(c.model_type, "qwen3");
  EXPECT_TRUE(c.qk_norm);
}

TEST(ConfigRope, LegacyTypeKeyAndRopeTypes) {
  ModelConfig lin = resolve({{"model_type", "llama"},
                             {"rope_scaling", {{"type", "linear"}, {"factor", 2.0}}}});
  EXPECT_EQ(lin.layers[0].rope.type, RopeType::Linear);
  EXPECT_EQ(lin.layers[0].rope.factor, 2.0);
  ModelConfig dyn = resolve({{"model_type", "llama"}, {"rope_theta", 5e5},
                             {"rope_scaling", {{"rope_type", "dynamic"}, {"factor", 4}}}});
  EXPECT_EQ(dyn.layers[0].rope.type, RopeType::Dynamic);
  EXPECT_EQ(dyn.layers[0].rope.factor, 4.0);
  EXPECT_EQ(dyn.layers[0].rope.theta, 5e5);
  ModelConfig def = resolve({{"model_type", "llama"}, {"rope_scaling", {{"rope_type", "default"}}}});
  EXPECT_EQ(def.layers[0].rope.type, RopeType::Default);
}

TEST(ConfigRope, Yarn) {
  ModelConfig c = resolve({{"model_type", "qwen2"}, {"max_position_embeddings", 131072},
                           {"rope_scaling", {{"rope_type", "yarn"}, {"factor", 4.0},
                                             {"original_max_position_embeddings", 32768}}}});
  const RopeParams& p = c.layers[0].rope;
  EXPECT_EQ(p.type, RopeType::Yarn);
  EXPECT_EQ(p.factor, 4.0);
  EXPECT_EQ(p.original_max_position_embeddings, 32768);
  EXPECT_EQ(p.beta_fast, 32.0);
  EXPECT_EQ(p.beta_slow, 1.0);
  EXPECT_FALSE(p.attention_factor.has_value());
  EXPECT_TRUE(p.truncate);
  // original_max_position_embeddings defaults to max_position_embeddings; a null factor is the
  // ratio of the two.
  ModelConfig d = resolve({{"model_type", "qwen2"}, {"max_position_embeddings", 65536},
                           {"rope_parameters", {{"rope_type", "yarn"}, {"factor", nullptr},
                                                {"original_max_position_embeddings", 16384},
                                                {"attention_factor", 1.5},
                                                {"truncate", false}}}});
  EXPECT_EQ(d.layers[0].rope.factor, 4.0);
  EXPECT_EQ(d.layers[0].rope.attention_factor, 1.5);
  EXPECT_FALSE(d.layers[0].rope.truncate);
  ModelConfig e = resolve({{"model_type", "qwen2"},
                           {"rope_scaling", {{"rope_type", "yarn"}, {"factor", 2.0}}}});
  EXPECT_EQ(e.layers[0].rope.original_max_position_embeddings, 32768);
}

// ---------------------------------------------------------------------------------------------
// Bad configs: a kvprime::Error naming the file and the field.

TEST(ConfigErrors, HeadsNotMultipleOfKvHeads) {
  json j = read_config_json("llama-3.2-1b");
  j["num_attention_heads"] = 7;
  j["num_key_value_heads"] = 2;
  j["head_dim"] = 64;
  expect_error_with([&] { resolve(j, "models/bad/config.json"); },
               {"models/bad/config.json", "'num_attention_heads' (7)", "'num_key_value_heads' (2)",
                "multiple"});
}

TEST(ConfigErrors, UnknownModelTypeListsSupported) {
  expect_error_with([] { resolve({{"model_type", "gpt2"}}, "gpt2/config.json"); },
               {"gpt2/config.json", "'model_type'", "\"gpt2\"", "llama", "mistral", "qwen2",
                "qwen3", "gemma2", "gemma3_text"});
}

TEST(ConfigErrors, UnknownArchitectureListsSupported) {
  expect_error_with(
      [] {
        resolve({{"architectures", {"LlamaForSequenceClassification"}}, {"model_type", "llama"}},
                "cls/config.json");
      },
      {"cls/config.json", "'architectures'", "LlamaForSequenceClassification",
       "LlamaForCausalLM", "Gemma3ForConditionalGeneration"});
  expect_error_with(
      [] { resolve({{"architectures", {"LlamaForCausalLM"}}, {"model_type", "qwen2"}}); },
      {"LlamaForCausalLM", "\"qwen2\"", "'model_type'"});
  expect_error_with([] { resolve(json::object(), "empty/config.json"); },
               {"empty/config.json", "model_type"});
}

TEST(ConfigErrors, UnknownRopeType) {
  expect_error_with(
      [] {
        resolve({{"model_type", "llama"},
                 {"rope_scaling", {{"rope_type", "longrope"}, {"factor", 2.0}}}},
                "phi/config.json");
      },
      {"phi/config.json", "'rope_scaling.rope_type'", "\"longrope\"", "default", "yarn"});
  expect_error_with([] { resolve({{"model_type", "llama"}, {"rope_scaling", {{"type", "su"}}}}); },
               {"'rope_scaling.type'", "\"su\""});
  expect_error_with(
      [] {
        json tc = {{"rope_parameters",
                    {{"full_attention", {{"rope_type", "longrope"}}},
                     {"sliding_attention", {{"rope_type", "default"}}}}}};
        resolve({{"model_type", "gemma3"}, {"text_config", tc}}, "g/config.json");
      },
      {"g/config.json", "'text_config.rope_parameters.full_attention.rope_type'", "longrope"});
}

TEST(ConfigErrors, MissingRopeFields) {
  expect_error_with(
      [] {
        resolve({{"model_type", "llama"},
                 {"rope_scaling", {{"rope_type", "llama3"}, {"factor", 8.0},
                                   {"high_freq_factor", 4.0}}}});
      },
      {"'rope_scaling.low_freq_factor'", "missing"});
  expect_error_with([] { resolve({{"model_type", "llama"}, {"rope_scaling", {{"type", "linear"}}}}); },
               {"'rope_scaling.factor'", "missing"});
  expect_error_with(
      [] {
        resolve({{"model_type", "llama"}, {"rope_scaling", {{"type", "linear"}, {"factor", "2"}}}});
      },
      {"'rope_scaling.factor' must be a number", "\"2\""});
}

TEST(ConfigErrors, Gemma3RopeParametersMustBePerLayerType) {
  expect_error_with(
      [] {
        resolve({{"model_type", "gemma3_text"},
                 {"rope_parameters", {{"rope_type", "linear"}, {"factor", 8.0}}}});
      },
      {"'rope_parameters'", "full_attention", "sliding_attention"});
  expect_error_with(
      [] {
        resolve({{"model_type", "llama"},
                 {"rope_parameters", {{"full_attention", {{"rope_type", "default"}}}}}});
      },
      {"'rope_parameters'", "per layer type"});
}

TEST(ConfigErrors, WrongFieldTypesNameFileAndField) {
  kvprime::test::TempDir dir;
  auto write_and_load = [&](const json& j) {
    kvprime::test::write_file(dir.file("config.json"), j.dump(2));
    return kvprime::load_model_config(dir.path());
  };
  const std::string file = dir.file("config.json");
  expect_error_with([&] { write_and_load({{"model_type", "llama"}, {"num_attention_heads", "abc"}}); },
               {file + ": field 'num_attention_heads' must be an integer, got \"abc\""});
  expect_error_with([&] { write_and_load({{"model_type", "llama"}, {"hidden_size", 4096.5}}); },
               {file, "'hidden_size' must be an integer", "4096.5"});
  expect_error_with([&] { write_and_load({{"model_type", "llama"}, {"tie_word_embeddings", "yes"}}); },
               {file, "'tie_word_embeddings' must be a boolean"});
  expect_error_with([&] { write_and_load({{"model_type", "llama"}, {"rope_theta", "big"}}); },
               {file, "'rope_theta' must be a number"});
  expect_error_with([&] { write_and_load({{"model_type", 3}}); },
               {file, "'model_type' must be a string"});
  expect_error_with([&] { write_and_load({{"model_type", "llama"}, {"eos_token_id", {1, "x"}}}); },
               {file, "'eos_token_id' must be an integer or a list of integers"});
  expect_error_with([&] { write_and_load({{"model_type", "llama"}, {"rope_scaling", 2}}); },
               {file, "'rope_scaling' must be an object"});
  expect_error_with([&] { write_and_load({{"model_type", "llama"}, {"layer_types", "full"}}); },
               {file, "'layer_types' must be a list of strings"});
  expect_error_with(
      [&] {
        write_and_load({{"architectures", {"Gemma3ForConditionalGeneration"}},
                        {"model_type", "gemma3"},
                        {"text_config", {{"hidden_size", "big"}}}});
      },
      {file, "'text_config.hidden_size' must be an integer", "\"big\""});
  expect_error_with([&] { write_and_load(json::array({1, 2})); }, {file, "JSON object"});
  // 4096.0 is an integer written as a float: accepted.
  EXPECT_EQ(write_and_load({{"model_type", "llama"}, {"hidden_size", 2048.0}}).hidden_size, 2048);
}

TEST(ConfigErrors, BadValues) {
  expect_error_with([] { resolve({{"model_type", "llama"}, {"hidden_act", "relu"}}, "r/config.json"); },
               {"r/config.json", "'hidden_act'", "\"relu\"", "silu"});
  expect_error_with([] { resolve({{"model_type", "llama"}, {"head_dim", 63}}); },
               {"head_dim 63", "even"});
  expect_error_with([] { resolve({{"model_type", "llama"}, {"num_hidden_layers", 0}}); },
               {"'num_hidden_layers'", "positive"});
  expect_error_with(
      [] { resolve({{"model_type", "llama"}, {"hidden_size", 100}, {"num_attention_heads", 3}}); },
      {"'hidden_size' (100)", "'num_attention_heads' (3)", "head_dim"});
  expect_error_with([] { resolve({{"model_type", "gemma2"}, {"layer_types", {"full_attention"}}}); },
               {"'layer_types'", "1 entries", "26 layers"});
  expect_error_with(
      [] {
        resolve({{"model_type", "gemma2"}, {"num_hidden_layers", 1},
                 {"layer_types", {"chunked_attention"}}});
      },
      {"'layer_types'", "chunked_attention"});
  expect_error_with(
      [] {
        resolve({{"model_type", "qwen2"}, {"num_hidden_layers", 2},
                 {"layer_types", {"full_attention", "sliding_attention"}}});
      },
      {"layer 1", "'use_sliding_window' is false"});
  expect_error_with(
      [] {
        resolve({{"model_type", "llama"}, {"num_hidden_layers", 2},
                 {"layer_types", {"full_attention", "sliding_attention"}}});
      },
      {"'layer_types'", "ignores layer_types"});
  expect_error_with([] { resolve({{"model_type", "gemma2"}, {"sliding_window", nullptr}}); },
               {"layer 0", "'sliding_window' is null"});
  expect_error_with(
      [] { resolve({{"model_type", "gemma3_text"}, {"use_bidirectional_attention", true}}); },
      {"'use_bidirectional_attention'"});
}

TEST(ConfigErrors, NotJsonAndMissingFiles) {
  kvprime::test::TempDir dir;
  kvprime::test::write_file(dir.file("config.json"), "{\"model_type\": \"llama\",");
  expect_error_with([&] { kvprime::load_model_config(dir.file("config.json")); },
               {dir.file("config.json"), "not valid JSON"});
  expect_error_with([&] { kvprime::load_model_config(dir.file("nope.json")); },
               {dir.file("nope.json"), "no such file"});
  kvprime::test::TempDir empty;
  expect_error_with([&] { kvprime::load_model_config(empty.path()); },
               {empty.path(), "no config.json"});
}
