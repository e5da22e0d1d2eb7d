// The fused CUDA kernels (src/model/fused_ops.h) against the eager ATen ops they replace, on CUDA,
// in float32, float16 and bfloat16: aligned (vectorised) and unaligned (scalar) rows, odd sizes,
// strided q/k views of a fused qkv buffer, partial rotary, broadcast cos/sin. Skipped without a
// CUDA device or without the kernels (CPU builds); there only the "no kernels" behaviour is checked.
//
// Tolerances:
//  - gated activation and RoPE: bit-exact (at::equal). Each eager op computes in float and rounds
//    to the dtype; the kernels round at the same points, use no fma across two eager ops, and
//    evaluate the activations with the expressions of ATen's CUDA kernels.
//  - residual add: bit-exact (one rounded float add).
//  - RMSNorm: the row's sum of squares is a float sum in another order than ATen's reduction, so
//    rsqrt(mean + eps) can differ by an ulp of float or two; every other step rounds as eager.
//    float32: that is ~1e-7 relative, asserted <= 2e-6 per element. float16 / bfloat16: it flips
//    the rounding of an element only when the float result lies within ~1e-7 (relative) of a
//    rounding boundary, so >= 99% of elements are exactly equal, and a flip is 1 ulp of the
//    output for Gemma style ((x * r) * (1 + w), rounded once). Llama style rounds twice,
//    n = T(x * r) then T(w * n): 1 ulp in n is w's mantissa (in [1, 2)) ulps of w * n before its
//    rounding, so up to 2 ulps of the output.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "../../src/model/fused_ops.h"
#include "../../src/model/ops.h"
#include "kvprime/core/compat.h"
#include "kvprime/core/error.h"
#include "kvprime/model/config.h"
#include "kvprime/model/rope.h"

namespace fused = kvprime::fused;
namespace ops = kvprime::ops;
using kvprime::Activation;

namespace {

const at::Device kCuda(at::kCUDA, 0);
const std::vector<at::ScalarType> kDtypes = {at::kFloat, at::kHalf, at::kBFloat16};

// Skips the test unless this build has the kernels and a CUDA device.
#define REQUIRE_FUSED_KERNELS()                                                               \
  do {                                                                                        \
    if (!kvprime::compat::cuda_available()) GTEST_SKIP() << "no CUDA device in this build";   \
    if (!fused::available(at::zeros({1}, at::TensorOptions().device(kCuda))))                 \
      GTEST_SKIP() << "no fused CUDA kernels in this build (or KVPRIME_NO_FUSED is set)";     \
  } while (0)

std::string dtype_str(at::ScalarType t) {
  std::ostringstream os;
  os << t;
  return os.str();
}

// Standard normal float32 on the CPU (reproducible), times `scale`, then dtype on CUDA.
at::Tensor randn(std::vector<int64_t> shape, uint64_t seed, at::ScalarType dtype,
                 double scale = 1.0, double shift = 0.0) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  auto t = at::randn(shape, gen, at::TensorOptions().dtype(at::kFloat)) * scale + shift;
  return t.to(dtype).to(kCuda);
}

// How many elements differ, and the first few, for a failure message.
std::string mismatches(const at::Tensor& got, const at::Tensor& want) {
  if (got.sizes() != want.sizes()) {
    std::ostringstream os;
    os << "shape " << got.sizes() << " vs " << want.sizes();
    return os.str();
  }
  auto g = got.to(at::kCPU).to(at::kDouble).reshape({-1});
  auto w = want.to(at::kCPU).to(at::kDouble).reshape({-1});
  auto bad = g.ne(w).logical_and(g.eq(g).logical_or(w.eq(w)));  // NaN == NaN for this purpose
  auto idx = bad.nonzero().reshape({-1});
  std::ostringstream os;
  os << idx.numel() << " of " << g.numel() << " elements differ";
  for (int64_t k = 0; k < std::min<int64_t>(idx.numel(), 5); ++k) {
    const int64_t i = idx[k].item<int64_t>();
    os << "; [" << i << "] " << g[i].item<double>() << " vs " << w[i].item<double>();
  }
  return os.str();
}

