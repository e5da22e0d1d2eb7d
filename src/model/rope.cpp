// Rotary embeddings as transformers computes them (modeling_rope_utils.py and the models'
// *RotaryEmbedding modules, transformers 5.x). To match HF to the last bit where possible, each
// frequency formula is written with the same ATen operations, on float32 tensors, in the same
// order as the Python code. Python idioms map to ATen as torch does it:
//   1.0 / t       -> t.reciprocal() (Tensor.__rtruediv__ is reciprocal() * other; * 1.0 is exact)
//   base ** t     -> at::pow(Scalar base, t)     (Tensor.__rpow__)
//   1 - t         -> at::rsub(t, 1)
//   t / python_n  -> t / Scalar (a wrapped scalar: float32 arithmetic, no promotion)
// Scalar-only arithmetic (yarn's correction range, dynamic's base at init) is plain double, like
// Python floats.
#include "kvprime/model/rope.h"

#include "kvprime/core/compat.h"

#include <cmath>

#include "kvprime/core/error.h"

namespace kvprime {

at::Tensor rotate_half(const at::Tensor& x) {
  const int64_t d = x.size(-1);
  KVP_CHECK(d % 2 == 0, "rotate_half: the last dimension must be even, got ", d);
  // [.., 2h] -> [-x[.., h:], x[.., :h]]
  return at::cat({x.narrow(-1, d / 2, d / 2).neg(), x.narrow(-1, 0, d / 2)}, -1);
}

namespace {

constexpr double kPi = 3.14159265358979323846;  // math.pi

int64_t rotary_dim_of(const RopeParams& p, int64_t head_dim) {
  // Python's int(head_dim * partial_rotary_factor).
  return static_cast<int64_t>(static_cast<double>(head_dim) * p.partial_rotary_factor);
}

// torch.arange(0, dim, 2, dtype=int64).float() / dim   -> [dim / 2] float32, CPU
at::Tensor exponents(int64_t dim) {
  return at::arange(0, dim, 2, at::TensorOptions().dtype(at::kLong)).to(at::kFloat) / dim;
}

// HF's default frequencies: 1.0 / (base ** exponents)   -> [dim / 2] float32
at::Tensor default_inv_freq(double base, int64_t dim) {
  return at::pow(at::Scalar(base), exponents(dim)).reciprocal();
}

// transformers' yarn get_mscale.
double yarn_mscale(double scale, double mscale) {
  return scale <= 1 ? 1.0 : 0.1 * mscale * std::log(scale) + 1.0;
}

RopeFrequencies yarn(const RopeParams& p, int64_t dim) {
  const double base = p.theta, factor = p.factor;
  RopeFrequencies f;
  if (p.attention_factor) {
    f.attention_scaling = *p.attention_factor;
  } else if (p.mscale.value_or(0) != 0 && p.mscale_all_dim.value_or(0) != 0) {  // Python truthiness
    f.attention_scaling = yarn_mscale(factor, *p.mscale) / yarn_mscale(factor, *p.mscale_all_dim);
  } else {
    f.attention_scaling = yarn_mscale(factor, 1.0);
  }

  // pos_freqs = base ** (arange(0, dim, 2).float() / dim)   [dim / 2]
  at::Tensor pos_freqs = at::pow(at::Scalar(base), exponents(dim));
  at::Tensor inv_extrapolation = pos_freqs.reciprocal();           // 1.0 / pos_freqs
  at::Tensor inv_interpolation = (pos_freqs * factor).reciprocal();  // 1.0 / (factor * pos_freqs)

  // Correction range in dimension units, from the wavelengths that make beta_fast / beta_slow
  // rotations over the original context (Python floats).
  const double orig = static_cast<double>(p.original_max_position_embeddings);
  auto correction_dim = [&](double num_rotations) {
    return (static_cast<double>(dim) * std::log(orig / (num_rotations * 2 * kPi))) /
           (2 * std::log(base));
  };
  double low = correction_dim(p.beta_fast), high = correction_dim(p.beta_slow);
  if (p.truncate) {
    low = std::floor(low);
    high = std::ceil(high);
  }
  low = std::max(low, 0.0);
  high = std::min(high, static_cast<double>(dim - 1));
  if (low == high) high += 0.001;  // HF: prevent a singular ramp

  // linear ramp over the dim / 2 frequencies, clamped to [0, 1]
  at::Tensor ramp = ((at::arange(dim / 2, at::TensorOptions().dtype(at::kFloat)) - low) /
                     (high - low))
                        .clamp(0, 1);
  at::Tensor extrapolation_factor = at::rsub(ramp, 1);  // 1 - ramp
  f.inv_freq = inv_interpolation * at::rsub(extrapolation_factor, 1) +
               inv_extrapolation * extrapolation_factor;
  return f;
}

RopeFrequencies llama3(const RopeParams& p, int64_t dim) {
  RopeFrequencies f;
  at::Tensor inv_freq = default_inv_freq(p.theta, dim);
  const double factor = p.factor, low_ff = p.low_freq_factor, high_ff = p.high_freq_factor;
  const int64_t old_context_len = p.original_max_position_embeddings;
  const double low_freq_wavelen = static_cast<double>(old_context_len) / low_ff;
  const double high_freq_wavelen = static_cast<double>(old_context_len) / high_ff;

  at::Tensor wavelen = inv_freq.reciprocal() * (2 * kPi);  // 2 * math.pi / inv_freq
  // Long wavelengths (low frequencies) are divided by factor, short ones kept.
  at::Tensor inv_freq_llama = at::where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq);
  // In between, interpolate: smooth = (old_context_len / wavelen - low) / (high - low).
  at::Tensor smooth = (wavelen.reciprocal() * old_context_len - low_ff) / (high_ff - low_ff);
  at::Tensor smoothed =
      at::rsub(smooth, 1) * inv_freq_llama / factor + smooth * inv_freq_llama;
  at::Tensor is_medium = (wavelen < high_freq_wavelen).logical_not() &
                         (wavelen > low_freq_wavelen).logical_not();
  f.inv_freq = at::where(is_medium, smoothed, inv_freq_llama);
  return f;
}

RopeFrequencies dynamic_ntk(const RopeParams& p, int64_t dim, int64_t max_pos, int64_t seq_len) {
  RopeFrequencies f;
  const double factor = p.factor;
  const double exponent = static_cast<double>(dim) / static_cast<double>(dim - 2);
  if (seq_len <= max_pos) {
    // At init HF calls with seq_len = None -> max_position_embeddings, in Python floats; the
    // rescale term is exactly 1, so this equals the default frequencies.
    const double s = static_cast<double>(max_pos);
    const double base =
        p.theta * std::pow((factor * s / static_cast<double>(max_pos)) - (factor - 1), exponent);
    f.inv_freq = default_inv_freq(base, dim);
    return f;
  }
  // Growth: HF's dynamic_rope_update passes seq_len = torch.max(position_ids) + 1, a 0-dim int64
  // tensor, so the new base is computed with float32 tensor arithmetic.
  at::Tensor s = at::scalar_tensor(seq_len, at::TensorOptions().dtype(at::kLong));
  s = at::maximum(s, at::scalar_tensor(max_pos, at::TensorOptions().dtype(at::kLong)));
  at::Tensor base = at::pow(s * factor / max_pos - (factor - 1), exponent) * p.theta;  // 0-dim f32
  f.inv_freq = at::pow(base, exponents(dim)).reciprocal();
  return f;
}

}  // namespace

