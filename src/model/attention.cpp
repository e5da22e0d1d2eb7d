#include "attention.h"

#include <limits>

#include "kvprime/core/compat.h"
#include "ops.h"

namespace kvprime {

at::Tensor build_attention_mask(const at::Tensor& valid_all, int64_t S, int64_t T,
                                const at::Tensor& custom, int64_t window) {
  auto dev = valid_all.device();
  auto opts = at::TensorOptions().dtype(at::kLong).device(dev);
  auto q_slot = at::arange(S, S + T, opts).view({1, T, 1});   // [1, T, 1]
  auto k_slot = at::arange(0, S + T, opts).view({1, 1, S + T});  // [1, 1, S+T]
  at::Tensor visible = custom.defined() ? custom.to(dev, at::kBool) : (k_slot <= q_slot);
  visible = visible & valid_all.view({valid_all.size(0), 1, S + T});
  if (window > 0) visible = visible & ((q_slot - k_slot) < window);
  // Keep padding queries finite: let a row with nothing visible see its own slot.
  auto self = (k_slot == q_slot).expand_as(visible);
  auto empty_row = visible.any(-1, /*keepdim=*/true).logical_not();
  return visible | (self & empty_row);
}

at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                     const at::Tensor& mask, double scale, std::optional<double> logit_softcap) {
  const int64_t B = q.size(0), H = q.size(1), T = q.size(2), D = q.size(3);
  const int64_t Hkv = k.size(1), G = H / Hkv;
  auto mask4 = mask.unsqueeze(1);  // [B, 1, T, S]
#if KVPRIME_HAS_SDPA
  if (!logit_softcap) {
    // GQA: expand kv heads to query heads (a view for G == 1).
    auto kx = G == 1 ? k : k.unsqueeze(2).expand({B, Hkv, G, k.size(2), D}).reshape({B, H, k.size(2), D});
    auto vx = G == 1 ? v : v.unsqueeze(2).expand({B, Hkv, G, v.size(2), D}).reshape({B, H, v.size(2), D});
    return at::scaled_dot_product_attention(q, kx, vx, mask4, 0.0, false, scale);
  }
#endif
  // Eager: group query heads by their kv head so k/v are broadcast, not copied.
  auto qg = q.view({B, Hkv, G, T, D});
  auto scores = at::matmul(qg, k.unsqueeze(2).transpose(-1, -2)) * scale;  // [B, Hkv, G, T, S]
  if (logit_softcap) scores = ops::softcap(scores, *logit_softcap);
  scores = scores.masked_fill(mask4.unsqueeze(1).logical_not(),
                              -std::numeric_limits<double>::infinity());
  auto probs = at::softmax(scores, -1, at::kFloat).to(q.scalar_type());
  auto out = at::matmul(probs, v.unsqueeze(2));  // [B, Hkv, G, T, D]
  return out.view({B, H, T, D});
}

}  // namespace kvprime
