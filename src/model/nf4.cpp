#include "kvprime/model/nf4.h"

#include <algorithm>
#include <cmath>

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

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

// bitsandbytes' create_dynamic_map(signed=True) as it comes out under PyTorch 2.x (measured with
// torch 2.11, tools/nf4_reference.py): the values depend on torch's float32 linspace, and torch 1.13
// rounds 42 of them one ulp differently, so they are fixed here rather than recomputed.
constexpr std::array<float, 256> kDynamicMap = {
    -0x1.fc6666p-1f, -0x1.f53334p-1f, -0x1.eep-1f, -0x1.e6ccccp-1f,
    -0x1.df999ap-1f, -0x1.d86666p-1f, -0x1.d13334p-1f, -0x1.cap-1f,
    -0x1.c2ccccp-1f, -0x1.bb999ap-1f, -0x1.b46666p-1f, -0x1.ad3334p-1f,
    -0x1.a6p-1f, -0x1.9eccccp-1f, -0x1.97999ap-1f, -0x1.906666p-1f,
    -0x1.893334p-1f, -0x1.82p-1f, -0x1.7accccp-1f, -0x1.73999ap-1f,
    -0x1.6c6668p-1f, -0x1.653334p-1f, -0x1.5ep-1f, -0x1.56ccccp-1f,
    -0x1.4f999ap-1f, -0x1.486668p-1f, -0x1.413334p-1f, -0x1.3ap-1f,
    -0x1.32ccccp-1f, -0x1.2b999ap-1f, -0x1.246668p-1f, -0x1.1d3334p-1f,
    -0x1.16p-1f, -0x1.0eccccp-1f, -0x1.079998p-1f, -0x1.006666p-1f,
    -0x1.f26664p-2f, -0x1.e4p-2f, -0x1.d59998p-2f, -0x1.c73334p-2f,
    -0x1.b8ccccp-2f, -0x1.aa6666p-2f, -0x1.9cp-2f, -0x1.8d9998p-2f,
    -0x1.7f3334p-2f, -0x1.70ccccp-2f, -0x1.626666p-2f, -0x1.54p-2f,
    -0x1.459998p-2f, -0x1.373334p-2f, -0x1.28ccccp-2f, -0x1.1a6668p-2f,
    -0x1.0cp-2f, -0x1.fb3332p-3f, -0x1.de6666p-3f, -0x1.c1999ap-3f,
    -0x1.a4ccccp-3f, -0x1.88p-3f, -0x1.6b3334p-3f, -0x1.4e6666p-3f,
    -0x1.31999ap-3f, -0x1.14ccccp-3f, -0x1.fp-4f, -0x1.b66668p-4f,
    -0x1.93d70ap-4f, -0x1.8851eep-4f, -0x1.7ccccep-4f, -0x1.7147aep-4f,
    -0x1.65c29p-4f, -0x1.5a3d7p-4f, -0x1.4eb854p-4f, -0x1.433334p-4f,
    -0x1.37ae14p-4f, -0x1.2c28f6p-4f, -0x1.20a3d6p-4f, -0x1.151ebap-4f,
    -0x1.09999ap-4f, -0x1.fc28f6p-5f, -0x1.e51ebap-5f, -0x1.ce147ap-5f,
    -0x1.b70a3ep-5f, -0x1.ap-5f, -0x1.88f5c2p-5f, -0x1.71eb86p-5f,
    -0x1.5ae146p-5f, -0x1.43d70ap-5f, -0x1.2ccccep-5f, -0x1.15c29p-5f,
    -0x1.fd70a4p-6f, -0x1.cf5c2ap-6f, -0x1.a147aep-6f, -0x1.733334p-6f,
    -0x1.451ebap-6f, -0x1.170a3ep-6f, -0x1.d1eb86p-7f, -0x1.75c29p-7f,
    -0x1.3e76c8p-7f, -0x1.2c083p-7f, -0x1.19999ap-7f, -0x1.072b02p-7f,
    -0x1.e978d4p-8f, -0x1.c49ba6p-8f, -0x1.9fbe76p-8f, -0x1.7ae148p-8f,
    -0x1.56041ap-8f, -0x1.3126e8p-8f, -0x1.0c49bap-8f, -0x1.ced914p-9f,
    -0x1.851eb8p-9f, -0x1.3b645ap-9f, -0x1.e353f8p-10f, -0x1.4fdf3ap-10f,
    -0x1.eecbfep-11f, -0x1.b3d07cp-11f, -0x1.78d5p-11f, -0x1.3dd982p-11f,
    -0x1.02de02p-11f, -0x1.8fc506p-12f, -0x1.19ce0ap-12f, -0x1.47ae16p-13f,
    -0x1.743e96p-14f, -0x1.15df66p-14f, -0x1.6f0068p-15f, -0x1.64840cp-16f,
    -0x1.040bfep-17f, -0x1.b43528p-19f, -0x1.27476ep-21f, 0.0f,
    0x1.27476ep-21f, 0x1.b43528p-19f, 0x1.040bfep-17f, 0x1.64840cp-16f,
    0x1.6f0068p-15f, 0x1.15df66p-14f, 0x1.743e96p-14f, 0x1.47ae16p-13f,
    0x1.19ce0ap-12f, 0x1.8fc506p-12f, 0x1.02de02p-11f, 0x1.3dd982p-11f,
    0x1.78d5p-11f, 0x1.b3d07cp-11f, 0x1.eecbfep-11f, 0x1.4fdf3ap-10f,
    0x1.e353f8p-10f, 0x1.3b645ap-9f, 0x1.851eb8p-9f, 0x1.ced914p-9f,
    0x1.0c49bap-8f, 0x1.3126e8p-8f, 0x1.56041ap-8f, 0x1.7ae148p-8f,
    0x1.9fbe76p-8f, 0x1.c49ba6p-8f, 0x1.e978d4p-8f, 0x1.072b02p-7f,
    0x1.19999ap-7f, 0x1.2c083p-7f, 0x1.3e76c8p-7f, 0x1.75c29p-7f,
    0x1.d1eb86p-7f, 0x1.170a3ep-6f, 0x1.451ebap-6f, 0x1.733334p-6f,
    0x1.a147aep-6f, 0x1.cf5c2ap-6f, 0x1.fd70a4p-6f, 0x1.15c29p-5f,
    0x1.2ccccep-5f, 0x1.43d70ap-5f, 0x1.5ae146p-5f, 0x1.71eb86p-5f,
    0x1.88f5c2p-5f, 0x1.ap-5f, 0x1.b70a3ep-5f, 0x1.ce147ap-5f,
    0x1.e51ebap-5f, 0x1.fc28f6p-5f, 0x1.09999ap-4f, 0x1.151ebap-4f,
    0x1.20a3d6p-4f, 0x1.2c28f6p-4f, 0x1.37ae14p-4f, 0x1.433334p-4f,
    0x1.4eb854p-4f, 0x1.5a3d7p-4f, 0x1.65c29p-4f, 0x1.7147aep-4f,
    0x1.7ccccep-4f, 0x1.8851eep-4f, 0x1.93d70ap-4f, 0x1.b66668p-4f,
    0x1.fp-4f, 0x1.14ccccp-3f, 0x1.31999ap-3f, 0x1.4e6666p-3f,
    0x1.6b3334p-3f, 0x1.88p-3f, 0x1.a4ccccp-3f, 0x1.c1999ap-3f,
    0x1.de6666p-3f, 0x1.fb3332p-3f, 0x1.0cp-2f, 0x1.1a6668p-2f,
    0x1.28ccccp-2f, 0x1.373334p-2f, 0x1.459998p-2f, 0x1.54p-2f,
    0x1.626666p-2f, 0x1.70ccccp-2f, 0x1.7f3334p-2f, 0x1.8d9998p-2f,
    0x1.9cp-2f, 0x1.aa6666p-2f, 0x1.b8ccccp-2f, 0x1.c73334p-2f,
    0x1.d59998p-2f, 0x1.e4p-2f, 0x1.f26664p-2f, 0x1.006666p-1f,
    0x1.079998p-1f, 0x1.0eccccp-1f, 0x1.16p-1f, 0x1.1d3334p-1f,
    0x1.246668p-1f, 0x1.2b999ap-1f, 0x1.32ccccp-1f, 0x1.3ap-1f,
    0x1.413334p-1f, 0x1.486668p-1f, 0x1.4f999ap-1f, 0x1.56ccccp-1f,
    0x1.5ep-1f, 0x1.653334p-1f, 0x1.6c6668p-1f, 0x1.73999ap-1f,
    0x1.7accccp-1f, 0x1.82p-1f, 0x1.893334p-1f, 0x1.906666p-1f,
    0x1.97999ap-1f, 0x1.9eccccp-1f, 0x1.a6p-1f, 0x1.ad3334p-1f,
    0x1.b46666p-1f, 0x1.bb999ap-1f, 0x1.c2ccccp-1f, 0x1.cap-1f,
    0x1.d13334p-1f, 0x1.d86666p-1f, 0x1.df999ap-1f, 0x1.e6ccccp-1f,
    0x1.eep-1f, 0x1.f53334p-1f, 0x1.fc6666p-1f, 0x1p+0f,
};