RopeFrequencies compute_rope_frequencies(const RopeParams& p, int64_t head_dim,
                                         int64_t max_position_embeddings, int64_t seq_len) {
  const int64_t dim = rotary_dim_of(p, head_dim);
  KVP_CHECK(dim > 0 && dim % 2 == 0 && dim <= head_dim, "RoPE: rotary_dim = int(head_dim ",
            head_dim, " x partial_rotary_factor ", p.partial_rotary_factor, ") = ", dim,
            " must be even and in (0, head_dim]");
  KVP_CHECK(p.theta > 0, "RoPE: rope_theta must be positive, got ", p.theta);
  KVP_CHECK(p.type == RopeType::Default || p.factor > 0, "RoPE ", rope_type_name(p.type),
            ": factor must be positive, got ", p.factor);
  const int64_t orig = p.original_max_position_embeddings > 0 ? p.original_max_position_embeddings
                                                              : max_position_embeddings;
  RopeFrequencies f;
  switch (p.type) {
    case RopeType::Default:
      f.inv_freq = default_inv_freq(p.theta, dim);
      break;
    case RopeType::Linear:
      f.inv_freq = default_inv_freq(p.theta, dim);
      f.inv_freq.div_(p.factor);  // HF: inv_freq /= factor
      break;
    case RopeType::Dynamic:
      KVP_CHECK(max_position_embeddings > 0, "RoPE dynamic: max_position_embeddings must be "
                "positive, got ", max_position_embeddings);
      KVP_CHECK(dim > 2, "RoPE dynamic: rotary_dim must be > 2, got ", dim);
      f = dynamic_ntk(p, dim, max_position_embeddings, seq_len);
      break;
    case RopeType::Llama3: {
      KVP_CHECK(orig > 0 && p.high_freq_factor > p.low_freq_factor, "RoPE llama3: need "
                "original_max_position_embeddings > 0 and high_freq_factor > low_freq_factor");
      RopeParams q = p;
      q.original_max_position_embeddings = orig;
      f = llama3(q, dim);
      break;
    }
    case RopeType::Yarn: {
      KVP_CHECK(orig > 0, "RoPE yarn: original_max_position_embeddings must be positive");
      RopeParams q = p;
      q.original_max_position_embeddings = orig;
      f = yarn(q, dim);
      break;
    }
  }
  f.rotary_dim = dim;
  KVP_ASSERT(f.inv_freq.dim() == 1 && f.inv_freq.size(0) == dim / 2 &&
             f.inv_freq.scalar_type() == at::kFloat);
  return f;
}