void expect_bit_exact(const at::Tensor& got, const at::Tensor& want, const std::string& what) {
  ASSERT_EQ(got.scalar_type(), want.scalar_type()) << what;
  ASSERT_EQ(got.sizes().vec(), want.sizes().vec()) << what;
  EXPECT_TRUE(at::equal(got, want)) << what << ": " << mismatches(got, want);
}

// |ordinal(a) - ordinal(b)| for 16-bit floats: the number of representable values between them.
at::Tensor ulp_distance16(const at::Tensor& a, const at::Tensor& b) {
  auto ordinal = [](const at::Tensor& t) {
    auto bits = t.to(at::kCPU).contiguous().view(at::kShort).to(at::kInt);
    auto mag = bits.bitwise_and(0x7fff);
    return at::where(bits.lt(0), -mag, mag);
  };
  return (ordinal(a) - ordinal(b)).abs();
}

// RMSNorm tolerance: see the file comment.
void expect_norm_close(const at::Tensor& got, const at::Tensor& want, bool one_plus,
                       const std::string& what) {
  ASSERT_EQ(got.scalar_type(), want.scalar_type()) << what;
  ASSERT_EQ(got.sizes().vec(), want.sizes().vec()) << what;
  if (got.numel() == 0) return;
  if (want.scalar_type() == at::kFloat) {
    auto g = got.to(at::kCPU).to(at::kDouble), w = want.to(at::kCPU).to(at::kDouble);
    const double rel = ((g - w).abs() / w.abs().clamp_min(1e-30)).max().item<double>();
    EXPECT_LE(rel, 2e-6) << what << ": " << mismatches(got, want);
  } else {
    auto d = ulp_distance16(got, want);
    const int64_t max_ulp = d.max().item<int64_t>();
    const double exact = d.eq(0).to(at::kDouble).mean().item<double>();
    EXPECT_LE(max_ulp, one_plus ? 1 : 2) << what << ": " << mismatches(got, want);
    EXPECT_GE(exact, 0.99) << what << ": " << mismatches(got, want);
  }
}

std::string shape_name(const at::Tensor& t) {
  std::ostringstream os;
  os << t.sizes() << " strides " << t.strides();
  return os.str();
}

// Row-wise inputs for the norms: plain matrices of several sizes (aligned, d not a multiple of the
// vector width, rows longer than the register cache), more leading dims, views that are read in
// place with unaligned rows, and views that must be copied first.
std::vector<at::Tensor> norm_inputs(at::ScalarType dtype, uint64_t seed) {
  std::vector<at::Tensor> xs;
  for (auto shape : std::vector<std::vector<int64_t>>{{1, 4096},
                                                      {3, 384},
                                                      {513, 4096},
                                                      {3, 4100},
                                                      {5, 4099},
                                                      {2, 8192},
                                                      {2, 20000},
                                                      {1, 1},
                                                      {2, 3, 5, 128},
                                                      {0, 64}})
    xs.push_back(randn(shape, seed++, dtype, 2.0));
  // q and k of a fused qkv buffer [B, T, (H + 2 Hkv) D]: two strided levels, read in place.
  const int64_t B = 2, T = 5, H = 4, Hkv = 2, D = 128;
  auto qkv = randn({B, T, (H + 2 * Hkv) * D}, seed++, dtype, 2.0);
  xs.push_back(qkv.narrow(-1, 0, H * D).view({B, T, H, D}));
  xs.push_back(qkv.narrow(-1, H * D, Hkv * D).view({B, T, Hkv, D}));
  // Rows of odd stride starting one element in: scalar loads.
  xs.push_back(randn({7, 4097}, seed++, dtype, 2.0).narrow(1, 1, 4096));
  // Last dim not contiguous: copied.
  xs.push_back(randn({384, 6}, seed++, dtype, 2.0).t());
  // Three strided levels that do not merge: copied.
  xs.push_back(randn({4, 6, 5, 64}, seed++, dtype, 2.0).narrow(1, 0, 3).narrow(2, 0, 4));
  return xs;
}

// --- RMSNorm ---------------------------------------------------------------------------------

