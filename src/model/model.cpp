#include "kvprime/model/model.h"

#include <algorithm>
#include <climits>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "attention.h"
#include "fused_ops.h"
#include "kvprime/core/compat.h"
#include "kvprime/core/dtype.h"
#include "kvprime/core/error.h"
#include "kvprime/core/hash.h"
#include "kvprime/io/safetensors.h"
#include "ops.h"
#include "weights.h"

namespace fs = std::filesystem;

namespace kvprime {

struct Model::Weights : ModelWeights {};

WeightFormat parse_weight_format(const std::string& name, const std::string& what) {
  if (name == "native" || name.empty()) return WeightFormat::Native;
  if (name == "nf4") return WeightFormat::Nf4;
  if (name == "nf4-dq") return WeightFormat::Nf4DoubleQuant;
  KVP_FAIL(what, ": unknown weight format '", name, "'; expected 'native' (the checkpoint's weights "
           "in the compute dtype), 'nf4' (4-bit NormalFloat, blocks of 64) or 'nf4-dq' (nf4 with "
           "double-quantized block scales)");
}

const char* weight_format_name(WeightFormat f) {
  switch (f) {
    case WeightFormat::Nf4: return "nf4";
    case WeightFormat::Nf4DoubleQuant: return "nf4-dq";
    case WeightFormat::Native: break;
  }
  return "native";
}

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
  if (m.device_.is_cuda()) compat::avoid_per_shape_attention_compilation();
  KVP_CHECK(m.dtype_ == at::kFloat || m.dtype_ == at::kBFloat16 || m.dtype_ == at::kHalf,
            "model dtype must be float32, bfloat16 or float16, got ", dtype_name(m.dtype_));
  KVP_CHECK(!m.device_.is_cpu() || compat::cpu_matmul_supported(m.dtype_), "model '", dir, "': ",
            dtype_name(m.dtype_), " on the CPU is not supported by this LibTorch (", TORCH_VERSION,
            ": no ", dtype_name(m.dtype_), " CPU matrix multiply); use float32 or bfloat16 on the CPU, "
            "or a CUDA device");

  Checkpoint ckpt = Checkpoint::open(dir);
  auto w = load_weights(ckpt, m.config_, m.dtype_, m.device_, options.weights);
  m.w_ = std::make_unique<Weights>();
  static_cast<ModelWeights&>(*m.w_) = std::move(w);

  for (int64_t il = 0; il < m.config_.n_layer; ++il) {
    m.rotary_.emplace_back(m.config_.layers[il].rope, m.config_.head_dim,
                           m.config_.max_position_embeddings);
    m.rotary_.back().to(m.device_);
    // Layers with equal frequencies share cos/sin within a forward (all layers of most models;
    // Gemma 3's local and global layers form two groups). Dynamic scaling depends on the
    // positions, so such layers never share.
    const RopeFrequencies& f = m.rotary_.back().frequencies();
    int64_t group = il;
    for (int64_t jl = 0; jl < il && m.config_.layers[il].rope.type != RopeType::Dynamic; ++jl) {
      const RopeFrequencies& g = m.rotary_[jl].frequencies();
      if (m.rope_group_[jl] == jl && g.rotary_dim == f.rotary_dim &&
          g.attention_scaling == f.attention_scaling && at::equal(g.inv_freq, f.inv_freq)) {
        group = jl;
        break;
      }
    }
    m.rope_group_.push_back(group);
  }

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
  // NF4 weights compute other K/V than the checkpoint's own: their caches must not mix.
  if (options.weights != WeightFormat::Native)
    m.identity_.fingerprint += std::string("-") + weight_format_name(options.weights);
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

namespace {

// Host-side validation of a [B, T] int64 tensor: min/max without touching a device.
std::pair<int64_t, int64_t> host_min_max(const at::Tensor& t) {
  auto c = t.to(at::kLong).contiguous();
  const int64_t* p = c.data_ptr<int64_t>();
  int64_t lo = INT64_MAX, hi = INT64_MIN;
  for (int64_t i = 0; i < c.numel(); ++i) {
    lo = std::min(lo, p[i]);
    hi = std::max(hi, p[i]);
  }
  return {lo, hi};
}

// True when every row of a host [B, T] mask is 1...1 0...0: padding only at the end.
bool right_padded(const at::Tensor& mask) {
  auto c = mask.to(at::kLong).contiguous();
  const int64_t B = c.size(0), T = c.size(1);
  const int64_t* p = c.data_ptr<int64_t>();
  for (int64_t b = 0; b < B; ++b) {
    bool seen_pad = false;
    for (int64_t t = 0; t < T; ++t) {
      const bool real = p[b * T + t] != 0;
      if (real && seen_pad) return false;
      seen_pad = seen_pad || !real;
    }
  }
  return true;
}

}  // namespace

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