const std::array<float, 256>& dynamic_map() { return kDynamicMap; }

int64_t Nf4Tensor::numel() const {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

int64_t Nf4Tensor::n_blocks() const { return (numel() + block - 1) / block; }

int64_t Nf4Tensor::bytes() const {
  if (!double_quantized()) return codes.numel() + absmax.numel() * 4;
  return codes.numel() + absmax_q.numel() + absmax_scale.numel() * 4 + absmax_code.numel() * 4 + 4;
}

namespace {

at::Tensor tensor_of(const float* values, int64_t n, const at::Device& device) {
  return at::from_blob(const_cast<float*>(values), {n}, at::kFloat).to(device);
}

// Index of the nearest map value to each element of x (float32, within [-1, 1]): by |x - value| in
// float32, a tie to the lower index, NaN to 0 (what argmin over all 256 distances gives: the
// distances grow monotonically away from x's two neighbours, so one of them is the nearest).
at::Tensor nearest_in_map(const at::Tensor& x, const at::Tensor& map) {
  const int64_t last = map.size(0) - 1;
  at::Tensor hi = at::bucketize(x, map, /*out_int32=*/false, /*right=*/false);  // map[hi-1] < x <= map[hi]
  at::Tensor lo = (hi - 1).clamp(0, last);
  hi = hi.clamp(0, last);
  at::Tensor d_lo = (x - map.index_select(0, lo.view(-1)).view_as(x)).abs();
  at::Tensor d_hi = (x - map.index_select(0, hi.view(-1)).view_as(x)).abs();
  at::Tensor idx = at::where(d_hi < d_lo, hi, lo);
  return at::where(at::isnan(x), at::zeros_like(idx), idx).to(at::kByte);
}

// float32 [b1 - b0]: the absmax of blocks [b0, b1).
at::Tensor block_absmax_range(const Nf4Tensor& q, int64_t b0, int64_t b1) {
  if (!q.double_quantized()) return q.absmax.narrow(0, b0, b1 - b0);
  constexpr int64_t kB = Nf4Tensor::kAbsmaxBlock;
  const int64_t s0 = b0 / kB, s1 = (b1 - 1) / kB + 1;
  at::Tensor value = q.absmax_code.index_select(0, q.absmax_q.narrow(0, b0, b1 - b0).to(at::kLong));
  at::Tensor scale = q.absmax_scale.narrow(0, s0, s1 - s0).repeat_interleave(kB).narrow(0, b0 - s0 * kB, b1 - b0);
  return at::mul(value, scale).add(static_cast<double>(q.absmax_offset));  // rounded after each op
}

void check_layout(const Nf4Tensor& q) {
  const int64_t n = q.numel(), nb = q.n_blocks();
  const at::Tensor& per_block = q.double_quantized() ? q.absmax_q : q.absmax;
  KVP_CHECK(q.codes.defined() && per_block.defined() && q.codes.numel() == (n + 1) / 2 && per_block.numel() == nb,
            "NF4 tensor: ", q.codes.defined() ? q.codes.numel() : 0, " code bytes and ",
            per_block.defined() ? per_block.numel() : 0, " block scales do not fit a tensor of ", n,
            " elements in blocks of ", q.block);
  if (q.double_quantized())
    KVP_CHECK(q.absmax_scale.numel() == (nb + Nf4Tensor::kAbsmaxBlock - 1) / Nf4Tensor::kAbsmaxBlock &&
                  q.absmax_code.numel() == 256,
              "NF4 tensor: the double-quantized absmax has ", q.absmax_scale.numel(), " scales and a map of ",
              q.absmax_code.numel(), " values for ", nb, " blocks");
}

// Elements [first, first + count) into out (contiguous, CPU): one float multiply per element, then
// the conversion to T, as the CUDA kernel does (c10's float -> half / bfloat16 conversions round to
// nearest even, like __float2half_rn / __float2bfloat16_rn). The block scales come from ATen ops
// (block_absmax_range), so no multiply-add can be contracted into an FMA.
void dequantize_range_cpu(const Nf4Tensor& q, int64_t first, at::Tensor& out) {
  const int64_t count = out.numel();
  const int64_t b0 = first / q.block, b1 = (first + count - 1) / q.block + 1;
  const at::Tensor scale_t = block_absmax_range(q, b0, b1).cpu().contiguous();
  const at::Tensor codes_t = q.codes.narrow(0, first / 2, (count + 1) / 2).cpu().contiguous();
  const float* scale = scale_t.data_ptr<float>();
  const uint8_t* codes = codes_t.data_ptr<uint8_t>();
  const int64_t block = q.block, offset = first - b0 * q.block;  // element first is offset in block b0
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, out.scalar_type(), "dequantize_nf4", [&] {
    scalar_t* o = out.data_ptr<scalar_t>();
    at::parallel_for(0, (count + 1) / 2, 16384, [&](int64_t k0, int64_t k1) {
      for (int64_t k = k0; k < k1; ++k) {
        const int64_t j = 2 * k;
        const float a = scale[(offset + j) / block];  // j and j + 1 share a block (both even)
        o[j] = static_cast<scalar_t>(kCode[codes[k] >> 4] * a);
        if (j + 1 < count) o[j + 1] = static_cast<scalar_t>(kCode[codes[k] & 15] * a);
      }
    });
  });
}

}  // namespace

