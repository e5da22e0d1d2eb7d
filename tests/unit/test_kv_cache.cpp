// The KV cache object on its own: deep copies, slicing, guarded replacement, metadata.
#include <gtest/gtest.h>

#include <limits>

#include "kvprime/cache/compare.h"
#include "kvprime/cache/kv_cache.h"
#include "kvprime/core/error.h"

using namespace kvprime;

namespace {

ModelIdentity ident(const std::string& fp = "abc") { return {"tiny", fp, 2, 2, 4}; }

KVCache filled(int64_t B, int64_t T) {
  KVCache c(ident(), B, at::kFloat, at::kCPU);
  std::vector<at::Tensor> k, v;
  for (int il = 0; il < 2; ++il) {
    k.push_back(at::randn({B, 2, T, 4}));
    v.push_back(at::randn({B, 2, T, 4}));
  }
  auto pos = at::arange(T, at::kLong).unsqueeze(0).repeat({B, 1});
  c.append(k, v, pos, pos + 100, at::ones({B, T}, at::kBool));
  return c;
}

TEST(KVCache, EmptyCacheHasShapes) {
  KVCache c(ident(), 3, at::kFloat, at::kCPU);
  EXPECT_EQ(c.n_layer(), 2);
  EXPECT_EQ(c.length(), 0);
  EXPECT_EQ(c.key(1).sizes(), (std::vector<int64_t>{3, 2, 0, 4}));
  EXPECT_TRUE(at::equal(c.next_positions(), at::zeros({3}, at::kLong)));
}

TEST(KVCache, CloneIsDeep) {
  auto c = filled(1, 5);
  auto d = c.clone();
  d.key(0).data_ptr<float>()[0] += 1.0f;  // writes through the copy only
  EXPECT_FALSE(at::equal(c.key(0), d.key(0)));
  EXPECT_NE(c.value(1).data_ptr(), d.value(1).data_ptr());
  EXPECT_NE(c.positions().data_ptr(), d.positions().data_ptr());
}

TEST(KVCache, SliceKeepsMetadataAligned) {
  auto c = filled(2, 6);
  auto s = c.slice(2, 5);
  EXPECT_EQ(s.length(), 3);
  EXPECT_TRUE(at::equal(s.key(1), c.key(1).slice(2, 2, 5)));
  EXPECT_TRUE(at::equal(s.positions()[0], at::arange(2, 5, at::kLong)));
  EXPECT_TRUE(at::equal(s.token_ids()[1], at::arange(102, 105, at::kLong)));
  EXPECT_THROW(c.slice(4, 7), Error);
  EXPECT_THROW(c.slice(-1, 2), Error);
}

TEST(KVCache, SetKeyChecksShapeDtypeAndLayer) {
  auto c = filled(1, 4);
  EXPECT_NO_THROW(c.set_key(0, at::zeros({1, 2, 4, 4})));
  EXPECT_TRUE(at::equal(c.key(0), at::zeros({1, 2, 4, 4})));
  EXPECT_THROW(c.set_key(0, at::zeros({1, 2, 3, 4})), Error);
  EXPECT_THROW(c.set_value(1, at::zeros({1, 2, 4, 4}, at::kDouble)), Error);
  EXPECT_THROW(c.set_key(2, at::zeros({1, 2, 4, 4})), Error);
  try {
    c.key(5);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("layer 5 out of range"), std::string::npos);
  }
}

TEST(KVCache, NextPositionsIgnorePadding) {
  KVCache c(ident(), 2, at::kFloat, at::kCPU);
  std::vector<at::Tensor> k(2, at::zeros({2, 2, 3, 4})), v = k;
  auto pos = at::tensor({0, 1, 2, 0, 0, 9}, at::kLong).view({2, 3});
  auto valid = at::tensor({1, 1, 1, 1, 1, 0}, at::kLong).to(at::kBool).view({2, 3});
  c.append(k, v, pos, pos, valid);
  EXPECT_TRUE(at::equal(c.next_positions(), at::tensor({3, 1}, at::kLong)));
}

