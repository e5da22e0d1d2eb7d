#include "attention.h"

#include <limits>

#include "kvprime/core/compat.h"
#include "kvprime/core/error.h"
#include "ops.h"

namespace kvprime {

at::Tensor build_attention_mask(const at::Tensor& valid_all, int64_t S, int64_t T,
                                const at::Tensor& custom, int64_t window) {
  auto dev = valid_all.device();
  auto opts = at::TensorOptions().dtype(at::kLong).device(dev);
  const int64_t B = valid_all.size(0);
  auto q_slot = at::arange(S, S + T, opts).view({1, T, 1});   // [1, T, 1]
  auto k_slot = at::arange(0, S + T, opts).view({1, 1, S + T});  // [1, 1, S+T]
  at::Tensor visible = custom.defined() ? custom.to(dev, at::kBool) : (k_slot <= q_slot);
  visible = visible & valid_all.view({B, 1, S + T});
  if (window > 0) {
    // Dense index: valid slots before this one in the row, i.e. the slot index without padding.
    auto dense = valid_all.to(at::kLong).cumsum(1);                         // [B, S+T]
    auto dq = dense.slice(1, S).view({B, T, 1}), dk = dense.view({B, 1, S + T});
    visible = visible & ((dq - dk) < window);
  }
  // Keep padding queries finite: let a row with nothing visible see its own slot.
  auto self = (k_slot == q_slot).expand_as(visible);
  auto empty_row = visible.any(-1, /*keepdim=*/true).logical_not();
  return visible | (self & empty_row);
}

at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                     const at::Tensor& mask, double scale, std::optional<double> logit_softcap) {
  const int64_t B = q.size(0), H = q.size(1), T = q.size(2), D = q.size(3);
  const int64_t Hkv = k.size(1), G = H / Hkv, L = k.size(2);
  // GQA: expand kv heads to query heads (a view for G == 1, a copy otherwise).
  auto expand = [&](const at::Tensor& t) {
    return G == 1 ? t : t.unsqueeze(2).expand({B, Hkv, G, L, D}).reshape({B, H, L, D});
  };
#if KVPRIME_HAS_SDPA
  if (!logit_softcap) {
    if (!mask.defined()) {
      KVP_ASSERT(L == T, "attention: the mask-free causal path needs S == 0");
#if KVPRIME_HAS_SDPA_GQA
      return at::scaled_dot_product_attention(q, k, v, {}, 0.0, /*is_causal=*/true, scale,
                                              /*enable_gqa=*/G > 1);
#else
      return at::scaled_dot_product_attention(q, expand(k), expand(v), {}, 0.0, true, scale);
#endif
    }
    return at::scaled_dot_product_attention(q, expand(k), expand(v), mask.unsqueeze(1), 0.0, false,
                                            scale);
  }
#endif
  at::Tensor m = mask;
  if (!m.defined()) {
    KVP_ASSERT(L == T, "attention: the mask-free causal path needs S == 0");
    m = at::ones({T, T}, q.options().dtype(at::kLong)).tril().to(at::kBool).unsqueeze(0);
  }
  // Eager: group query heads by their kv head so k/v are broadcast, not copied.
  auto mask5 = m.unsqueeze(1).unsqueeze(1);  // [B or 1, 1, 1, T, S]
  auto qg = q.reshape({B, Hkv, G, T, D});
  auto scores = at::matmul(qg, k.unsqueeze(2).transpose(-1, -2)) * scale;  // [B, Hkv, G, T, S]
  if (logit_softcap) scores = ops::softcap(scores, *logit_softcap);
  scores = scores.masked_fill(mask5.logical_not(), -std::numeric_limits<double>::infinity());
  auto probs = at::softmax(scores, -1, at::kFloat).to(q.scalar_type());
  auto out = at::matmul(probs, v.unsqueeze(2));  // [B, Hkv, G, T, D]
  return out.view({B, H, T, D});
}

}  // namespace kvprime