TEST(FusedOps, RmsNormMatchesEager) {
  REQUIRE_FUSED_KERNELS();
  uint64_t seed = 100;
  for (at::ScalarType dtype : kDtypes) {
    for (bool one_plus : {false, true}) {
      for (const at::Tensor& x : norm_inputs(dtype, seed)) {
        const std::string what = dtype_str(dtype) + (one_plus ? " gemma " : " llama ") + shape_name(x);
        SCOPED_TRACE(what);
        const int64_t d = x.size(-1);
        // Llama weights around 1, Gemma's (1 + w) weights around 0.
        auto w = randn({d}, seed++, dtype, 0.5, one_plus ? 0.0 : 1.0);
        const double eps = one_plus ? 1e-6 : 1e-5;
        auto got = fused::rms_norm(x, w, eps, one_plus);
        EXPECT_TRUE(got.is_contiguous());
        EXPECT_EQ(got.device(), x.device());
        expect_norm_close(got, ops::rms_norm(x, w, eps, one_plus), one_plus, what);
        // Deterministic: a fixed reduction order.
        EXPECT_TRUE(at::equal(got, fused::rms_norm(x, w, eps, one_plus)));
      }
    }
  }
}

// --- residual add + RMSNorm -----------------------------------------------------------------------

TEST(FusedOps, AddRmsNormMatchesEager) {
  REQUIRE_FUSED_KERNELS();
  uint64_t seed = 200;
  for (at::ScalarType dtype : kDtypes) {
    for (bool one_plus : {false, true}) {
      for (auto shape : std::vector<std::vector<int64_t>>{
               {1, 4096}, {3, 384}, {513, 4096}, {3, 4100}, {2, 4099}, {2, 20000}, {2, 3, 768}}) {
        auto x = randn(shape, seed++, dtype, 2.0);
        auto a = randn(shape, seed++, dtype, 0.5);
        const int64_t d = shape.back();
        auto w = randn({d}, seed++, dtype, 0.5, one_plus ? 0.0 : 1.0);
        const std::string what = dtype_str(dtype) + (one_plus ? " gemma " : " llama ") + shape_name(x);
        SCOPED_TRACE(what);
        auto want_y = x + a;
        auto want_h = ops::rms_norm(want_y, w, 1e-6, one_plus);

        auto [y, h] = fused::add_rms_norm(x, a, w, 1e-6, one_plus);
        expect_bit_exact(y, want_y, what + " x + a");
        expect_norm_close(h, want_h, one_plus, what + " norm");

        // In place: x + a lands in x, the norm is the same bits.
        auto xc = x.clone();
        auto [y2, h2] = fused::add_rms_norm(xc, a, w, 1e-6, one_plus, /*in_place=*/true);
        EXPECT_EQ(y2.data_ptr(), xc.data_ptr());
        expect_bit_exact(xc, want_y, what + " in place x + a");
        expect_bit_exact(h2, h, what + " in place norm");
      }
      // A residual stream read from an unaligned view (scalar path for it, vector for the rest).
      auto xv = randn({5, 4097}, seed++, dtype, 2.0).narrow(1, 1, 4096);
      auto a = randn({5, 4096}, seed++, dtype, 0.5);
      auto w = randn({4096}, seed++, dtype, 0.5, one_plus ? 0.0 : 1.0);
      auto [y, h] = fused::add_rms_norm(xv, a, w, 1e-6, one_plus);
      expect_bit_exact(y, xv + a, dtype_str(dtype) + " unaligned x + a");
      expect_norm_close(h, ops::rms_norm(xv + a, w, 1e-6, one_plus), one_plus,
                        dtype_str(dtype) + " unaligned norm");
    }
  }
}

// --- gated activation ---------------------------------------------------------------------------

