// Rotary embeddings: frequencies against closed forms computed in double precision, the rotation
// identities the KV-cache surgery relies on (shift composes with apply), shapes and errors.
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "kvprime/core/compat.h"
#include "kvprime/core/error.h"
#include "kvprime/model/config.h"
#include "kvprime/model/rope.h"
#include "test_support.h"

using kvprime::compute_rope_frequencies;
using kvprime::RopeParams;
using kvprime::RopeType;
using kvprime::Rotary;
using kvprime::test::max_abs_diff;
using kvprime::test::max_rel_diff;

namespace {

constexpr double kPi = 3.14159265358979323846;

// max over elements of |a - b| / |b|: every frequency matters, also the tiny low ones.
double max_elementwise_rel(const at::Tensor& a, const std::vector<double>& b) {
  auto da = a.to(at::kDouble).contiguous();
  EXPECT_EQ(da.numel(), static_cast<int64_t>(b.size()));
  double worst = 0;
  for (size_t i = 0; i < b.size(); ++i)
    worst = std::max(worst, std::fabs(da[i].item<double>() - b[i]) / std::fabs(b[i]));
  return worst;
}

// 1 / theta^(2i / dim), i < dim / 2, in double.
std::vector<double> closed_form_default(double theta, int64_t dim) {
  std::vector<double> out;
  for (int64_t i = 0; i < dim; i += 2)
    out.push_back(1.0 / std::pow(theta, static_cast<double>(i) / static_cast<double>(dim)));
  return out;
}

RopeParams rope(RopeType type, double theta, double factor = 1.0) {
  RopeParams p;
  p.type = type;
  p.theta = theta;
  p.factor = factor;
  return p;
}

RopeParams llama31() {
  RopeParams p = rope(RopeType::Llama3, 500000.0, 8.0);
  p.low_freq_factor = 1.0;
  p.high_freq_factor = 4.0;
  p.original_max_position_embeddings = 8192;
  return p;
}

RopeParams yarn_qwen() {
  RopeParams p = rope(RopeType::Yarn, 1e6, 4.0);
  p.original_max_position_embeddings = 32768;
  return p;
}

struct Case {
  std::string name;
  RopeParams params;
};

// One of each kind, plus partial rotary (rotary_dim = 64 of head_dim 128).
std::vector<Case> all_cases() {
  RopeParams partial = rope(RopeType::Default, 10000.0);
  partial.partial_rotary_factor = 0.5;
  RopeParams partial_yarn = yarn_qwen();
  partial_yarn.partial_rotary_factor = 0.5;
  return {{"default", rope(RopeType::Default, 10000.0)},
          {"linear", rope(RopeType::Linear, 1e6, 8.0)},
          {"dynamic", rope(RopeType::Dynamic, 10000.0, 2.0)},
          {"llama3", llama31()},
          {"yarn", yarn_qwen()},
          {"partial_default", partial},
          {"partial_yarn", partial_yarn}};
}

at::Tensor randn(std::vector<int64_t> shape, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  return at::randn(shape, gen, at::TensorOptions().dtype(at::kFloat));
}

at::Tensor randint(int64_t low, int64_t high, std::vector<int64_t> shape, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  return at::randint(low, high, shape, gen, at::TensorOptions().dtype(at::kLong));
}

}  // namespace

TEST(Rope, RotateHalf) {
  auto x = at::arange(8, at::kFloat).view({1, 8});
  auto expected = at::tensor({-4.f, -5.f, -6.f, -7.f, 0.f, 1.f, 2.f, 3.f}).view({1, 8});
  EXPECT_TRUE(at::equal(kvprime::rotate_half(x), expected));
  EXPECT_THROW(kvprime::rotate_half(at::zeros({3, 5})), kvprime::Error);
}

// ---------------------------------------------------------------------------------------------
// Frequencies.

TEST(RopeFrequencies, DefaultMatchesClosedForm) {
  // float32 with exact exponents (2i/dim is a dyadic fraction for these dims): the only error is
  // pow's and the reciprocal's rounding, a few 1e-8 relative.
  for (auto [theta, dim] : std::vector<std::pair<double, int64_t>>{
           {1e4, 64}, {1e4, 128}, {5e5, 128}, {1e6, 256}, {1e6, 128}}) {
    auto f = compute_rope_frequencies(rope(RopeType::Default, theta), dim, 4096);
    EXPECT_EQ(f.rotary_dim, dim);
    EXPECT_EQ(f.attention_scaling, 1.0);
    EXPECT_EQ(f.inv_freq.scalar_type(), at::kFloat);
    EXPECT_LE(max_elementwise_rel(f.inv_freq, closed_form_default(theta, dim)), 1e-6)
        << "theta " << theta << " dim " << dim;
  }
}