TEST(KVCache, CompatibilityNamesTheDifference) {
  auto a = filled(1, 4);
  KVCache other(ident("zzz"), 1, at::kFloat, at::kCPU);
  try {
    a.check_compatible(other, "hybrid");
    FAIL();
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("hybrid"), std::string::npos);
    EXPECT_NE(m.find("different models"), std::string::npos);
  }
  EXPECT_THROW(a.check_compatible(filled(1, 5), "x"), Error);  // length
  EXPECT_THROW(a.check_compatible(filled(2, 4), "x"), Error);  // batch
  EXPECT_NO_THROW(a.check_compatible(filled(1, 4), "x"));
}

}  // namespace

TEST(CacheCompare, RelativeL2PerLayerAndNonFiniteRows) {
  const ModelIdentity id{"tiny", "00ff00ff00ff00ff", 2, 2, 4};
  auto make = [&](float scale) {
    KVCache c(id, 2, at::kFloat, at::kCPU);
    std::vector<at::Tensor> k, v;
    for (int il = 0; il < 2; ++il) {
      k.push_back(at::ones({2, 2, 3, 4}) * (il + 1));
      v.push_back(at::ones({2, 2, 3, 4}) * (il + 1) * scale);
    }
    at::Tensor pos = at::arange(3, at::kLong).unsqueeze(0).repeat({2, 1});
    c.append(k, v, pos, pos, at::ones({2, 3}, at::kBool));
    return c;
  };
  const KVCache a = make(1.0f), b = make(1.5f);
  const LayerDistance d = relative_l2_per_layer(a, b);
  ASSERT_EQ(d.key.size(), 2u);
  EXPECT_EQ(d.key[0], 0.0);
  EXPECT_EQ(d.key[1], 0.0);
  EXPECT_NEAR(d.value[0], 0.5, 1e-12);  // |1.5x - x| / |x|
  EXPECT_NEAR(d.value[1], 0.5, 1e-12);
  const KVCache other_model = [&] {
    KVCache c = make(1.0f);
    ModelIdentity o = id;
    o.fingerprint = "1111111111111111";
    return KVCache::from_tensors(o, {c.key(0), c.key(1)}, {c.value(0), c.value(1)}, c.positions(),
                                 c.token_ids(), c.valid());
  }();
  try {
    relative_l2_per_layer(a, other_model, "diff here");
    FAIL() << "caches of two models were compared";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("diff here: caches come from different models"), std::string::npos) << e.what();
  }

  // nonfinite_rows: a NaN in a valid slot marks its row; one in a padding slot does not.
  EXPECT_FALSE(a.nonfinite_rows().any().item<bool>());
  at::Tensor k1 = a.key(1).clone();
  k1[1][0][2][3] = std::numeric_limits<float>::quiet_NaN();
  at::Tensor valid = a.valid().clone();
  KVCache broken = KVCache::from_tensors(id, {a.key(0), k1}, {a.value(0), a.value(1)}, a.positions(),
                                         a.token_ids(), valid);
  at::Tensor bad = broken.nonfinite_rows();
  EXPECT_FALSE(bad[0].item<bool>());
  EXPECT_TRUE(bad[1].item<bool>());
  valid[1][2] = false;  // the NaN's slot becomes padding
  KVCache padded = KVCache::from_tensors(id, {a.key(0), k1}, {a.value(0), a.value(1)}, a.positions(),
                                         a.token_ids(), valid);
  EXPECT_FALSE(padded.nonfinite_rows().any().item<bool>());
  at::Tensor v0 = a.value(0).clone();
  v0[0][1][0][0] = -std::numeric_limits<float>::infinity();
  EXPECT_TRUE(KVCache::from_tensors(id, {a.key(0), a.key(1)}, {v0, a.value(1)}, a.positions(), a.token_ids(),
                                    a.valid()).nonfinite_rows()[0].item<bool>());
}
