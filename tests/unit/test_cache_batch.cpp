// Batching caches: stacking left-pads rows of different lengths and splitting gives the rows back
// exactly; caches that cannot be batched (other model, dtype, already batched) are refused.
#include <gtest/gtest.h>

#include "kvprime/cache/batch.h"
#include "kvprime/core/error.h"

using namespace kvprime;

namespace {

ModelIdentity ident(const std::string& fp = "abc") { return {"tiny", fp, 2, 2, 4}; }

KVCache row(int64_t T, int64_t first_pos, const std::string& fp = "abc",
            at::ScalarType dtype = at::kFloat) {
  KVCache c(ident(fp), 1, dtype, at::kCPU);
  std::vector<at::Tensor> k, v;
  for (int il = 0; il < 2; ++il) {
    k.push_back(at::randn({1, 2, T, 4}).to(dtype));
    v.push_back(at::randn({1, 2, T, 4}).to(dtype));
  }
  auto pos = at::arange(first_pos, first_pos + T, at::kLong).unsqueeze(0);
  c.append(k, v, pos, pos + 50, at::ones({1, T}, at::kBool));
  return c;
}

void expect_same(const KVCache& a, const KVCache& b) {
  ASSERT_EQ(a.length(), b.length());
  for (int64_t il = 0; il < a.n_layer(); ++il) {
    EXPECT_TRUE(at::equal(a.key(il), b.key(il)));
    EXPECT_TRUE(at::equal(a.value(il), b.value(il)));
  }
  EXPECT_TRUE(at::equal(a.positions(), b.positions()));
  EXPECT_TRUE(at::equal(a.token_ids(), b.token_ids()));
  EXPECT_TRUE(at::equal(a.valid(), b.valid()));
}

TEST(CacheBatch, StackLeftPadsAndUnstackRestores) {
  std::vector<KVCache> rows{row(3, 0), row(6, 10), row(1, 4)};
  KVCache s = stack_caches(rows);
  EXPECT_EQ(s.batch(), 3);
  EXPECT_EQ(s.length(), 6);
  // Row 0 has 3 padding slots on the left: invalid, zero K/V, token -1, position 0.
  auto v0 = s.valid()[0];
  EXPECT_FALSE(v0[0].item<bool>());
  EXPECT_FALSE(v0[2].item<bool>());
  EXPECT_TRUE(v0[3].item<bool>());
  EXPECT_EQ(s.token_ids()[0][1].item<int64_t>(), -1);
  EXPECT_EQ(s.positions()[0][2].item<int64_t>(), 0);
  EXPECT_EQ(s.key(1)[0].slice(1, 0, 3).abs().sum().item<float>(), 0.0f);
  EXPECT_TRUE(at::equal(s.key(1)[0].slice(1, 3, 6), rows[0].key(1)[0]));
  // Real slots end at the last slot for every row (left padding).
  EXPECT_TRUE(s.valid().select(1, 5).all().item<bool>());
  // next_positions ignores padding.
  EXPECT_TRUE(at::equal(s.next_positions(), at::tensor({3, 16, 5}, at::kLong)));

  auto back = unstack_cache(s);
  ASSERT_EQ(back.size(), 3u);
  for (size_t i = 0; i < 3; ++i) expect_same(back[i], rows[i]);
  expect_same(cache_row(s, 1), rows[1]);
}

TEST(CacheBatch, CacheRowKeepsOnlyValidSlots) {
  KVCache s = stack_caches(std::vector<KVCache>{row(2, 0), row(5, 0)});
  KVCache r = cache_row(s, 0);
  EXPECT_EQ(r.length(), 2);
  EXPECT_TRUE(r.valid().all().item<bool>());
  EXPECT_THROW(cache_row(s, 2), Error);
  EXPECT_THROW(cache_row(s, -1), Error);
}

TEST(CacheBatch, RefusesCachesThatCannotBeBatched) {
  EXPECT_THROW(stack_caches(std::vector<KVCache>{}), Error);
  try {
    stack_caches(std::vector<KVCache>{row(2, 0), row(2, 0, "other")});
    FAIL() << "expected an error for caches of two models";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("same model"), std::string::npos) << e.what();
  }
  EXPECT_THROW(stack_caches(std::vector<KVCache>{row(2, 0), row(2, 0, "abc", at::kHalf)}), Error);
  KVCache two = stack_caches(std::vector<KVCache>{row(2, 0), row(2, 0)});
  EXPECT_THROW(stack_caches(std::vector<KVCache>{two}), Error);  // already batched
}

TEST(CacheBatch, StackedCacheIsIndependentOfItsRows) {
  std::vector<KVCache> rows{row(2, 0), row(3, 0)};
  KVCache s = stack_caches(rows);
  KVCache before = rows[0].clone();
  s.key(0).data_ptr<float>()[0] += 100.0f;
  expect_same(rows[0], before);
}

}  // namespace