TEST(RopeFrequencies, LinearDividesByFactor) {
  auto d = compute_rope_frequencies(rope(RopeType::Default, 1e6), 256, 4096).inv_freq;
  auto l = compute_rope_frequencies(rope(RopeType::Linear, 1e6, 8.0), 256, 4096).inv_freq;
  EXPECT_TRUE(at::equal(l, d / 8.0));
}

TEST(RopeFrequencies, PartialRotaryUsesRotaryDim) {
  RopeParams p = rope(RopeType::Default, 1e4);
  p.partial_rotary_factor = 0.25;
  auto f = compute_rope_frequencies(p, 128, 4096);
  EXPECT_EQ(f.rotary_dim, 32);
  EXPECT_LE(max_elementwise_rel(f.inv_freq, closed_form_default(1e4, 32)), 1e-6);
}

TEST(RopeFrequencies, Llama3MatchesDoublePrecisionFormula) {
  for (auto [factor, dim] : std::vector<std::pair<double, int64_t>>{{8.0, 128}, {32.0, 64}}) {
    RopeParams p = llama31();
    p.factor = factor;
    const double old_len = 8192, low = 1.0, high = 4.0;
    std::vector<double> expected;
    for (double inv : closed_form_default(p.theta, dim)) {
      const double wavelen = 2 * kPi / inv;
      if (wavelen < old_len / high) {
        expected.push_back(inv);  // high frequencies: unchanged
      } else if (wavelen > old_len / low) {
        expected.push_back(inv / factor);  // low frequencies: interpolated
      } else {
        const double smooth = (old_len / wavelen - low) / (high - low);
        expected.push_back((1 - smooth) * inv / factor + smooth * inv);
      }
    }
    auto f = compute_rope_frequencies(p, dim, 131072);
    EXPECT_EQ(f.attention_scaling, 1.0);
    EXPECT_LE(max_elementwise_rel(f.inv_freq, expected), 1e-6) << "factor " << factor;
    // The formula really changes something on both ends.
    EXPECT_EQ(expected.front(), closed_form_default(p.theta, dim).front());
    EXPECT_NE(expected.back(), closed_form_default(p.theta, dim).back());
  }
}

TEST(RopeFrequencies, YarnMatchesDoublePrecisionFormula) {
  const RopeParams p = yarn_qwen();
  const int64_t dim = 128;
  auto correction_dim = [&](double rotations) {
    return dim * std::log(32768 / (rotations * 2 * kPi)) / (2 * std::log(p.theta));
  };
  double low = std::max(std::floor(correction_dim(32)), 0.0);
  double high = std::min(std::ceil(correction_dim(1)), static_cast<double>(dim - 1));
  std::vector<double> expected;
  for (int64_t i = 0; i < dim / 2; ++i) {
    const double pos_freq = std::pow(p.theta, 2.0 * i / dim);
    const double ramp = std::clamp((i - low) / (high - low), 0.0, 1.0);
    const double extrapolation = 1 - ramp;
    expected.push_back(1 / (p.factor * pos_freq) * (1 - extrapolation) +
                       1 / pos_freq * extrapolation);
  }
  auto f = compute_rope_frequencies(p, dim, 131072);
  EXPECT_LE(max_elementwise_rel(f.inv_freq, expected), 1e-6);
}

TEST(RopeFrequencies, YarnAttentionScaling) {
  for (double factor : {2.0, 4.0, 40.0}) {
    RopeParams p = yarn_qwen();
    p.factor = factor;
    // Absent attention_factor: 0.1 * ln(factor) + 1 (transformers' get_mscale).
    EXPECT_DOUBLE_EQ(compute_rope_frequencies(p, 128, 131072).attention_scaling,
                     0.1 * std::log(factor) + 1.0);
  }
  RopeParams given = yarn_qwen();
  given.attention_factor = 1.25;
  EXPECT_EQ(compute_rope_frequencies(given, 128, 131072).attention_scaling, 1.25);
  RopeParams deepseek = yarn_qwen();
  deepseek.factor = 40;
  deepseek.mscale = 0.707;
  deepseek.mscale_all_dim = 0.707;
  EXPECT_DOUBLE_EQ(compute_rope_frequencies(deepseek, 128, 131072).attention_scaling, 1.0);
  RopeParams one = yarn_qwen();
  one.factor = 1.0;
  EXPECT_EQ(compute_rope_frequencies(one, 128, 131072).attention_scaling, 1.0);
}

