// Fused CUDA kernels for the memory-bound elementwise steps of the forward pass (RMSNorm, residual
// add + RMSNorm, gated activation, RoPE). Raw CUDA: no ATen / torch headers, so nvcc compiles
// fused_kernels.cu on its own and this header is usable from plain C++ (src/model/fused_ops.cpp
// wraps it for ATen tensors).
//
// Numerics: every kernel follows the rounding of the eager ATen ops it replaces (src/model/ops.cpp,
// rope.cpp, which follow HF transformers): each eager op computes in float and rounds to the tensor
// dtype, so the kernels round to T exactly where an eager op would write a tensor, and use
// __fmul_rn / __fadd_rn so that nvcc cannot contract a multiply and an add of two different eager
// ops into one fma. The activations are written with the expressions of ATen's CUDA kernels
// (ActivationSiluKernel.cu, ActivationGeluKernel.cu), compiled with the same default flags
// (no fast math), so they round the same way. Only the RMSNorm reduction order differs from ATen's
// (a float sum over the row in a different order), see rms_norm.
//
// Element types: float, __half, __nv_bfloat16 (explicitly instantiated in fused_kernels.cu).
// Every launcher returns the launch status (cudaGetLastError after the launch); a call with nothing
// to do (no rows or an empty row) launches nothing and returns cudaSuccess. Vector loads (up to 16
// bytes) are used when the row length, every stride and every pointer allow them, else narrower
// ones down to scalar; no alignment is required of the caller.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

namespace kvprime::cuda_kernels {

// Where the rows of a [N, d] operand live (d contiguous elements each): row r starts at element
//   (r / inner) * outer_stride + (r % inner) * inner_stride
// so any tensor whose leading dims collapse into at most two strided levels is read in place,
// e.g. q = qkv[..., :H*D].view(B, T, H, D) (inner = H, inner_stride = D, outer_stride = row of
// qkv). A plain [N, d] matrix with row stride s is {inner = N, inner_stride = s, outer_stride = 0}.
struct RowLayout {
  int64_t inner = 1;         // >= 1
  int64_t inner_stride = 0;  // elements
  int64_t outer_stride = 0;  // elements
};

inline RowLayout contiguous_rows(int64_t n_rows, int64_t d) {
  return RowLayout{n_rows > 0 ? n_rows : 1, d, 0};
}

enum class GatedAct : int { SiLU = 0, GeluTanh = 1, GeluExact = 2 };

// RMSNorm of n_rows rows of d elements into out ([n_rows, d] contiguous).
//   r = rsqrtf(sum(float(x)^2) * mean_factor + eps)                (float, like ATen's CUDA mean)
//   Llama (one_plus = false): out = T(float(w) * float(T(float(x) * r)))
//   Gemma (one_plus = true):  out = T((float(x) * r) * (float(w) + 1))
// mean_factor: what ATen's CUDA mean multiplies the sum by, float(n_rows) / float(n_rows * d)
// (as float arithmetic on those two numbers; equal to 1/d rounded unless n_rows * d > 2^24).
// The sum is a float sum in a different order than ATen's reduction, so r can differ from eager
// by an ulp of float or so; everything else rounds exactly as eager. d is unbounded (rows longer
// than 4 vectors per thread of a 1024-thread block are read twice).
template <typename T>
cudaError_t rms_norm(const T* x, RowLayout x_rows, const T* w, T* out, int64_t n_rows, int64_t d,
                     float eps, float mean_factor, bool one_plus, cudaStream_t stream);

// Residual add + RMSNorm in one pass:
//   y = T(float(x) + float(a)) written to y_out (rows by y_rows; y_out may be x itself with
//   y_rows == x_rows: in place), h = rms_norm(y) into h ([n_rows, d] contiguous).
// y is bit-exact to eager x + a; h as rms_norm above.
template <typename T>
cudaError_t add_rms_norm(const T* x, RowLayout x_rows, const T* a, RowLayout a_rows, const T* w,
                         T* y_out, RowLayout y_rows, T* h, int64_t n_rows, int64_t d, float eps,
                         float mean_factor, bool one_plus, cudaStream_t stream);

// Gated activation: gu rows hold [gate (f), up (f)]; out ([n_rows, f] contiguous) =
//   T(float(T(act(float(gate)))) * float(up))
// act as ATen's CUDA kernels compute it in float: SiLU x / (1 + expf(-x)); GELU tanh
// 0.5 x (1 + tanhf(kBeta (x + kKappa x^3))); GELU exact x 0.5 (1 + erff(x / sqrt 2)).
template <typename T>
cudaError_t gated_act(const T* gu, RowLayout gu_rows, T* out, int64_t n_rows, int64_t f,
                      GatedAct act, cudaStream_t stream);

// Rotary embedding of x, a strided [B, S, H, D] view (element strides x_sb, x_ss, x_sh; the last
// dim contiguous), with cos / sin [Bc, S, rd] (element strides cs_sb, cs_ss, last dim contiguous;
// cs_sb = 0 broadcasts one row over the batch; both tensors laid out alike), already rounded to T,
// into out [B, H, S, D] contiguous:
//   i <  rd / 2:       out_i = T(T(x_i * cos_i) + T(-x_{i+rd/2} * sin_i))
//   rd/2 <= i < rd:    out_i = T(T(x_i * cos_i) + T(x_{i-rd/2} * sin_i))
//   i >= rd:           out_i = x_i
// (HF's x * cos + rotate_half(x) * sin over the first rd dims, rest passed through), bit-exact.
// rd must be even, 0 < rd <= D.
template <typename T>
cudaError_t rope(const T* x, int64_t B, int64_t S, int64_t H, int64_t D, int64_t x_sb, int64_t x_ss,
                 int64_t x_sh, const T* cos, const T* sin, int64_t cs_sb, int64_t cs_ss, int64_t rd,
                 T* out, cudaStream_t stream);

// NF4 dequantization (model/nf4.h): elements [first, first + n) of a tensor (first even) from codes
// (two per byte, the first in the high nibble) and a float32 scale per `block` elements (block
// even), into out[0, n) (contiguous):
//   out[j] = T(code_value[nibble(first + j)] * absmax[(first + j) / block])  (one multiply, rounded once)
// absmax is given directly, or (absmax == nullptr) double-quantized:
//   absmax[b] = absmax_code[absmax_q[b]] * absmax_scale[b / 256] + absmax_offset  (each op rounded)
// exactly what the eager path computes (float32 ops, then .to(T)).
struct Nf4Source {
  const uint8_t* codes = nullptr;
  const float* absmax = nullptr;
  const uint8_t* absmax_q = nullptr;
  const float* absmax_scale = nullptr;
  const float* absmax_code = nullptr;   // 256 values, device memory
  float absmax_offset = 0.0f;
  int64_t block = 64;
};
template <typename T>
cudaError_t nf4_dequantize(const Nf4Source& src, int64_t first, int64_t n, T* out, cudaStream_t stream);

}  // namespace kvprime::cuda_kernels
