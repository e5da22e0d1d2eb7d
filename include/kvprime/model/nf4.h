// 4-bit NormalFloat (NF4) weights, as bitsandbytes stores them (the seed ran Mistral-7B so):
// a tensor is cut, in row-major order, into blocks of `block` (64) elements; each block keeps its
// absolute maximum (float32) and, per element, the index of the nearest of 16 code values
// (nf4_code(): quantiles of a normal distribution scaled to [-1, 1]) to x * (1 / absmax), computed
// in float32 — multiplying by the reciprocal, as bitsandbytes does, so that the codes match its
// bit for bit. "Nearest" is decided by the 15 midpoints between neighbouring code values (a value
// exactly on a midpoint takes the lower code; NaN, from an all-zero block, takes code 0). Two
// codes share a byte, the first element in the high nibble.
//
// Double quantization (bitsandbytes' compress_statistics / bnb_4bit_use_double_quant): the codes
// are computed with the exact absmax as above, then the absmax values themselves are stored in 8
// bits: offset = their mean (computed in float64, rounded to float32: bitsandbytes takes a float32
// mean whose last bit depends on the device's reduction order), then absmax - offset is quantized
// blockwise (blocks of 256) to the nearest value of bitsandbytes' signed "dynamic" 8-bit map
// (dynamic_map(); nearest by |x - code| in float32, ties to the lower index, NaN to index 0), each
// block keeping its own float32 absmax. Per weight that is 4 + 8/64 + 32/(64 * 256) bits instead of
// 4 + 32/64: 0.516 bytes instead of 0.5625.
//
// Dequantized: code_value[index] * absmax (float32), then the compute dtype; a double-quantized
// absmax is first dynamic_map[q] * scale + offset (float32, in that order). On the CPU a loop, on
// CUDA one kernel (src/model/cuda/fused_kernels.cu), with the same roundings: bit-identical.
#pragma once

#include <ATen/ATen.h>

#include <array>
#include <cstdint>
#include <vector>

namespace kvprime {

struct Nf4Tensor {
  at::Tensor codes;             // uint8 [ceil(numel / 2)]
  at::Tensor absmax;            // float32 [ceil(numel / block)]; undefined when double-quantized
  // Double quantization (undefined / 0 otherwise):
  at::Tensor absmax_q;          // uint8 [ceil(numel / block)]: dynamic-map indices of absmax - offset
  at::Tensor absmax_scale;      // float32 [ceil(absmax_q.numel() / 256)]: absmax of each 256-block
  at::Tensor absmax_code;       // float32 [256]: dynamic_map() on the codes' device
  float absmax_offset = 0.0f;
  std::vector<int64_t> shape;   // of the original tensor
  int64_t block = 64;

  static constexpr int64_t kAbsmaxBlock = 256;  // bitsandbytes' fixed block of the nested absmax
  bool double_quantized() const { return absmax_q.defined(); }
  int64_t numel() const;
  int64_t n_blocks() const;
  int64_t bytes() const;        // everything stored: codes, absmax or its 8-bit form, scales, map
};

const std::array<float, 16>& nf4_code();        // ascending, code[0] = -1, code[7] = 0, code[15] = 1
const std::array<float, 15>& nf4_midpoints();   // the decision thresholds, ascending
// bitsandbytes' create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8): 256 ascending
// float32 values in [-0.993, 1]: 0, 1 and, for e = 0..6, +-10^(e-6) x the 2^e midpoints of
// linspace(0.1, 1, 2^e + 1), in float32 as PyTorch 2.x computes them (a fixed table: the values
// depend on torch's linspace; torch 1.13 rounds 42 of them one ulp differently).
const std::array<float, 256>& dynamic_map();

// Any floating dtype and device (computed there, in float32). block: even, >= 2.
Nf4Tensor quantize_nf4(const at::Tensor& w, int64_t block = 64, bool double_quant = false);
// float32 [n_blocks()]: the absmax each block is dequantized with (the 8-bit one when nested).
at::Tensor nf4_block_absmax(const Nf4Tensor& q);
// [shape] in `dtype`, on the device of q.
at::Tensor dequantize_nf4(const Nf4Tensor& q, at::ScalarType dtype);
// Elements [first, first + out.numel()) of the flattened tensor (first even), written into `out`
// (contiguous, on q's device), e.g. a slice of a stacked weight or a band of rows. On CUDA one
// fused kernel (bit-identical to the eager ops) when available.
void dequantize_nf4_into(const Nf4Tensor& q, at::Tensor out, int64_t first = 0);

}  // namespace kvprime