TEST(RopeFrequencies, DynamicWithinAndBeyondTheContext) {
  const RopeParams p = rope(RopeType::Dynamic, 10000.0, 2.0);
  const auto def = compute_rope_frequencies(rope(RopeType::Default, 10000.0), 128, 4096).inv_freq;
  // Within max_position_embeddings dynamic scaling is the default RoPE, bit for bit.
  EXPECT_TRUE(at::equal(compute_rope_frequencies(p, 128, 4096).inv_freq, def));
  EXPECT_TRUE(at::equal(compute_rope_frequencies(p, 128, 4096, 4096).inv_freq, def));
  // Beyond it, base' = base * (factor * seq / max - (factor - 1)) ** (dim / (dim - 2)).
  const double seq = 10000;
  const double base = 10000.0 * std::pow(2.0 * seq / 4096 - 1.0, 128.0 / 126.0);
  auto grown = compute_rope_frequencies(p, 128, 4096, 10000).inv_freq;
  EXPECT_LE(max_elementwise_rel(grown, closed_form_default(base, 128)), 1e-6);
}

TEST(RopeFrequencies, RejectsBadParameters) {
  RopeParams odd = rope(RopeType::Default, 1e4);
  odd.partial_rotary_factor = 0.3;
  EXPECT_NO_THROW(compute_rope_frequencies(odd, 128, 4096));             // int(38.4) = 38
  EXPECT_THROW(compute_rope_frequencies(odd, 10, 4096), kvprime::Error);  // int(3.0) = 3: odd
  EXPECT_THROW(compute_rope_frequencies(rope(RopeType::Default, 0.0), 128, 4096), kvprime::Error);
  EXPECT_THROW(compute_rope_frequencies(rope(RopeType::Linear, 1e4, 0.0), 128, 4096),
               kvprime::Error);
}

// ---------------------------------------------------------------------------------------------
// cos / sin and apply.

TEST(Rotary, CosSinShapesAndValues) {
  Rotary r(rope(RopeType::Default, 10000.0), 64, 4096);
  auto pos = at::tensor({0, 1, 7, 2, 3, 100}, at::kLong).view({2, 3});
  auto [cos, sin] = r.cos_sin(pos, at::kFloat);
  ASSERT_EQ(cos.sizes(), (std::vector<int64_t>{2, 3, 64}));
  ASSERT_EQ(sin.sizes(), (std::vector<int64_t>{2, 3, 64}));
  auto inv = r.frequencies().inv_freq.to(at::kDouble);
  auto angles = pos.to(at::kDouble).unsqueeze(-1) * inv;  // [2, 3, 32]
  auto emb = at::cat({angles, angles}, -1);
  EXPECT_LT(max_abs_diff(cos, emb.cos()), 1e-5);
  EXPECT_LT(max_abs_diff(sin, emb.sin()), 1e-5);
  // Both halves hold the same values (cat(freqs, freqs)).
  EXPECT_TRUE(at::equal(cos.narrow(-1, 0, 32), cos.narrow(-1, 32, 32)));
  auto [cb, sb] = r.cos_sin(pos, at::kBFloat16);
  EXPECT_EQ(cb.scalar_type(), at::kBFloat16);
  EXPECT_TRUE(at::equal(cb, cos.to(at::kBFloat16)));
}

TEST(Rotary, YarnScalesCosAndSin) {
  Rotary r(yarn_qwen(), 128, 131072);
  auto pos = at::tensor({0, 5}, at::kLong).view({1, 2});
  auto [cos, sin] = r.cos_sin(pos, at::kFloat);
  const double s = r.frequencies().attention_scaling;
  EXPECT_NEAR(cos[0][0][0].item<double>(), s, 1e-6);
  EXPECT_NEAR(sin[0][0][0].item<double>(), 0.0, 1e-12);
}