TEST(FusedOps, GatedActBitExact) {
  REQUIRE_FUSED_KERNELS();
  uint64_t seed = 300;
  const std::vector<std::pair<Activation, std::string>> acts = {
      {Activation::SiLU, "silu"}, {Activation::GeluTanh, "gelu_tanh"},
      {Activation::GeluExact, "gelu"}};
  for (at::ScalarType dtype : kDtypes) {
    for (const auto& [act, act_name] : acts) {
      std::vector<at::Tensor> gus;
      for (auto shape : std::vector<std::vector<int64_t>>{
               {1, 2 * 4096}, {3, 2 * 384}, {513, 2 * 1376}, {3, 2 * 2050}, {2, 2 * 1377},
               {2, 3, 2 * 640}, {0, 2 * 64}})
        gus.push_back(randn(shape, seed++, dtype, 3.0));  // tails out to |x| ~ 15
      gus.push_back(randn({4, 2 * 1024 + 1}, seed++, dtype, 3.0).narrow(1, 1, 2 * 1024));  // unaligned
      for (const at::Tensor& gu : gus) {
        const std::string what = dtype_str(dtype) + " " + act_name + " " + shape_name(gu);
        SCOPED_TRACE(what);
        const int64_t F = gu.size(-1) / 2;
        auto got = fused::gated_act(gu, act);
        EXPECT_TRUE(got.is_contiguous());
        expect_bit_exact(got, ops::activation(gu.narrow(-1, 0, F), act) * gu.narrow(-1, F, F), what);
      }
      // Extreme gates: exp overflow / underflow, zeros, tiny values.
      auto g = at::tensor({-100.f, -88.f, -30.f, -10.f, -1e-3f, -0.f, 0.f, 1e-30f, 1e-3f, 5.f, 30.f,
                           88.f, 100.f, 3e4f, -3e4f, 0.5f},
                          at::kFloat);
      auto gu = at::cat({g, at::ones_like(g) * 1.5}).view({1, -1}).to(dtype).to(kCuda);
      const int64_t F = gu.size(-1) / 2;
      expect_bit_exact(fused::gated_act(gu, act),
                       ops::activation(gu.narrow(-1, 0, F), act) * gu.narrow(-1, F, F),
                       dtype_str(dtype) + " " + act_name + " extremes");
    }
  }
}

// --- RoPE ------------------------------------------------------------------------------------------

struct RopeCase {
  int64_t B, T, H, Hkv, D;
  double partial;
  bool broadcast_cos;  // cos/sin [1, T, rd] for all rows
  kvprime::RopeType type;
};

TEST(FusedOps, RopeBitExact) {
  REQUIRE_FUSED_KERNELS();
  using kvprime::RopeType;
  const std::vector<RopeCase> cases = {
      {2, 7, 4, 2, 128, 1.0, false, RopeType::Default},
      {2, 7, 4, 2, 128, 0.5, true, RopeType::Default},   // partial rotary, broadcast cos/sin
      {1, 1, 8, 8, 64, 1.0, true, RopeType::Default},    // decode step
      {3, 33, 2, 1, 80, 0.25, false, RopeType::Default}, // rd = 20: rd / 2 = 10, width 2
      {2, 5, 3, 1, 66, 1.0, false, RopeType::Default},   // rd / 2 = 33: scalar path
      {1, 17, 4, 4, 256, 1.0, true, RopeType::Yarn},     // attention_scaling != 1
  };
  uint64_t seed = 400;
  for (at::ScalarType dtype : kDtypes) {
    for (const RopeCase& c : cases) {
      kvprime::RopeParams p;
      p.type = c.type;
      p.theta = c.type == RopeType::Yarn ? 1e6 : 10000.0;
      p.factor = c.type == RopeType::Yarn ? 4.0 : 1.0;
      p.partial_rotary_factor = c.partial;
      kvprime::Rotary rotary(p, c.D, 8192);
      rotary.to(kCuda);
      const int64_t rd = rotary.frequencies().rotary_dim;
      auto gen = at::make_generator<at::CPUGeneratorImpl>(seed++);
      auto pos = at::randint(0, 6000, {c.broadcast_cos ? 1 : c.B, c.T}, gen,
                             at::TensorOptions().dtype(at::kLong))
                     .to(kCuda);
      auto [cos, sin] = rotary.cos_sin(pos, dtype);  // [Bc, T, rd] in dtype, as the model uses
      auto qkv = randn({c.B, c.T, (c.H + 2 * c.Hkv) * c.D}, seed++, dtype, 2.0);
      auto q = qkv.narrow(-1, 0, c.H * c.D).view({c.B, c.T, c.H, c.D});
      auto k = qkv.narrow(-1, c.H * c.D, c.Hkv * c.D).view({c.B, c.T, c.Hkv, c.D});
      for (const auto& [x, name] : {std::make_pair(q, "q"), std::make_pair(k, "k")}) {
        std::ostringstream os;
        os << dtype_str(dtype) << " " << name << " " << shape_name(x) << " rd " << rd
           << " cos " << cos.sizes();
        SCOPED_TRACE(os.str());
        auto got = fused::rope(x, cos, sin, rd);
        EXPECT_TRUE(got.is_contiguous());
        expect_bit_exact(got, rotary.apply_cos_sin(x.transpose(1, 2), cos, sin), os.str());
      }
      // A contiguous [B, T, H, D] input too.
      auto xc = q.contiguous();
      expect_bit_exact(fused::rope(xc, cos, sin, rd), rotary.apply_cos_sin(xc.transpose(1, 2), cos, sin),
                       dtype_str(dtype) + " contiguous q");
    }
  }
}

