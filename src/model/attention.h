// Scaled dot-product attention over a KV cache, with grouped-query heads, an explicit boolean
// visibility mask and optional logit soft-capping (Gemma 2).
#pragma once

#include <ATen/ATen.h>

#include <optional>

namespace kvprime {

// Which slots each new token may attend to: [B, T, S + T] bool, true = visible.
//   valid_all  [B, S + T] bool   slot holds a real token (not padding)
//   custom     [B, T, S + T]     replaces the causal rule when defined
//   window     0 = unlimited; else also require (S + t) - s < window (HF's sliding window, by slot)
// A row that would see nothing (a padding query) is allowed to see its own slot so softmax stays
// finite; nothing real ever attends to such a row's output.
at::Tensor build_attention_mask(const at::Tensor& valid_all, int64_t S, int64_t T,
                                const at::Tensor& custom, int64_t window);

// q [B, n_head, T, D], k/v [B, n_head_kv, S + T, D], mask [B, T, S + T] bool -> [B, n_head, T, D].
// Eager path (HF "eager"): scores in the input dtype, softmax in float32. On PyTorch >= 2.1 and
// without soft-capping, at::scaled_dot_product_attention does the same math with fused kernels.
at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                     const at::Tensor& mask, double scale, std::optional<double> logit_softcap);

}  // namespace kvprime
