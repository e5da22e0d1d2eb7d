#include "kvprime/model/model.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "attention.h"
#include "kvprime/core/dtype.h"
#include "kvprime/core/error.h"
#include "kvprime/core/hash.h"
#include "kvprime/io/safetensors.h"
#include "ops.h"
#include "weights.h"

namespace fs = std::filesystem;

namespace kvprime {

struct Model::Weights : ModelWeights {};

Model::Model() = default;
Model::~Model() = default;
Model::Model(Model&&) noexcept = default;
Model& Model::operator=(Model&&) noexcept = default;

Model Model::load(const std::string& dir, const LoadOptions& options) {
  KVP_CHECK(fs::is_directory(dir), "model directory '", dir,
            "' does not exist or is not a directory; pass a Hugging Face checkpoint directory "
            "(config.json + *.safetensors)");
  Model m;
  m.config_ = load_model_config(dir);
  m.dtype_ = options.dtype;
  m.device_ = options.device;
  KVP_CHECK(m.dtype_ == at::kFloat || m.dtype_ == at::kBFloat16 || m.dtype_ == at::kHalf,
            "model dtype must be float32, bfloat16 or float16, got ", dtype_name(m.dtype_));

  Checkpoint ckpt = Checkpoint::open(dir);
  auto w = load_weights(ckpt, m.config_, m.dtype_, m.device_);
  m.w_ = std::make_unique<Weights>();
  static_cast<ModelWeights&>(*m.w_) = std::move(w);

  for (int64_t il = 0; il < m.config_.n_layer; ++il)
    m.rotary_.emplace_back(m.config_.layers[il].rope, m.config_.head_dim,
                           m.config_.max_position_embeddings);

  // Identity: what the cache of this model must match. The fingerprint covers the config text and
  // every weight header (names, dtypes, shapes, offsets), so a changed checkpoint differs.
  std::ifstream cf(fs::path(dir) / "config.json", std::ios::binary);
  std::stringstream cs;
  cs << cf.rdbuf();
  m.identity_.name = options.name.empty() ? fs::path(dir).lexically_normal().filename().string()
                                          : options.name;
  if (m.identity_.name.empty() || m.identity_.name == ".")
    m.identity_.name = fs::absolute(dir).lexically_normal().parent_path().filename().string();
  m.identity_.fingerprint = hex64(fnv1a64(ckpt.fingerprint(), fnv1a64(cs.str())));
  m.identity_.n_layer = m.config_.n_layer;
  m.identity_.n_head_kv = m.config_.n_head_kv;
  m.identity_.head_dim = m.config_.head_dim;
  return m;
}

KVCache Model::new_cache(int64_t batch) const { return KVCache(identity_, batch, dtype_, device_); }

at::Tensor Model::continue_positions(const KVCache& cache, int64_t T) const {
  auto start = cache.next_positions().to(device_);  // [B]
  return start.unsqueeze(1) + at::arange(T, start.options()).unsqueeze(0);
}

at::Tensor Model::forward(const at::Tensor& input_ids_in, const at::Tensor& positions_in,
                          KVCache& cache, const ForwardOptions& opt) const {
  const auto& cfg = config_;
  KVP_CHECK(input_ids_in.defined() && input_ids_in.dim() == 2, "forward: input_ids must be [B, T]");
  const int64_t B = input_ids_in.size(0), T = input_ids_in.size(1), S = cache.length();
  KVP_CHECK(T > 0, "forward: input_ids is empty (T = 0); give at least one token");
  KVP_CHECK(positions_in.defined() && positions_in.sizes() == input_ids_in.sizes(),
            "forward: positions must have the shape of input_ids [", B, ", ", T, "]");
  KVP_CHECK(cache.n_layer() == cfg.n_layer && cache.model() == identity_,
            "forward: the cache was made by model '", cache.model().name, "' (fingerprint ",
            cache.model().fingerprint, "), not by '", identity_.name, "' (fingerprint ",
            identity_.fingerprint, "); use a cache from Model::new_cache() of this model");
  KVP_CHECK(cache.batch() == B, "forward: cache batch ", cache.batch(), " != input batch ", B);
  KVP_CHECK(cache.dtype() == dtype_ && cache.device() == device_,
            "forward: cache is ", dtype_name(cache.dtype()), " on ", cache.device().str(),
            ", the model runs ", dtype_name(dtype_), " on ", device_.str());

  auto ids = input_ids_in.to(device_, at::kLong);
  auto positions = positions_in.to(device_, at::kLong);
  KVP_CHECK(ids.min().item<int64_t>() >= 0 && ids.max().item<int64_t>() < cfg.vocab_size,
            "forward: token id out of range [0, ", cfg.vocab_size, ")");
  KVP_CHECK(positions.min().item<int64_t>() >= 0, "forward: positions must be non-negative");

  at::Tensor valid_new = opt.attention_mask.defined()
                             ? opt.attention_mask.to(device_).to(at::kBool)
                             : at::ones({B, T}, at::TensorOptions().dtype(at::kBool).device(device_));
  KVP_CHECK(valid_new.sizes() == ids.sizes(), "forward: attention_mask must be [", B, ", ", T, "]");
  if (opt.custom_mask.defined())
    KVP_CHECK(opt.custom_mask.dim() == 3 && opt.custom_mask.size(0) == B &&
                  opt.custom_mask.size(1) == T && opt.custom_mask.size(2) == S + T,
              "forward: custom_mask must be [B, T, S + T] = [", B, ", ", T, ", ", S + T, "]");
  auto valid_all = at::cat({cache.valid(), valid_new}, 1);  // [B, S+T]

  // Masks differ only between full and sliding layers: build each kind once.
  at::Tensor mask_full, mask_sliding;
  auto mask_for = [&](const LayerSpec& spec) -> const at::Tensor& {
    if (spec.kind == AttentionKind::Sliding && spec.sliding_window > 0) {
      if (!mask_sliding.defined())
        mask_sliding = build_attention_mask(valid_all, S, T, opt.custom_mask, spec.sliding_window);
      return mask_sliding;
    }
    if (!mask_full.defined()) mask_full = build_attention_mask(valid_all, S, T, opt.custom_mask, 0);
    return mask_full;
  };

  // x: [B, T, d_model]
  auto x = at::embedding(w_->embed, ids);
  if (cfg.embed_scale != 1.0) x = x * at::scalar_tensor(cfg.embed_scale, x.options());

  std::vector<at::Tensor> new_k(cfg.n_layer), new_v(cfg.n_layer);
  const int64_t H = cfg.n_head, Hkv = cfg.n_head_kv, D = cfg.head_dim;
  for (int64_t il = 0; il < cfg.n_layer; ++il) {
    const LayerWeights& lw = w_->layers[il];
    const LayerSpec& spec = cfg.layers[il];

    // --- attention ---
    auto h = ops::rms_norm(x, lw.attn_norm, cfg.rms_norm_eps, cfg.norm_one_plus);
    auto q = ops::linear(h, lw.wq, lw.bq).view({B, T, H, D});      // [B, T, H, D]
    auto k = ops::linear(h, lw.wk, lw.bk).view({B, T, Hkv, D});    // [B, T, Hkv, D]
    auto v = ops::linear(h, lw.wv, lw.bv).view({B, T, Hkv, D});
    if (cfg.qk_norm) {
      q = ops::rms_norm(q, lw.q_norm, cfg.rms_norm_eps, cfg.norm_one_plus);
      k = ops::rms_norm(k, lw.k_norm, cfg.rms_norm_eps, cfg.norm_one_plus);
    }
    q = rotary_[il].apply(q.transpose(1, 2), positions);            // [B, H, T, D]
    k = rotary_[il].apply(k.transpose(1, 2), positions);            // [B, Hkv, T, D]
    v = v.transpose(1, 2);                                          // [B, Hkv, T, D]
    new_k[il] = k.contiguous();
    new_v[il] = v.contiguous();
    auto k_all = S ? at::cat({cache.key(il), new_k[il]}, 2) : new_k[il];  // [B, Hkv, S+T, D]
    auto v_all = S ? at::cat({cache.value(il), new_v[il]}, 2) : new_v[il];
    auto a = attention(q, k_all, v_all, mask_for(spec), cfg.attn_scale, cfg.attn_logit_softcap);
    a = ops::linear(a.transpose(1, 2).reshape({B, T, H * D}), lw.wo, lw.bo);  // [B, T, d_model]
    if (cfg.sandwich_norm) a = ops::rms_norm(a, lw.post_attn_norm, cfg.rms_norm_eps, cfg.norm_one_plus);
    x = x + a;

    // --- feed-forward (gated) ---
    const at::Tensor& ffn_norm = cfg.sandwich_norm ? lw.pre_ffn_norm : lw.post_attn_norm;
    h = ops::rms_norm(x, ffn_norm, cfg.rms_norm_eps, cfg.norm_one_plus);
    auto g = ops::activation(ops::linear(h, lw.w_gate, lw.b_gate), cfg.act);
    auto f = ops::linear(g * ops::linear(h, lw.w_up, lw.b_up), lw.w_down, lw.b_down);
    if (cfg.sandwich_norm) f = ops::rms_norm(f, lw.post_ffn_norm, cfg.rms_norm_eps, cfg.norm_one_plus);
    x = x + f;
  }

  // Commit to the cache only after every layer succeeded.
  cache.append(new_k, new_v, positions, ids, valid_new);

  if (opt.logits == LogitsMode::None) return {};
  x = ops::rms_norm(x, w_->final_norm, cfg.rms_norm_eps, cfg.norm_one_plus);
  if (opt.logits == LogitsMode::Last) {
    // Each row's last real token: the highest index whose mask is set.
    auto idx = (valid_new.to(at::kLong) * at::arange(T, ids.options()).unsqueeze(0)).argmax(1);
    x = x.index({at::arange(B, ids.options()), idx});  // [B, d_model]
  }
  auto logits = at::linear(x, w_->lm_head);
  if (cfg.final_logit_softcap) logits = ops::softcap(logits, *cfg.final_logit_softcap);
  return logits.to(at::kFloat);
}

}  // namespace kvprime
