// 4-bit NormalFloat (NF4) weights, as bitsandbytes stores them (the seed ran Mistral-7B so):
// a tensor is cut, in row-major order, into blocks of `block` (64) elements; each block keeps its
// absolute maximum (float32) and, per element, the index of the nearest of 16 code values
// (nf4_code(): quantiles of a normal distribution scaled to [-1, 1]) to x * (1 / absmax), computed
// in float32 — multiplying by the reciprocal, as bitsandbytes does, so that the codes match its
// bit for bit. "Nearest" is decided by the 15 midpoints between neighbouring code values (a value
// exactly on a midpoint takes the lower code; NaN, from an all-zero block, takes code 0). Two
// codes share a byte, the first element in the high nibble.
//
// Dequantized: code_value[index] * absmax (float32), then the compute dtype (on CUDA by one fused
// kernel, src/model/cuda/fused_kernels.cu, with the same rounding). Not implemented yet:
// bitsandbytes' double quantization of the absmax values (8-bit, blocks of 256).
#pragma once

#include <ATen/ATen.h>

#include <array>
#include <cstdint>
#include <vector>

namespace kvprime {

struct Nf4Tensor {
  at::Tensor codes;             // uint8 [ceil(numel / 2)]
  at::Tensor absmax;            // float32 [ceil(numel / block)]
  std::vector<int64_t> shape;   // of the original tensor
  int64_t block = 64;
  int64_t numel() const;
  int64_t bytes() const;        // codes + absmax
};

const std::array<float, 16>& nf4_code();        // ascending, code[0] = -1, code[7] = 0, code[15] = 1
const std::array<float, 15>& nf4_midpoints();   // the decision thresholds, ascending

// Any floating dtype and device (computed there, in float32). block: even, >= 2.
Nf4Tensor quantize_nf4(const at::Tensor& w, int64_t block = 64);
// [shape] in `dtype`, on the device of q.
at::Tensor dequantize_nf4(const Nf4Tensor& q, at::ScalarType dtype);
// The same values written into `out` (contiguous, q.numel() elements, on q's device), e.g. a slice
// of a stacked weight. On CUDA one fused kernel (bit-identical to the eager ops) when available.
void dequantize_nf4_into(const Nf4Tensor& q, at::Tensor out);

}  // namespace kvprime