  // Validate on the host where the inputs are (no device synchronisation), then upload
  // asynchronously.
  if (input_ids_in.device().is_cpu()) {
    auto [lo, hi] = host_min_max(input_ids_in);
    KVP_CHECK(lo >= 0 && hi < cfg.vocab_size, "forward: token id out of range [0, ", cfg.vocab_size,
              ") (got ", lo < 0 ? lo : hi, ")");
  } else {
    auto i = input_ids_in.to(at::kLong);
    KVP_CHECK(i.min().item<int64_t>() >= 0 && i.max().item<int64_t>() < cfg.vocab_size,
              "forward: token id out of range [0, ", cfg.vocab_size, ")");
  }
  if (positions_in.device().is_cpu())
    KVP_CHECK(host_min_max(positions_in).first >= 0, "forward: positions must be non-negative");
  auto ids = compat::to_device(input_ids_in.to(at::kLong), device_);
  auto positions = compat::to_device(positions_in.to(at::kLong), device_);

  at::Tensor valid_new = opt.attention_mask.defined()
                             ? compat::to_device(opt.attention_mask, device_).to(at::kBool)
                             : at::ones({B, T}, at::TensorOptions().dtype(at::kBool).device(device_));
  KVP_CHECK(valid_new.sizes() == ids.sizes(), "forward: attention_mask must be [", B, ", ", T, "]");
  if (opt.custom_mask.defined())
    KVP_CHECK(opt.custom_mask.dim() == 3 && opt.custom_mask.size(0) == B &&
                  opt.custom_mask.size(1) == T && opt.custom_mask.size(2) == S + T,
              "forward: custom_mask must be [B, T, S + T] = [", B, ", ", T, ", ", S + T, "]");
  at::Tensor rows;
  if (opt.logits == LogitsMode::Rows) {
    KVP_CHECK(opt.logits_rows.defined() && opt.logits_rows.dim() == 1,
              "forward: LogitsMode::Rows needs logits_rows [N] (indices b * T + t)");
    if (opt.logits_rows.device().is_cpu() && opt.logits_rows.numel() > 0) {
      auto [lo, hi] = host_min_max(opt.logits_rows);
      KVP_CHECK(lo >= 0 && hi < B * T, "forward: logits_rows must lie in [0, B * T = ", B * T, ")");
    }
    rows = compat::to_device(opt.logits_rows.to(at::kLong), device_);
  }

  // Mask-free causal attention when nothing but causality constrains it: an empty cache, no
  // custom mask, no padding or padding only at the end of rows (real tokens then never see it),
  // and no sliding window shorter than the sequence. The attention kernels then need no mask.
  bool plain_causal = S == 0 && !opt.custom_mask.defined() &&
                      (!opt.attention_mask.defined() ||
                       (opt.attention_mask.device().is_cpu() && right_padded(opt.attention_mask)));
  for (const LayerSpec& spec : cfg.layers)
    plain_causal = plain_causal && !(spec.kind == AttentionKind::Sliding && spec.sliding_window > 0 &&
                                     spec.sliding_window < T);
  at::Tensor valid_all = S ? at::cat({cache.valid(), valid_new}, 1) : valid_new;  // [B, S+T]

  // Masks differ only between full and sliding layers: build each kind once.
  at::Tensor mask_full, mask_sliding;
  auto mask_for = [&](const LayerSpec& spec) -> at::Tensor {
    if (plain_causal) return {};
    if (spec.kind == AttentionKind::Sliding && spec.sliding_window > 0) {
      if (!mask_sliding.defined())
        mask_sliding = build_attention_mask(valid_all, S, T, opt.custom_mask, spec.sliding_window);
      return mask_sliding;
    }
    if (!mask_full.defined()) mask_full = build_attention_mask(valid_all, S, T, opt.custom_mask, 0);
    return mask_full;
  };

  // The elementwise steps: fused CUDA kernels where this build has them (same rounding as the
  // eager ATen ops, which follow HF), else eager.
  const bool fused = fused::available(w_->embed);
  const double eps = cfg.rms_norm_eps;
  const bool one_plus = cfg.norm_one_plus;
  auto norm = [&](const at::Tensor& x, const at::Tensor& w) {
    return fused ? fused::rms_norm(x, w, eps, one_plus) : ops::rms_norm(x, w, eps, one_plus);
  };
  // x + a (rounded to the dtype, as HF's residual add), and its norm.
  auto add_norm = [&](const at::Tensor& x, const at::Tensor& a, const at::Tensor& w) {
    if (fused) return fused::add_rms_norm(x, a, w, eps, one_plus);
    at::Tensor y = x + a;
    return std::make_pair(y, ops::rms_norm(y, w, eps, one_plus));
  };
  const int64_t F = cfg.intermediate_size;
  auto gated = [&](const at::Tensor& gu) {  // [.., 2F] (gate, up) -> act(gate) * up [.., F]
    if (fused) return fused::gated_act(gu, cfg.act);
    return ops::activation(gu.narrow(-1, 0, F), cfg.act) * gu.narrow(-1, F, F);
  };
  const int64_t H = cfg.n_head, Hkv = cfg.n_head_kv, D = cfg.head_dim;
  // cos/sin per rope group: [B, T, rotary_dim] in the compute dtype.
  std::vector<std::pair<at::Tensor, at::Tensor>> cos_sin(cfg.n_layer);
  auto rope = [&](int64_t il, const at::Tensor& x_bthd) {  // [B, T, h, D] -> [B, h, T, D]
    const int64_t g = rope_group_[il];
    if (!cos_sin[g].first.defined()) cos_sin[g] = rotary_[g].cos_sin(positions, dtype_);
    const auto& [c, s] = cos_sin[g];
    if (fused) return fused::rope(x_bthd, c, s, rotary_[il].frequencies().rotary_dim);
    return rotary_[il].apply_cos_sin(x_bthd.transpose(1, 2), c, s);
  };