Rotary::Rotary(RopeParams params, int64_t head_dim, int64_t max_position_embeddings)
    : params_(std::move(params)),
      head_dim_(head_dim),
      max_position_embeddings_(max_position_embeddings),
      freq_(compute_rope_frequencies(params_, head_dim, max_position_embeddings)) {}

std::pair<at::Tensor, at::Tensor> Rotary::cos_sin(const at::Tensor& positions,
                                                  at::ScalarType dtype) const {
  KVP_CHECK(freq_.inv_freq.defined(), "Rotary::cos_sin on a default-constructed Rotary");
  KVP_CHECK(positions.dim() == 2, "Rotary::cos_sin: positions must be [batch, seq], got ",
            positions.sizes());
  KVP_CHECK(!at::isFloatingType(positions.scalar_type()),
            "Rotary::cos_sin: positions must be integers, got ", positions.scalar_type());
  at::Tensor inv_freq = freq_.inv_freq;
  if (params_.type == RopeType::Dynamic && positions.numel() > 0) {
    const int64_t seq_len = positions.max().item<int64_t>() + 1;  // HF: max(position_ids) + 1
    if (seq_len > max_position_embeddings_)
      inv_freq =
          compute_rope_frequencies(params_, head_dim_, max_position_embeddings_, seq_len).inv_freq;
  }
  const int64_t batch = positions.size(0);
  // HF: (inv_freq[None, :, None] @ position_ids[:, None, :]).transpose(1, 2), all float32.
  at::Tensor inv = (inv_freq.is_same(freq_.inv_freq) ? inv_freq_on(positions.device(), at::kFloat)
                                                     : inv_freq.to(positions.device(), at::kFloat))
                       .view({1, -1, 1})
                       .expand({batch, -1, 1});                       // [B, rd/2, 1]
  at::Tensor pos = positions.unsqueeze(1).to(at::kFloat);            // [B, 1, T]
  at::Tensor freqs = at::matmul(inv, pos).transpose(1, 2);           // [B, T, rd/2]
  at::Tensor emb = at::cat({freqs, freqs}, -1);                      // [B, T, rd]
  at::Tensor cos = emb.cos() * freq_.attention_scaling;
  at::Tensor sin = emb.sin() * freq_.attention_scaling;
  return {cos.to(dtype), sin.to(dtype)};
}

at::Tensor Rotary::apply(const at::Tensor& x, const at::Tensor& positions) const {
  KVP_CHECK(x.dim() == 4 && x.size(-1) == head_dim_, "Rotary::apply: x must be [batch, heads, "
            "seq, head_dim=", head_dim_, "], got ", x.sizes());
  KVP_CHECK(positions.dim() == 2 && positions.size(1) == x.size(2) &&
                (positions.size(0) == x.size(0) || positions.size(0) == 1),
            "Rotary::apply: positions must be [batch or 1, seq=", x.size(2), "], got ",
            positions.sizes());
  auto [cos, sin] = cos_sin(positions.to(x.device()), x.scalar_type());  // [B, T, rd]
  return apply_cos_sin(x, cos, sin);
}

