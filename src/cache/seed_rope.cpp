#include "kvprime/cache/seed_rope.h"

#include "kvprime/core/error.h"
#include "kvprime/model/rope.h"

namespace kvprime {

std::pair<at::Tensor, at::Tensor> build_rope_correction(int64_t offset, int64_t head_dim,
                                                        double theta) {
  KVP_CHECK(head_dim > 0 && head_dim % 2 == 0, "build_rope_correction: head_dim must be a positive "
            "even number, got ", head_dim);
  KVP_CHECK(theta > 0, "build_rope_correction: theta must be positive, got ", theta);
  // Exactly as the seed's Python:
  //   inv_freq = 1.0 / (theta ** (torch.arange(0, d, 2, dtype=torch.int64).float() / d))  float32
  //   angles = (-offset * inv_freq).double()   (the product is float32, only then widened)
  //   emb = cat(angles, angles); return emb.cos().float(), emb.sin().float()
  // (ATen spelling of the Python idioms as in src/model/rope.cpp: `1.0 / t` is t.reciprocal(),
  // `base ** t` is at::pow(Scalar, t), `python_int * t` a float32 multiply by a wrapped scalar.)
  // The float32 inv_freq equals HF's default-RoPE buffer; the float32 product differs from a
  // float64 one by up to ~1e-6 in cos/sin at offset 200, which tests/seed/test_seed_golden.cpp sees.
  at::Tensor exponents =
      at::arange(0, head_dim, 2, at::TensorOptions().dtype(at::kLong)).to(at::kFloat) / head_dim;
  at::Tensor inv_freq = at::pow(at::Scalar(theta), exponents).reciprocal();   // [head_dim / 2] f32
  at::Tensor angles = (inv_freq * at::Scalar(-offset)).to(at::kDouble);      // f32 product
  at::Tensor emb = at::cat({angles, angles});                                 // [head_dim]
  return {emb.cos().to(at::kFloat), emb.sin().to(at::kFloat)};
}

double get_rope_theta(const RawConfig& config) {
  if (config.rope_theta) return *config.rope_theta;
  const auto& rp = config.rope_parameters;
  if (rp.is_object()) {
    if (rp.contains("rope_theta") && rp["rope_theta"].is_number()) return rp["rope_theta"].get<double>();
    // Gemma 3 (5.x): one entry per layer type; the seed read the global (full attention) one.
    for (const char* key : {"full_attention", "sliding_attention"})
      if (rp.contains(key) && rp[key].is_object() && rp[key].contains("rope_theta"))
        return rp[key]["rope_theta"].get<double>();
  }
  return 10000.0;
}

KVCache correct_rope_positions_single_theta(const KVCache& cache, int64_t offset, double theta,
                                            int64_t head_dim, bool keep_bos) {
  KVP_CHECK(head_dim == cache.model().head_dim, "correct_rope_positions_single_theta: head_dim ",
            head_dim, " differs from the cache's ", cache.model().head_dim,
            " (the seed's hidden_size / num_heads is not the head dim for every model)");
  const int64_t first = keep_bos ? 1 : 0;
  if (offset == 0 || cache.length() <= first) return cache;
  auto cs = build_rope_correction(offset, head_dim, theta);
  at::Tensor cos = cs.first.to(cache.device()), sin = cs.second.to(cache.device());
  std::vector<at::Tensor> keys, values;
  for (int64_t il = 0; il < cache.n_layer(); ++il) {
    at::Tensor k = cache.key(il);
    // The seed multiplies in the cache's dtype after casting cos/sin to it.
    at::Tensor doc = k.slice(2, first);
    at::Tensor c = cos.to(k.scalar_type()), s = sin.to(k.scalar_type());
    at::Tensor moved = doc * c + rotate_half(doc) * s;
    keys.push_back(first ? at::cat({k.slice(2, 0, first), moved}, 2) : moved.contiguous());
    values.push_back(cache.value(il));
  }
  at::Tensor positions = cache.positions().clone();
  positions.slice(1, first).sub_(offset);
  return KVCache::from_tensors(cache.model(), std::move(keys), std::move(values), positions,
                               cache.token_ids(), cache.valid(), "correct_rope_positions_single_theta");
}

}  // namespace kvprime
