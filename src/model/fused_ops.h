// Fused CUDA kernels for the elementwise steps of the forward pass, on ATen tensors
// (src/model/cuda/fused_kernels.cu). Each function gives the result of its eager counterpart in
// ops.h / rope.h with the same rounding (HF transformers' arithmetic):
//   rms_norm      = ops::rms_norm                       (up to the float sum's reduction order)
//   add_rms_norm  = {x + a, ops::rms_norm(x + a)}      (x + a bit-exact; the norm as rms_norm)
//   gated_act     = ops::activation(gate, act) * up     (bit-exact)
//   rope          = Rotary::apply_cos_sin(x.transpose(1, 2), cos, sin)   (bit-exact)
// Only in a build with the CUDA kernels (KVPRIME_WITH_CUDA_KERNELS, CMake: LibTorch with CUDA);
// elsewhere available() is false and the others throw kvprime::Error.
//
// Inputs: CUDA tensors of one dtype (float32, float16 or bfloat16) on one device; the last dim
// must be contiguous (stride 1) or the input is copied; the leading dims may be any strided view
// whose leading dims collapse into at most two strided levels (e.g. q/k of a fused qkv buffer,
// [B, T, H, D] sliced from [B, T, (H + 2 Hkv) D]); other layouts are copied first. Outputs are new
// contiguous tensors. Kernels run on the current CUDA stream of the input's device.
#pragma once

#include <ATen/ATen.h>

#include <utility>

#include "kvprime/model/config.h"
#include "kvprime/model/nf4.h"

namespace kvprime::fused {

// True when the fused kernels can take x: a CUDA-kernels build, x a CUDA tensor of float32,
// float16 or bfloat16, and KVPRIME_NO_FUSED unset (or "0"; read once per process). The functions
// below do not look at KVPRIME_NO_FUSED: callers decide through available().
bool available(const at::Tensor& x);

// RMSNorm over the last dim: x [..., d], w [d] (x's dtype) -> [..., d].
at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& w, double eps, bool one_plus);

// The residual add and the next norm in one pass: x, a [..., d], w [d] -> (x + a, rms_norm(x + a)).
// in_place: write x + a into x (x must be contiguous) and return x itself as the first element.
std::pair<at::Tensor, at::Tensor> add_rms_norm(const at::Tensor& x, const at::Tensor& a,
                                               const at::Tensor& w, double eps, bool one_plus,
                                               bool in_place = false);

// gu [..., 2F] = [gate | up] (a fused gate/up projection) -> act(gate) * up [..., F].
at::Tensor gated_act(const at::Tensor& gu, Activation act);

// RoPE: x_bthd [B, T, H, D] (any strides, last dim contiguous), cos / sin [B or 1, T, rotary_dim]
// in x's dtype (Rotary::cos_sin(positions, dtype)) -> [B, H, T, D] contiguous; dims from
// rotary_dim on pass through.
at::Tensor rope(const at::Tensor& x_bthd, const at::Tensor& cos, const at::Tensor& sin,
                int64_t rotary_dim);

// NF4 dequantization (model/nf4.h) of q's elements [first, first + out.numel()) into out
// (contiguous, float32, float16 or bfloat16, on q's CUDA device; first even): bit-identical to the
// eager dequantize_nf4.
void nf4_dequantize_into(const Nf4Tensor& q, at::Tensor& out, int64_t first);

}  // namespace kvprime::fused
