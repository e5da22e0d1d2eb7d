#include "ops.h"

#include <algorithm>

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
                  const at::Tensor& b, int64_t band_bytes) {
  if (parts.empty()) return linear(x, w, b);
  int64_t rows = 0;
  for (const Nf4Tensor& q : parts) rows += q.shape.at(0);
  const int64_t cols = parts[0].shape.at(1);
  for (const Nf4Tensor& q : parts)
    KVP_CHECK(q.shape.size() == 2 && q.shape[1] == cols, "linear: NF4 parts of different widths");
  const int64_t row_bytes = cols * static_cast<int64_t>(x.element_size());
  const int64_t out_bytes = (x.numel() / cols) * rows * static_cast<int64_t>(x.element_size());
  if (rows * row_bytes <= std::max(band_bytes, out_bytes) || cols % 2 != 0) {
    // One GEMM: the parts (q, k, v) dequantized straight into their rows of one stacked weight.
    at::Tensor wt = at::empty({rows, cols}, x.options());
    int64_t at_row = 0;
    for (const Nf4Tensor& q : parts) {
      dequantize_nf4_into(q, wt.narrow(0, at_row, q.shape[0]));
      at_row += q.shape[0];
    }
    return linear(x, wt, b);
  }
  // Bands of rows: each part cut into equal bands of at most band_bytes, each dequantized into one
  // reused buffer [band, cols], then x2 @ band^T written into the band's columns of out [M, rows]
  // (a strided view: the GEMM's leading dimension).
  auto band_rows = [&](int64_t part_rows) {
    const int64_t n_bands = (part_rows * row_bytes + band_bytes - 1) / band_bytes;
    return (part_rows + n_bands - 1) / n_bands;
  };
  int64_t buf_rows = 0;
  for (const Nf4Tensor& q : parts) buf_rows = std::max(buf_rows, band_rows(q.shape[0]));
  at::Tensor x2 = x.reshape({-1, cols});
  at::Tensor out = at::empty({x2.size(0), rows}, x.options());
  at::Tensor buf = at::empty({buf_rows, cols}, x.options());
  int64_t at_row = 0;
  for (const Nf4Tensor& q : parts) {
    const int64_t band = band_rows(q.shape[0]);
    for (int64_t r0 = 0; r0 < q.shape[0]; r0 += band) {
      const int64_t n = std::min(band, q.shape[0] - r0);
      at::Tensor wt = buf.narrow(0, 0, n);
      dequantize_nf4_into(q, wt, r0 * cols);  // cols even: every band starts at an even element
      at::Tensor dst = out.narrow(1, at_row + r0, n);
      at::mm_out(dst, x2, wt.t());
    }
    at_row += q.shape[0];
  }
  if (b.defined()) out.add_(b);
  std::vector<int64_t> shape = x.sizes().vec();
  shape.back() = rows;
  return out.view(shape);
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
