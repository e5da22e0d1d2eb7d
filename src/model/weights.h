// The tensors of one decoder model, named as in Hugging Face checkpoints, resolved, shape-checked
// against the ModelConfig and converted to the compute dtype/device once at load time.
#pragma once

#include <ATen/ATen.h>

#include <string>
#include <vector>

#include "kvprime/io/safetensors.h"
#include "kvprime/model/config.h"
#include "kvprime/model/model.h"
#include "kvprime/model/nf4.h"

namespace kvprime {

struct LayerWeights {
  at::Tensor attn_norm;      // [d_model]               input_layernorm
  at::Tensor post_attn_norm; // [d_model]               post_attention_layernorm
  at::Tensor pre_ffn_norm;   // [d_model]               Gemma: pre_feedforward_layernorm
  at::Tensor post_ffn_norm;  // [d_model]               Gemma: post_feedforward_layernorm
  at::Tensor wq, bq;         // [n_head*head_dim, d_model], [n_head*head_dim]
  at::Tensor wk, bk;         // [n_head_kv*head_dim, d_model], [n_head_kv*head_dim]
  at::Tensor wv, bv;         // [n_head_kv*head_dim, d_model], [n_head_kv*head_dim]
  at::Tensor wo, bo;         // [d_model, n_head*head_dim], [d_model]
  at::Tensor q_norm, k_norm; // [head_dim]              Qwen3 / Gemma3
  at::Tensor w_gate, b_gate; // [d_ff, d_model], [d_ff]
  at::Tensor w_up, b_up;     // [d_ff, d_model], [d_ff]
  at::Tensor w_down, b_down; // [d_model, d_ff], [d_model]
  // One GEMM instead of three (two): q, k, v stacked [(n_head + 2 n_head_kv) * head_dim, d_model]
  // and gate, up stacked [2 d_ff, d_model] (biases likewise, when present). wq/wk/wv and
  // w_gate/w_up above are views into these, so the weights are held once.
  at::Tensor w_qkv, b_qkv;
  at::Tensor w_gate_up, b_gate_up;
  // NF4 weights (LoadOptions::weights): then the dense w* above are undefined. One Nf4Tensor per
  // projection as published (q, k, v; o; gate, up; down), so the blocks are bitsandbytes' own.
  std::vector<Nf4Tensor> nf4_qkv, nf4_o, nf4_gate_up, nf4_down;
};

struct ModelWeights {
  at::Tensor embed;       // [vocab, d_model]
  at::Tensor final_norm;  // [d_model]
  at::Tensor lm_head;     // [vocab, d_model]; the embedding itself when tied
  std::vector<LayerWeights> layers;
};

// Reads every tensor the config calls for from `ckpt`; errors name the checkpoint file, the
// tensor, the expected and actual shapes, and point at a config/weights mismatch.
ModelWeights load_weights(const Checkpoint& ckpt, const ModelConfig& cfg, at::ScalarType dtype,
                          at::Device device, WeightFormat format = WeightFormat::Native);

}  // namespace kvprime