TEST(Rotary, ApplyAtPositionZeroIsIdentity) {
  for (const auto& c : all_cases()) {
    SCOPED_TRACE(c.name);
    Rotary r(c.params, 128, 4096);
    auto x = randn({2, 3, 4, 128}, 1);
    auto y = r.apply(x, at::zeros({2, 4}, at::kLong));
    // cos(0) = 1, sin(0) = 0: exact, up to yarn's attention scaling of the rotated dims.
    const double s = r.frequencies().attention_scaling;
    const int64_t rd = r.frequencies().rotary_dim;
    EXPECT_EQ(max_abs_diff(y.narrow(-1, 0, rd), x.narrow(-1, 0, rd) * s), 0.0);
    EXPECT_TRUE(at::equal(y.narrow(-1, rd, 128 - rd), x.narrow(-1, rd, 128 - rd)));
  }
}

TEST(Rotary, ApplyMatchesHfFormula) {
  // x * cos + rotate_half(x) * sin in x's dtype with cos/sin cast to x's dtype first.
  Rotary r(llama31(), 128, 131072);
  auto x = randn({1, 2, 5, 128}, 2).to(at::kBFloat16);
  auto pos = at::arange(10, 15, at::kLong).view({1, 5});
  auto [cos, sin] = r.cos_sin(pos, at::kBFloat16);
  auto expected = x * cos.unsqueeze(1) + kvprime::rotate_half(x) * sin.unsqueeze(1);
  auto y = r.apply(x, pos);
  EXPECT_EQ(y.scalar_type(), at::kBFloat16);
  EXPECT_TRUE(at::equal(y, expected));
  // Positions [1, T] broadcast over the batch.
  auto x2 = at::cat({x, x}, 0);
  EXPECT_TRUE(at::equal(r.apply(x2, pos), at::cat({y, y}, 0)));
}

TEST(Rotary, ApplyPreservesNormsOfRotatedPairs) {
  Rotary r(rope(RopeType::Default, 10000.0), 64, 4096);
  auto x = randn({1, 1, 6, 64}, 3);
  auto y = r.apply(x, at::arange(100, 106, at::kLong).view({1, 6}));
  auto pair_norm = [](const at::Tensor& t) {
    return t.narrow(-1, 0, 32).pow(2) + t.narrow(-1, 32, 32).pow(2);
  };
  EXPECT_LT(max_rel_diff(pair_norm(y), pair_norm(x)), 1e-5);
}

// ---------------------------------------------------------------------------------------------
// shift: re-positioning rotated keys.

TEST(Rotary, ShiftOfAppliedEqualsApplyAtShiftedPosition) {
  // Positions stay small so that apply's own float32 angles (p * inv_freq rounded to float32,
  // error ~ |p| * 6e-8) keep both sides within 1e-5 of each other relative to the keys' scale.
  for (const auto& c : all_cases()) {
    SCOPED_TRACE(c.name);
    Rotary r(c.params, 128, 4096);
    const int64_t B = 2, H = 3, S = 7;
    auto x = randn({B, H, S, 128}, 4);
    auto p = randint(0, 32, {B, S}, 5);
    auto d = randint(-16, 17, {B, S}, 6);
    auto k = r.apply(x, p);
    EXPECT_LT(max_rel_diff(r.shift(k, d), r.apply(x, p + d)), 1e-5) << "delta [B, S]";
    auto d1 = randint(-16, 17, {S}, 7);
    EXPECT_LT(max_rel_diff(r.shift(k, d1), r.apply(x, p + d1)), 1e-5) << "delta [S]";
    auto d0 = at::scalar_tensor(9, at::kLong);
    EXPECT_LT(max_rel_diff(r.shift(k, d0), r.apply(x, p + 9)), 1e-5) << "delta 0-dim";
  }
}

TEST(Rotary, ShiftThereAndBackIsIdentity) {
  for (const auto& c : all_cases()) {
    SCOPED_TRACE(c.name);
    Rotary r(c.params, 128, 4096);
    auto k = randn({1, 2, 5, 128}, 8);
    auto d = at::tensor({1000, -3, 0, 77, 4095}, at::kLong);
    auto back = r.shift(r.shift(k, d), -d);
    EXPECT_LT(max_rel_diff(back, k), 1e-6);
    // Partial rotary: the pass-through dims are untouched, bit for bit.
    const int64_t rd = r.frequencies().rotary_dim;
    EXPECT_TRUE(at::equal(r.shift(k, d).narrow(-1, rd, 128 - rd), k.narrow(-1, rd, 128 - rd)));
  }
}

