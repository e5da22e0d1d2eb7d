#include "ops.h"

#include "kvprime/core/error.h"

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
  // Dequantize-then-GEMM: the weight exists in the compute dtype only for this call, the parts
  // (q, k, v) written straight into their rows of one stacked weight.
  int64_t rows = 0;
  for (const Nf4Tensor& q : parts) rows += q.shape.at(0);
  const int64_t cols = parts[0].shape.at(1);
  at::Tensor wt = at::empty({rows, cols}, x.options());
  int64_t at_row = 0;
  for (const Nf4Tensor& q : parts) {
    KVP_CHECK(q.shape.size() == 2 && q.shape[1] == cols, "linear: NF4 parts of different widths");
    dequantize_nf4_into(q, wt.narrow(0, at_row, q.shape[0]));
    at_row += q.shape[0];
  }
  return linear(x, wt, b);
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
