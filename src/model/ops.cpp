#include "ops.h"

namespace kvprime::ops {

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& w, double eps, bool one_plus) {
  auto xf = x.to(at::kFloat);
  auto normed = xf * at::rsqrt(xf.pow(2).mean(-1, /*keepdim=*/true) + eps);
  if (one_plus) return (normed * (w.to(at::kFloat) + 1.0)).to(x.scalar_type());
  return w * normed.to(x.scalar_type());
}

at::Tensor linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  return b.defined() ? at::linear(x, w, b) : at::linear(x, w);
}

at::Tensor linear(const at::Tensor& x, const std::vector<Nf4Tensor>& parts, const at::Tensor& w,
                  const at::Tensor& b) {
  if (parts.empty()) return linear(x, w, b);
  // Dequantize-then-GEMM: the weight exists in the compute dtype only for this call.
  std::vector<at::Tensor> ws;
  for (const Nf4Tensor& q : parts) ws.push_back(dequantize_nf4(q, x.scalar_type()));
  return linear(x, ws.size() == 1 ? ws[0] : at::cat(ws, 0), b);
}

at::Tensor activation(const at::Tensor& x, Activation act) {
  switch (act) {
    case Activation::SiLU: return at::silu(x);
    case Activation::GeluTanh: return at::gelu(x, "tanh");
    case Activation::GeluExact: return at::gelu(x);
  }
  return x;
}

at::Tensor softcap(const at::Tensor& x, double cap) { return at::tanh(x / cap) * cap; }

}  // namespace kvprime::ops