Nf4Tensor quantize_nf4(const at::Tensor& w, int64_t block, bool double_quant) {
  KVP_CHECK(w.defined() && at::isFloatingType(w.scalar_type()), "quantize_nf4: expected a floating tensor");
  KVP_CHECK(block >= 2 && block % 2 == 0, "quantize_nf4: block size ", block, " must be even and >= 2");
  const int64_t n = w.numel();
  KVP_CHECK(n > 0, "quantize_nf4: empty tensor");
  const int64_t nb = (n + block - 1) / block;
  auto f32 = w.options().dtype(at::kFloat);
  const at::Tensor flat = w.reshape({-1});
  const at::Tensor mid = tensor_of(kMid.data(), 15, w.device());
  Nf4Tensor q;
  q.codes = at::empty({(n + 1) / 2}, w.options().dtype(at::kByte));
  at::Tensor absmax = at::empty({nb}, f32);
  // Chunks of whole blocks (about 4M elements), each block on its own: the float32 temporaries stay
  // small when a 7B model's projections are quantized on the GPU at load time.
  const int64_t chunk_blocks = std::max<int64_t>(1, (int64_t{1} << 22) / block);
  for (int64_t b0 = 0; b0 < nb; b0 += chunk_blocks) {
    const int64_t cb = std::min(chunk_blocks, nb - b0), e0 = b0 * block, ne = std::min(n - e0, cb * block);
    at::Tensor x = flat.narrow(0, e0, ne).to(at::kFloat);
    // Zero padding of the last block changes neither its absmax nor its valid codes.
    if (ne != cb * block) x = at::cat({x, at::zeros({cb * block - ne}, f32)});
    at::Tensor blocks = x.view({cb, block});                                // [cb, block]
    at::Tensor a = blocks.abs().amax(1);                                    // [cb] float32
    at::Tensor norm = blocks * at::reciprocal(a).unsqueeze(1);              // x * (1 / absmax)
    // Index = how many midpoints lie strictly below x (bucketize, right=false: mid[i-1] < x <= mid[i]).
    at::Tensor idx = at::bucketize(norm, mid, /*out_int32=*/true, /*right=*/false);
    idx = at::where(at::isnan(norm), at::zeros_like(idx), idx).to(at::kByte).view({-1, 2});
    at::Tensor bytes = at::bitwise_or(at::__lshift__(idx.select(1, 0), 4), idx.select(1, 1));
    q.codes.narrow(0, e0 / 2, (ne + 1) / 2).copy_(bytes.narrow(0, 0, (ne + 1) / 2));
    absmax.narrow(0, b0, cb).copy_(a);
  }
  q.shape = w.sizes().vec();
  q.block = block;
  if (!double_quant) {
    q.absmax = absmax.contiguous();
    return q;
  }
  // The absmax values, centred on their mean, in 8 bits per block of 256 (padding: zeros, which
  // change no block's absmax; their indices are dropped).
  constexpr int64_t kB = Nf4Tensor::kAbsmaxBlock;
  q.absmax_offset = static_cast<float>(absmax.to(at::kDouble).mean().item<double>());
  const int64_t nb2 = (nb + kB - 1) / kB;
  at::Tensor centred = absmax - static_cast<double>(q.absmax_offset);   // float32 [nb]
  if (nb2 * kB != nb) centred = at::cat({centred, at::zeros({nb2 * kB - nb}, f32)});
  at::Tensor blocks2 = centred.view({nb2, kB});
  at::Tensor scale = blocks2.abs().amax(1);                              // [nb2] float32
  at::Tensor scaled = (blocks2 * at::reciprocal(scale).unsqueeze(1)).clamp(-1.0, 1.0);
  q.absmax_code = tensor_of(dynamic_map().data(), 256, w.device());
  q.absmax_q = nearest_in_map(scaled, q.absmax_code).view({-1}).narrow(0, 0, nb).contiguous();
  q.absmax_scale = scale.contiguous();
  return q;
}

