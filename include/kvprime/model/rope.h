// Rotary position embeddings in Hugging Face's half-split layout:
//   x_rot = x * cos + rotate_half(x) * sin,  rotate_half([a, b]) = [-b, a],
//   cos/sin = cat(freqs, freqs) with freqs[p, i] = p * inv_freq[i], times attention_scaling.
// Only the first rotary_dim dims of a head rotate (partial rotary); the rest pass through.
// Frequencies come from the layer's RopeParams exactly as transformers computes them
// (float32 arithmetic in the same order), so keys match HF bit for bit or to float rounding.
#pragma once

#include <ATen/ATen.h>

#include "kvprime/model/config.h"

namespace kvprime {

// [.., 2h] -> [.., 2h]: concat(-x[.., h:], x[.., :h])
at::Tensor rotate_half(const at::Tensor& x);

struct RopeFrequencies {
  at::Tensor inv_freq;            // [rotary_dim / 2] float32, CPU
  double attention_scaling = 1.0; // multiplies cos and sin (yarn's mscale; 1 otherwise)
  int64_t rotary_dim = 0;
};

// HF's rope init functions (default, linear, dynamic, llama3, yarn), computed on the CPU with
// the same ATen float32 operations in the same order as transformers. `seq_len` matters only for
// dynamic scaling: HF recomputes the frequencies once a sequence (max position + 1) outgrows
// max_position_embeddings; 0 (or any seq_len <= max_position_embeddings) means "within the
// original context", where dynamic equals default.
RopeFrequencies compute_rope_frequencies(const RopeParams& p, int64_t head_dim,
                                         int64_t max_position_embeddings, int64_t seq_len = 0);

// One layer's rotary embedding. Device-agnostic: the CPU frequencies are moved to the device of
// the positions / keys on each call.
//
// Dynamic NTK scaling: cos_sin / apply use the frequencies for seq_len = max(positions) + 1, which
// is what a fresh HF module computes (HF's module is stateful: once grown it keeps the grown
// frequencies until a sequence shorter than max_position_embeddings resets it). shift() always
// uses the frequencies of the original context, so re-positioning keys that were rotated with
// grown frequencies is only approximate.
class Rotary {
 public:
  Rotary() = default;
  Rotary(RopeParams params, int64_t head_dim, int64_t max_position_embeddings);

  const RopeParams& params() const { return params_; }
  const RopeFrequencies& frequencies() const { return freq_; }
  int64_t head_dim() const { return head_dim_; }

  // cos, sin: [B, T, rotary_dim] in `dtype` on positions' device, computed in float32 as HF does
  // (freqs = inv_freq x positions, emb = cat(freqs, freqs), cos = emb.cos() * attention_scaling).
  std::pair<at::Tensor, at::Tensor> cos_sin(const at::Tensor& positions /*[B,T] int64*/,
                                            at::ScalarType dtype) const;

  // x: [B, H, T, head_dim] -> x rotated to `positions` [B, T] (or [1, T], broadcast over B), in
  // x's dtype like HF's apply_rotary_pos_emb: cos/sin are cast to x's dtype first.
  at::Tensor apply(const at::Tensor& x, const at::Tensor& positions) const;
  // The same with cos/sin from cos_sin(positions, x.dtype()) computed once (a forward shares them
  // between q, k and every layer with the same rope parameters). cos/sin: [B or 1, T, rotary_dim].
  at::Tensor apply_cos_sin(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) const;

  // Keeps a copy of the frequencies on `device` so that cos_sin / shift on that device upload
  // nothing (a host-to-device copy per layer would stall the host on the GPU stream).
  void to(at::Device device);

  // Re-position already rotated keys: k [B, H, S, head_dim] at positions p -> keys at p + delta,
  // delta [B, S] (or [S], or a 0-dim tensor) int64, possibly negative. A pure rotation (no
  // attention_scaling: the keys already carry it). The angle delta * inv_freq is formed in float64
  // and the product in float32 before casting back to k's dtype.
  at::Tensor shift(const at::Tensor& k, const at::Tensor& delta) const;

 private:
  RopeParams params_;
  int64_t head_dim_ = 0;
  int64_t max_position_embeddings_ = 0;
  RopeFrequencies freq_;
  at::Tensor inv_freq_dev_, inv_freq64_dev_;  // freq_.inv_freq on the device given to to()
  // inv_freq (float32, or float64 for shift) on `device`: the kept copy, else uploaded.
  at::Tensor inv_freq_on(at::Device device, at::ScalarType dtype) const;
};

}  // namespace kvprime