at::Tensor Rotary::apply_cos_sin(const at::Tensor& x, const at::Tensor& cos_in,
                                 const at::Tensor& sin_in) const {
  at::Tensor cos = cos_in.unsqueeze(1), sin = sin_in.unsqueeze(1);  // [B, 1, T, rd]
  const int64_t rd = freq_.rotary_dim;
  if (rd == head_dim_) return x * cos + rotate_half(x) * sin;
  at::Tensor x_rot = x.narrow(-1, 0, rd);
  at::Tensor x_pass = x.narrow(-1, rd, head_dim_ - rd);
  return at::cat({x_rot * cos + rotate_half(x_rot) * sin, x_pass}, -1);
}

at::Tensor Rotary::shift(const at::Tensor& k, const at::Tensor& delta) const {
  KVP_CHECK(freq_.inv_freq.defined(), "Rotary::shift on a default-constructed Rotary");
  KVP_CHECK(k.dim() == 4 && k.size(-1) == head_dim_, "Rotary::shift: keys must be [batch, "
            "kv_heads, seq, head_dim=", head_dim_, "], got ", k.sizes());
  KVP_CHECK(!at::isFloatingType(delta.scalar_type()),
            "Rotary::shift: delta must be integers, got ", delta.scalar_type());
  const int64_t batch = k.size(0), seq = k.size(2);
  // delta -> [Bd, 1, Sd, 1] broadcasting against [B, H, S, rd/2].
  at::Tensor d = compat::to_device(delta, k.device()).to(at::kDouble);
  if (delta.dim() == 0) {
    d = d.view({1, 1, 1, 1});
  } else if (delta.dim() == 1) {
    KVP_CHECK(delta.size(0) == seq, "Rotary::shift: delta [S] must have S = ", seq, ", got ",
              delta.sizes());
    d = d.view({1, 1, seq, 1});
  } else {
    KVP_CHECK(delta.dim() == 2 && (delta.size(0) == batch || delta.size(0) == 1) &&
                  delta.size(1) == seq,
              "Rotary::shift: delta must be [batch, seq] = [", batch, ", ", seq,
              "], [seq] or a scalar, got ", delta.sizes());
    d = d.view({delta.size(0), 1, seq, 1});
  }
  // Angles in float64 (exact enough for any realistic offset), rotation in float32 (float64 for
  // float64 keys).
  at::Tensor inv = inv_freq_on(k.device(), at::kDouble).view({1, 1, 1, -1});
  at::Tensor angles = d * inv;                                  // [Bd, 1, Sd, rd/2]
  at::Tensor emb = at::cat({angles, angles}, -1);               // [Bd, 1, Sd, rd]
  const at::ScalarType work = at::promote_types(k.scalar_type(), at::kFloat);
  at::Tensor cos = emb.cos().to(work), sin = emb.sin().to(work);
  const int64_t rd = freq_.rotary_dim;
  at::Tensor k_rot = k.narrow(-1, 0, rd).to(work);
  at::Tensor rotated = (k_rot * cos + rotate_half(k_rot) * sin).to(k.scalar_type());
  if (rd == head_dim_) return rotated;
  return at::cat({rotated, k.narrow(-1, rd, head_dim_ - rd)}, -1);
}

}  // namespace kvprime

namespace kvprime {

void Rotary::to(at::Device device) {
  if (!freq_.inv_freq.defined() || device.is_cpu()) return;
  inv_freq_dev_ = freq_.inv_freq.to(device, at::kFloat);
  inv_freq64_dev_ = freq_.inv_freq.to(device, at::kDouble);
}

at::Tensor Rotary::inv_freq_on(at::Device device, at::ScalarType dtype) const {
  const at::Tensor& kept = dtype == at::kDouble ? inv_freq64_dev_ : inv_freq_dev_;
  if (kept.defined() && kept.device() == device) return kept;
  return freq_.inv_freq.to(device, dtype);
}

}  // namespace kvprime