// --- errors and builds without kernels ------------------------------------------------------------

TEST(FusedOps, BadInputsThrow) {
  REQUIRE_FUSED_KERNELS();
  auto x = randn({3, 64}, 1, at::kHalf);
  auto w = randn({64}, 2, at::kHalf);
  EXPECT_THROW(fused::rms_norm(x, randn({32}, 3, at::kHalf), 1e-6, false), kvprime::Error);
  EXPECT_THROW(fused::rms_norm(x, w.to(at::kFloat), 1e-6, false), kvprime::Error);
  EXPECT_THROW(fused::rms_norm(x.to(at::kCPU), w.to(at::kCPU), 1e-6, false), kvprime::Error);
  EXPECT_THROW(fused::rms_norm(x.to(at::kDouble), w.to(at::kDouble), 1e-6, false), kvprime::Error);
  EXPECT_THROW(fused::add_rms_norm(x, randn({3, 32}, 4, at::kHalf), w, 1e-6, false), kvprime::Error);
  EXPECT_THROW(fused::add_rms_norm(x.t(), x.t(), randn({3}, 5, at::kHalf), 1e-6, false, true),
               kvprime::Error);  // in place on a non-contiguous x
  EXPECT_THROW(fused::gated_act(randn({3, 63}, 6, at::kHalf), Activation::SiLU), kvprime::Error);
  auto q = randn({1, 4, 2, 64}, 7, at::kHalf);
  auto cs = randn({1, 4, 64}, 8, at::kHalf);
  EXPECT_THROW(fused::rope(q, cs, cs, 63), kvprime::Error);   // odd rotary_dim
  EXPECT_THROW(fused::rope(q, cs, cs, 32), kvprime::Error);   // cos is not [.., 32]
  EXPECT_THROW(fused::rope(q, cs.narrow(1, 0, 3), cs.narrow(1, 0, 3), 64), kvprime::Error);  // T
  EXPECT_THROW(fused::rope(q.view({4, 2, 64}), cs, cs, 64), kvprime::Error);  // not 4-D
  EXPECT_THROW(fused::rope(q, cs.to(at::kFloat), cs.to(at::kFloat), 64), kvprime::Error);
}

TEST(FusedOps, CpuTensorsAreNotAvailable) {
  EXPECT_FALSE(fused::available(at::zeros({2, 4})));
  EXPECT_FALSE(fused::available(at::Tensor()));
#if !KVPRIME_WITH_CUDA_KERNELS
  // A build without the kernels says so instead of computing anything.
  auto x = at::zeros({2, 4});
  EXPECT_THROW(fused::rms_norm(x, at::ones({4}), 1e-6, false), kvprime::Error);
  EXPECT_THROW(fused::add_rms_norm(x, x, at::ones({4}), 1e-6, false), kvprime::Error);
  EXPECT_THROW(fused::gated_act(x, Activation::SiLU), kvprime::Error);
  EXPECT_THROW(fused::rope(x.view({1, 2, 1, 4}), x.view({1, 2, 4}), x.view({1, 2, 4}), 4),
               kvprime::Error);
#endif
}

}  // namespace