  // x: [B, T, d_model]
  auto x = at::embedding(w_->embed, ids);
  if (cfg.embed_scale != 1.0) x = x * at::scalar_tensor(cfg.embed_scale, x.options());

  std::vector<at::Tensor> new_k(cfg.n_layer), new_v(cfg.n_layer);
  at::Tensor h = norm(x, w_->layers[0].attn_norm);  // the attention input of layer 0
  for (int64_t il = 0; il < cfg.n_layer; ++il) {
    const LayerWeights& lw = w_->layers[il];
    const LayerSpec& spec = cfg.layers[il];

    // --- attention ---
    auto qkv = ops::linear(h, lw.nf4_qkv, lw.w_qkv, lw.b_qkv);          // [B, T, (H + 2 Hkv) D]
    auto q = qkv.narrow(-1, 0, H * D).view({B, T, H, D});
    auto k = qkv.narrow(-1, H * D, Hkv * D).view({B, T, Hkv, D});
    auto v = qkv.narrow(-1, (H + Hkv) * D, Hkv * D).view({B, T, Hkv, D});
    if (cfg.qk_norm) {
      q = norm(q, lw.q_norm);
      k = norm(k, lw.k_norm);
    }
    q = rope(il, q);                                                    // [B, H, T, D]
    new_k[il] = rope(il, k).contiguous();                               // [B, Hkv, T, D]
    new_v[il] = v.transpose(1, 2).contiguous();                         // [B, Hkv, T, D]
    auto k_all = S ? at::cat({cache.key(il), new_k[il]}, 2) : new_k[il];  // [B, Hkv, S+T, D]
    auto v_all = S ? at::cat({cache.value(il), new_v[il]}, 2) : new_v[il];
    auto a = attention(q, k_all, v_all, mask_for(spec), cfg.attn_scale, cfg.attn_logit_softcap);
    a = ops::linear(a.transpose(1, 2).reshape({B, T, H * D}), lw.nf4_o, lw.wo, lw.bo);  // [B, T, d_model]
    if (cfg.sandwich_norm) a = norm(a, lw.post_attn_norm);

    // --- feed-forward (gated) ---
    const at::Tensor& ffn_norm = cfg.sandwich_norm ? lw.pre_ffn_norm : lw.post_attn_norm;
    std::tie(x, h) = add_norm(x, a, ffn_norm);
    auto f = ops::linear(gated(ops::linear(h, lw.nf4_gate_up, lw.w_gate_up, lw.b_gate_up)), lw.nf4_down,
                         lw.w_down, lw.b_down);
    if (cfg.sandwich_norm) f = norm(f, lw.post_ffn_norm);
    // The residual add and the next block's norm (the final norm after the last block).
    std::tie(x, h) = add_norm(x, f, il + 1 < cfg.n_layer ? w_->layers[il + 1].attn_norm : w_->final_norm);
  }

  // Commit to the cache only after every layer succeeded.
  if (opt.update_cache) cache.append(new_k, new_v, positions, ids, valid_new);

  if (opt.logits == LogitsMode::None) return {};
  x = h;  // final_norm(x), [B, T, d_model]
  if (opt.logits == LogitsMode::Last) {
    // Each row's last real token: the highest index whose mask is set.
    auto idx = (valid_new.to(at::kLong) * at::arange(T, ids.options()).unsqueeze(0)).argmax(1);
    x = x.index({at::arange(B, ids.options()), idx});  // [B, d_model]
  } else if (opt.logits == LogitsMode::Rows) {
    x = x.reshape({B * T, x.size(-1)}).index_select(0, rows);  // [N, d_model]
  }
  auto logits = at::linear(x, w_->lm_head);
  if (cfg.final_logit_softcap) logits = ops::softcap(logits, *cfg.final_logit_softcap);
  return logits.to(at::kFloat);
}

}  // namespace kvprime
