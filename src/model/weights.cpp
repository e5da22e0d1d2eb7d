#include "weights.h"

#include <set>

#include "kvprime/core/dtype.h"
#include "kvprime/core/error.h"

namespace kvprime {

namespace {

class Reader {
 public:
  Reader(const Checkpoint& ckpt, const ModelConfig& cfg, std::string prefix, std::string head_prefix,
         at::ScalarType dtype, at::Device device)
      : ckpt_(ckpt), cfg_(cfg), prefix_(std::move(prefix)), head_prefix_(std::move(head_prefix)),
        dtype_(dtype), device_(device) {}

  bool has(const std::string& name) const { return ckpt_.contains(prefix_ + name); }

  // A tensor under the language model's prefix, checked against `shape`.
  at::Tensor get(const std::string& name, std::vector<int64_t> shape) const {
    return fetch(prefix_ + name, shape);
  }
  at::Tensor get_optional(const std::string& name, std::vector<int64_t> shape) const {
    return has(name) ? get(name, shape) : at::Tensor();
  }
  at::Tensor get_head(const std::string& name, std::vector<int64_t> shape) const {
    return fetch(head_prefix_ + name, shape);
  }
  bool has_head(const std::string& name) const { return ckpt_.contains(head_prefix_ + name); }

 private:
  at::Tensor fetch(const std::string& full, const std::vector<int64_t>& shape) const {
    KVP_CHECK(ckpt_.contains(full), "checkpoint ", ckpt_.dir(), ": tensor '", full,
              "' is missing; config ", cfg_.source, " (", cfg_.architecture,
              ") needs it. Do the config and the weights belong to the same model?");
    const TensorInfo& info = ckpt_.info(full);
    KVP_CHECK(info.scalar_type == at::kFloat || info.scalar_type == at::kBFloat16 ||
                  info.scalar_type == at::kHalf,
              ckpt_.file_of(full), ": tensor '", full, "' has dtype ", info.dtype,
              "; model weights must be F32, F16 or BF16 (quantised checkpoints are not supported: "
              "use the original float weights)");
    KVP_CHECK(info.shape == shape, ckpt_.file_of(full), ": tensor '", full, "' has shape ",
              shape_str(info.shape), " but config ", cfg_.source, " implies ", shape_str(shape),
              "; the config does not match these weights");
    return ckpt_.tensor(full).to(device_, dtype_);
  }