TEST(Rotary, ShiftKeepsDtypeAndIgnoresAttentionScaling) {
  Rotary r(yarn_qwen(), 128, 131072);
  auto k = randn({1, 1, 3, 128}, 9).to(at::kBFloat16);
  auto y = r.shift(k, at::zeros({3}, at::kLong));
  EXPECT_EQ(y.scalar_type(), at::kBFloat16);
  EXPECT_TRUE(at::equal(y, k));  // a zero shift is exact, and no attention_scaling is applied
}

TEST(Rotary, DynamicGrowsOnlyBeyondTheContext) {
  Rotary r(rope(RopeType::Dynamic, 10000.0, 2.0), 64, 128);
  Rotary d(rope(RopeType::Default, 10000.0), 64, 128);
  auto inside = at::arange(0, 128, at::kLong).view({1, 128});
  EXPECT_TRUE(at::equal(r.cos_sin(inside, at::kFloat).first, d.cos_sin(inside, at::kFloat).first));
  auto beyond = at::arange(0, 300, at::kLong).view({1, 300});
  auto grown = compute_rope_frequencies(r.params(), 64, 128, 300).inv_freq;
  auto expected = (beyond.to(at::kFloat).view({300, 1}) * grown.view({1, -1}));
  auto cos = r.cos_sin(beyond, at::kFloat).first[0].narrow(-1, 0, 32);
  EXPECT_LT(max_abs_diff(cos, expected.cos()), 1e-5);
  EXPECT_GT(max_abs_diff(cos, d.cos_sin(beyond, at::kFloat).first[0].narrow(-1, 0, 32)), 1e-2);
}

TEST(Rotary, ConfigLayersBuildRotaries) {
  kvprime::ModelConfig c = kvprime::load_model_config(
      kvprime::test::fixture("configs/llama-3.1-8b-instruct.config.json"));
  Rotary r(c.layers[0].rope, c.head_dim, c.max_position_embeddings);
  EXPECT_EQ(r.frequencies().rotary_dim, 128);
  EXPECT_EQ(r.frequencies().inv_freq.size(0), 64);
}

TEST(Rotary, ShapeErrors) {
  Rotary r(rope(RopeType::Default, 10000.0), 64, 4096);
  auto x = at::zeros({1, 2, 3, 64});
  EXPECT_THROW(r.apply(x, at::zeros({3}, at::kLong)), kvprime::Error);
  EXPECT_THROW(r.apply(x, at::zeros({1, 4}, at::kLong)), kvprime::Error);
  EXPECT_THROW(r.apply(at::zeros({1, 2, 3, 32}), at::zeros({1, 3}, at::kLong)), kvprime::Error);
  EXPECT_THROW(r.cos_sin(at::zeros({1, 3}, at::kFloat), at::kFloat), kvprime::Error);
  EXPECT_THROW(r.shift(x, at::zeros({4}, at::kLong)), kvprime::Error);
  EXPECT_THROW(r.shift(x, at::zeros({2, 3}, at::kLong)), kvprime::Error);
  EXPECT_THROW(r.shift(x, at::zeros({1, 1, 3}, at::kLong)), kvprime::Error);
  EXPECT_THROW(Rotary().cos_sin(at::zeros({1, 3}, at::kLong), at::kFloat), kvprime::Error);
}

TEST(Rotary, CudaMatchesCpu) {
  if (!kvprime::compat::cuda_available()) GTEST_SKIP() << "no CUDA device in this build";
  for (const auto& c : all_cases()) {
    SCOPED_TRACE(c.name);
    Rotary r(c.params, 128, 4096);
    auto x = randn({1, 2, 6, 128}, 10);
    auto p = randint(0, 500, {1, 6}, 11);
    auto d = randint(-100, 100, {1, 6}, 12);
    auto cuda = at::Device(at::kCUDA, 0);
    auto y = r.apply(x.to(cuda), p.to(cuda));
    EXPECT_EQ(y.device(), cuda);
    EXPECT_LT(max_rel_diff(y, r.apply(x, p)), 1e-5);
    auto s = r.shift(y, d.to(cuda));
    EXPECT_EQ(s.device(), cuda);
    EXPECT_LT(max_rel_diff(s, r.shift(r.apply(x, p), d)), 1e-5);
  }
}
