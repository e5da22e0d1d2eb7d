#include "kvprime/model/nf4.h"

#include "kvprime/core/error.h"
#include "fused_ops.h"

namespace kvprime {

namespace {

// The NF4 code values and the midpoints between neighbours, as float32 (the constants of
// bitsandbytes' NF4 tables).
constexpr std::array<float, 16> kCode = {
    -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
    -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
    0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
    0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f};
constexpr std::array<float, 15> kMid = {
    -0.8480964004993439f, -0.6106329262256622f, -0.4599952697753906f, -0.33967943489551544f,
    -0.23460740596055984f, -0.13791173323988914f, -0.045525018125772476f, 0.03979014977812767f,
    0.1202552504837513f, 0.2035212516784668f, 0.2920137718319893f, 0.3893125355243683f,
    0.5016634166240692f, 0.6427869200706482f, 0.8614784181118011f};

}  // namespace

const std::array<float, 16>& nf4_code() { return kCode; }
const std::array<float, 15>& nf4_midpoints() { return kMid; }

int64_t Nf4Tensor::numel() const {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

int64_t Nf4Tensor::bytes() const {
  return codes.numel() * 1 + absmax.numel() * 4;
}

Nf4Tensor quantize_nf4(const at::Tensor& w, int64_t block) {
  KVP_CHECK(w.defined() && at::isFloatingType(w.scalar_type()), "quantize_nf4: expected a floating tensor");
  KVP_CHECK(block >= 2 && block % 2 == 0, "quantize_nf4: block size ", block, " must be even and >= 2");
  const int64_t n = w.numel();
  KVP_CHECK(n > 0, "quantize_nf4: empty tensor");
  const int64_t nb = (n + block - 1) / block;
  auto f32 = w.options().dtype(at::kFloat);
  at::Tensor flat = w.reshape({-1}).to(at::kFloat);
  // Zero padding of the last block changes neither its absmax nor its valid codes.
  if (nb * block != n) flat = at::cat({flat, at::zeros({nb * block - n}, f32)});
  at::Tensor blocks = flat.view({nb, block});                             // [nb, block]
  at::Tensor absmax = blocks.abs().amax(1);                               // [nb] float32
  at::Tensor norm = blocks * at::reciprocal(absmax).unsqueeze(1);         // x * (1 / absmax)
  // Index = how many midpoints lie strictly below x (bucketize, right=false: mid[i-1] < x <= mid[i]).
  at::Tensor mid = at::from_blob(const_cast<float*>(kMid.data()), {15}, at::kFloat).to(w.device());
  at::Tensor idx = at::bucketize(norm, mid, /*out_int32=*/true, /*right=*/false);
  idx = at::where(at::isnan(norm), at::zeros_like(idx), idx).to(at::kByte);  // [nb, block]
  at::Tensor pairs = idx.view({-1, 2});
  Nf4Tensor q;
  q.codes = at::bitwise_or(at::__lshift__(pairs.select(1, 0), 4), pairs.select(1, 1)).contiguous();
  const int64_t n_bytes = (n + 1) / 2;
  if (q.codes.numel() != n_bytes) q.codes = q.codes.narrow(0, 0, n_bytes).contiguous();
  q.absmax = absmax.contiguous();
  q.shape = w.sizes().vec();
  q.block = block;
  return q;
}

at::Tensor dequantize_nf4(const Nf4Tensor& q, at::ScalarType dtype) {
  const int64_t n = q.numel();
  if (q.codes.is_cuda()) {
    at::Tensor out = at::empty(q.shape, q.codes.options().dtype(dtype));
    if (fused::available(out)) {
      fused::nf4_dequantize_into(q, out);
      return out;
    }
  }
  KVP_CHECK(q.codes.numel() == (n + 1) / 2 && q.absmax.numel() == (n + q.block - 1) / q.block,
            "dequantize_nf4: ", q.codes.numel(), " code bytes and ", q.absmax.numel(),
            " absmax values do not fit a tensor of ", n, " elements in blocks of ", q.block);
  at::Tensor code = at::from_blob(const_cast<float*>(kCode.data()), {16}, at::kFloat).to(q.codes.device());
  at::Tensor c = q.codes.to(at::kLong);
  at::Tensor idx = at::stack({at::__rshift__(c, 4), at::bitwise_and(c, 15)}, 1).view({-1}).narrow(0, 0, n);
  at::Tensor vals = code.index_select(0, idx);                            // [n] float32
  const int64_t nb = q.absmax.numel();
  if (nb * q.block != n) vals = at::cat({vals, at::zeros({nb * q.block - n}, vals.options())});
  vals = (vals.view({nb, q.block}) * q.absmax.unsqueeze(1)).view({-1}).narrow(0, 0, n);
  return vals.to(dtype).view(q.shape);
}

void dequantize_nf4_into(const Nf4Tensor& q, at::Tensor out) {
  KVP_CHECK(out.is_contiguous() && out.numel() == q.numel() && out.device() == q.codes.device(),
            "dequantize_nf4_into: out must be contiguous with ", q.numel(), " elements on ",
            q.codes.device().str());
  if (fused::available(out)) {
    fused::nf4_dequantize_into(q, out);
    return;
  }
  out.view(q.shape).copy_(dequantize_nf4(q, out.scalar_type()));
}

}  // namespace kvprime