  const Checkpoint& ckpt_;
  const ModelConfig& cfg_;
  std::string prefix_, head_prefix_;
  at::ScalarType dtype_;
  at::Device device_;
};

// The LM head sits beside the decoder: "model." -> "", "language_model.model." -> "language_model.",
// "model.language_model." (transformers 5 multimodal) -> "".
std::string head_prefix_for(const std::string& prefix) {
  const std::string tail = "model.";
  if (prefix.size() >= tail.size() && prefix.compare(prefix.size() - tail.size(), tail.size(), tail) == 0)
    return prefix.substr(0, prefix.size() - tail.size());
  return "";
}

// Stacks q/k/v and gate/up into one weight each and rebinds the separate tensors to views of it.
// Each output element is the same dot product as before; only the GEMM's N dimension grows.
void fuse_projections(LayerWeights& lw) {
  auto stack = [](std::initializer_list<at::Tensor*> parts, at::Tensor& fused) {
    std::vector<at::Tensor> ts;
    for (at::Tensor* p : parts) ts.push_back(*p);
    fused = at::cat(ts, 0);
    int64_t at_row = 0;
    for (at::Tensor* p : parts) {
      const int64_t n = p->size(0);
      *p = fused.narrow(0, at_row, n);
      at_row += n;
    }
  };
  stack({&lw.wq, &lw.wk, &lw.wv}, lw.w_qkv);
  if (lw.bq.defined()) stack({&lw.bq, &lw.bk, &lw.bv}, lw.b_qkv);
  stack({&lw.w_gate, &lw.w_up}, lw.w_gate_up);
  if (lw.b_gate.defined()) stack({&lw.b_gate, &lw.b_up}, lw.b_gate_up);
}

}  // namespace

ModelWeights load_weights(const Checkpoint& ckpt, const ModelConfig& cfg, at::ScalarType dtype,
                          at::Device device, WeightFormat format) {
  // Pick the prefix under which this checkpoint stores the language model.
  std::string prefix;
  for (const auto& p : cfg.weight_prefixes) {
    if (ckpt.contains(p + "embed_tokens.weight")) {
      prefix = p;
      break;
    }
  }
  if (prefix.empty()) {
    std::string tried;
    for (const auto& p : cfg.weight_prefixes) tried += (tried.empty() ? "'" : ", '") + p + "embed_tokens.weight'";
    KVP_FAIL("checkpoint ", ckpt.dir(), ": no token embedding found (tried ", tried,
             "); is this a ", cfg.architecture, " checkpoint in Hugging Face format?");
  }
  Reader r(ckpt, cfg, prefix, head_prefix_for(prefix), dtype, device);

  const int64_t d = cfg.hidden_size, dff = cfg.intermediate_size, hd = cfg.head_dim;
  const int64_t q_out = cfg.n_head * hd, kv_out = cfg.n_head_kv * hd;

  // A config with fewer layers than the weights is a mismatch, not something to ignore silently.
  KVP_CHECK(!r.has("layers." + std::to_string(cfg.n_layer) + ".input_layernorm.weight"),
            "checkpoint ", ckpt.dir(), " has more than num_hidden_layers=", cfg.n_layer,
            " layers (found '", prefix, "layers.", cfg.n_layer, ".*'); config ", cfg.source,
            " does not match these weights");

  ModelWeights w;
  w.embed = r.get("embed_tokens.weight", {cfg.vocab_size, d});
  w.final_norm = r.get("norm.weight", {d});
  if (cfg.tie_word_embeddings) {
    w.lm_head = w.embed;
  } else {
    KVP_CHECK(r.has_head("lm_head.weight"), "checkpoint ", ckpt.dir(),
              ": 'lm_head.weight' is missing and config ", cfg.source,
              " has tie_word_embeddings=false; set tie_word_embeddings=true if the model shares "
              "its embedding");
    w.lm_head = r.get_head("lm_head.weight", {cfg.vocab_size, d});
  }

  for (int64_t il = 0; il < cfg.n_layer; ++il) {
    const std::string L = "layers." + std::to_string(il) + ".";
    LayerWeights lw;
    lw.attn_norm = r.get(L + "input_layernorm.weight", {d});
    lw.post_attn_norm = r.get(L + "post_attention_layernorm.weight", {d});
    if (cfg.sandwich_norm) {
      lw.pre_ffn_norm = r.get(L + "pre_feedforward_layernorm.weight", {d});
      lw.post_ffn_norm = r.get(L + "post_feedforward_layernorm.weight", {d});
    }
    // A projection's weight: dense, or quantized right after it is read (the dense copy freed at
    // once, so loading needs one projection's dense tensor on top of the 4-bit ones).
    auto linear = [&](const std::string& name, std::vector<int64_t> shape, at::Tensor& dense,
                      std::vector<Nf4Tensor>& parts) {
      at::Tensor t = r.get(L + name, std::move(shape));
      if (format == WeightFormat::Native) {
        dense = std::move(t);
      } else {
        // Quantized from the weights in the compute dtype, as bitsandbytes quantizes the loaded
        // fp16/bf16 weights.
        parts.push_back(quantize_nf4(t, 64, format == WeightFormat::Nf4DoubleQuant));
      }
    };
    linear("self_attn.q_proj.weight", {q_out, d}, lw.wq, lw.nf4_qkv);
    linear("self_attn.k_proj.weight", {kv_out, d}, lw.wk, lw.nf4_qkv);
    linear("self_attn.v_proj.weight", {kv_out, d}, lw.wv, lw.nf4_qkv);
    linear("self_attn.o_proj.weight", {d, q_out}, lw.wo, lw.nf4_o);
    if (cfg.qkv_bias) {
      lw.bq = r.get(L + "self_attn.q_proj.bias", {q_out});
      lw.bk = r.get(L + "self_attn.k_proj.bias", {kv_out});
      lw.bv = r.get(L + "self_attn.v_proj.bias", {kv_out});
    }
    if (cfg.o_bias) lw.bo = r.get(L + "self_attn.o_proj.bias", {d});
    if (cfg.qk_norm) {
      lw.q_norm = r.get(L + "self_attn.q_norm.weight", {hd});
      lw.k_norm = r.get(L + "self_attn.k_norm.weight", {hd});
    }
    linear("mlp.gate_proj.weight", {dff, d}, lw.w_gate, lw.nf4_gate_up);
    linear("mlp.up_proj.weight", {dff, d}, lw.w_up, lw.nf4_gate_up);
    linear("mlp.down_proj.weight", {d, dff}, lw.w_down, lw.nf4_down);
    if (cfg.mlp_bias) {
      lw.b_gate = r.get(L + "mlp.gate_proj.bias", {dff});
      lw.b_up = r.get(L + "mlp.up_proj.bias", {dff});
      lw.b_down = r.get(L + "mlp.down_proj.bias", {d});
    }
    if (format != WeightFormat::Native) {
      if (lw.bq.defined()) {
        lw.b_qkv = at::cat({lw.bq, lw.bk, lw.bv}, 0);
      }
      if (lw.b_gate.defined()) lw.b_gate_up = at::cat({lw.b_gate, lw.b_up}, 0);
    } else {
      fuse_projections(lw);
    }
    w.layers.push_back(std::move(lw));
  }
  return w;
}

}  // namespace kvprime
