// Scaled dot-product attention over a KV cache, with grouped-query heads, an explicit boolean
// visibility mask and optional logit soft-capping (Gemma 2).
#pragma once

#include <ATen/ATen.h>

#include <optional>

namespace kvprime {

// Which slots each new token may attend to: [B, T, S + T] bool, true = visible.
//   valid_all  [B, S + T] bool   slot holds a real token (not padding)
//   custom     [B, T, S + T]     replaces the causal rule when defined
//   window     0 = unlimited; else also require d(q) - d(k) < window, where d counts the row's
//              valid slots before a slot (its slot index once padding is removed). Without padding
//              that is HF's sliding window by slot; with padding (left, right or in the middle of
//              a batched cache) each row sees exactly what it would see unpadded.
// A row that would see nothing (a padding query) is allowed to see its own slot so softmax stays
// finite; nothing real ever attends to such a row's output.
at::Tensor build_attention_mask(const at::Tensor& valid_all, int64_t S, int64_t T,
                                const at::Tensor& custom, int64_t window);

// q [B, n_head, T, D], k/v [B, n_head_kv, S + T, D] -> [B, n_head, T, D].
//   mask [B, T, S + T] bool: who sees whom. Undefined: plain causal attention with S == 0 (a
//   prefill without padding, or right-padded: real tokens then only see real tokens); on
//   PyTorch >= 2.1 this runs the fused causal kernels (flash attention) with no mask tensor.
// Eager path (HF "eager"): scores in the input dtype, softmax in float32. On PyTorch >= 2.1 and
// without soft-capping, at::scaled_dot_product_attention does the same math with fused kernels.
at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                     const at::Tensor& mask, double scale, std::optional<double> logit_softcap);

}  // namespace kvprime