at::Tensor nf4_block_absmax(const Nf4Tensor& q) {
  check_layout(q);
  return block_absmax_range(q, 0, q.n_blocks());
}

at::Tensor dequantize_nf4(const Nf4Tensor& q, at::ScalarType dtype) {
  check_layout(q);
  at::Tensor out = at::empty(q.shape, q.codes.options().dtype(dtype));
  dequantize_nf4_into(q, out.view({-1}));
  return out;
}

void dequantize_nf4_into(const Nf4Tensor& q, at::Tensor out, int64_t first) {
  check_layout(q);
  const int64_t count = out.numel();
  KVP_CHECK(out.is_contiguous() && out.device() == q.codes.device() && first >= 0 && first % 2 == 0 &&
                first + count <= q.numel(),
            "dequantize_nf4_into: out (", count, " elements from element ", first,
            ") must be contiguous, start at an even element and lie within the tensor's ", q.numel(),
            " elements on ", q.codes.device().str());
  if (count == 0) return;
  if (fused::available(out)) {
    fused::nf4_dequantize_into(q, out, first);
    return;
  }
  if (out.is_cpu()) {
    dequantize_range_cpu(q, first, out);
    return;
  }
  at::Tensor host = at::empty({count}, out.options().device(at::kCPU));  // a device without kernels
  dequantize_range_cpu(q, first, host);
  out.view({-1}).copy_(host);
}

}  // namespace kvprime
