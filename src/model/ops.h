// Building blocks shared by every architecture, written to follow Hugging Face's arithmetic
// (which dtype each step runs in) so float32 results agree to rounding.
#pragma once

#include <ATen/ATen.h>

#include <vector>

#include "kvprime/model/nf4.h"

#include "kvprime/model/config.h"

namespace kvprime::ops {

// RMSNorm over the last dim. Llama style: normalise in float32, cast back, times w (in x's dtype).
// Gemma style (one_plus): normalise and multiply by (1 + w) in float32, then cast back.
at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& w, double eps, bool one_plus);

// x @ w^T (+ b); b may be undefined.
at::Tensor linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b);
// x @ W^T (+ b) where W is `parts` (NF4, model/nf4.h) dequantized to x's dtype and stacked along
// the output dimension (q, k, v -> one GEMM), or the dense `w` when `parts` is empty.
// The dequantized W exists only during the call. When it would be larger than both `band_bytes`
// and the output (few tokens: the weight, not the activations, would set the peak), it is
// dequantized and multiplied in bands of output rows (one buffer of at most band_bytes, one GEMM
// per band into its columns of the output), so that a 7B model's forward on one sequence needs one
// band on top of its 4-bit weights, not its largest projection (gate/up: 235 MB in bfloat16).
// Banded results equal the single GEMM's up to the GEMM's reduction order (the library may pick
// other kernels per shape).
constexpr int64_t kNf4BandBytes = int64_t{64} << 20;
at::Tensor linear(const at::Tensor& x, const std::vector<Nf4Tensor>& parts, const at::Tensor& w,
                  const at::Tensor& b, int64_t band_bytes = kNf4BandBytes);

at::Tensor activation(const at::Tensor& x, Activation act);

// tanh(x / cap) * cap  (Gemma 2 logit soft-capping)
at::Tensor softcap(const at::Tensor& x, double cap);

}  // namespace kvprime::ops
