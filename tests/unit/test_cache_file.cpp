// Cache files: a save/load round trip is bit-exact, and every way a file can be wrong (another
// model, a truncated file, a missing tensor, a foreign safetensors file, edited metadata) is a
// clear error naming the file — never a crash or a silently wrong cache.
#include <gtest/gtest.h>

#include "kvprime/cache/cache_file.h"
#include "kvprime/core/version.h"
#include "kvprime/core/error.h"
#include "kvprime/io/safetensors.h"
#include "test_support.h"

#include <filesystem>

using namespace kvprime;
using kvprime::test::TempDir;

using kvprime::test::expect_error_with;

namespace {

ModelIdentity ident(const std::string& fp = "00ff00ff00ff00ff") { return {"tiny", fp, 3, 2, 4}; }

KVCache filled(int64_t B, int64_t T, at::ScalarType dtype = at::kFloat) {
  KVCache c(ident(), B, dtype, at::kCPU);
  std::vector<at::Tensor> k, v;
  for (int il = 0; il < 3; ++il) {
    k.push_back(at::randn({B, 2, T, 4}).to(dtype));
    v.push_back(at::randn({B, 2, T, 4}).to(dtype));
  }
  auto pos = at::arange(T, at::kLong).unsqueeze(0).repeat({B, 1}) + 7;
  auto valid = at::ones({B, T}, at::kBool);
  if (B > 1) valid[1][0] = false;
  c.append(k, v, pos, pos * 3, valid);
  return c;
}

void expect_same(const KVCache& a, const KVCache& b) {
  ASSERT_EQ(a.n_layer(), b.n_layer());
  EXPECT_EQ(a.model(), b.model());
  EXPECT_EQ(a.model().name, b.model().name);
  EXPECT_EQ(a.dtype(), b.dtype());
  for (int64_t il = 0; il < a.n_layer(); ++il) {
    EXPECT_TRUE(at::equal(a.key(il), b.key(il))) << "layer " << il;
    EXPECT_TRUE(at::equal(a.value(il), b.value(il))) << "layer " << il;
  }
  EXPECT_TRUE(at::equal(a.positions(), b.positions()));
  EXPECT_TRUE(at::equal(a.token_ids(), b.token_ids()));
  EXPECT_TRUE(at::equal(a.valid(), b.valid()));
}

TEST(CacheFile, RoundTripIsBitExactWithMetadata) {
  TempDir tmp;
  for (auto dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
    KVCache c = filled(2, 5, dtype);
    const std::string path = tmp.file("c.safetensors");
    save_cache(path, c, {{"document", "doc-17"}, {"prefix", "a surrogate"}});
    LoadedCache l = load_cache(path);
    expect_same(c, l.cache);
    EXPECT_EQ(l.user_metadata.size(), 2u);
    EXPECT_EQ(l.user_metadata.at("document"), "doc-17");
    EXPECT_EQ(l.user_metadata.at("prefix"), "a surrogate");
    // The file is self-describing for other readers too.
    auto f = SafeTensorsFile::open(path);
    EXPECT_EQ(f.metadata().at("format"), "kvprime.kvcache");
    EXPECT_EQ(f.metadata().at("model_fingerprint"), ident().fingerprint);
    EXPECT_EQ(f.metadata().at("length"), "5");
  }
}

TEST(CacheFile, LoadedCacheDoesNotAliasTheFile) {
  TempDir tmp;
  KVCache c = filled(1, 4);
  save_cache(tmp.file("a.safetensors"), c);
  LoadedCache l = load_cache(tmp.file("a.safetensors"));
  // Overwriting the file (atomically, as save_cache does) leaves the loaded cache as it was.
  save_cache(tmp.file("a.safetensors"), filled(1, 4));
  expect_same(c, l.cache);
  // And the loaded tensors are writable memory of their own (not the read-only mapping).
  l.cache.key(0).data_ptr<float>()[0] += 1.0f;
  EXPECT_FALSE(at::equal(c.key(0), l.cache.key(0)));
}

TEST(CacheFile, EmptyCacheRoundTrips) {
  TempDir tmp;
  KVCache c(ident(), 1, at::kFloat, at::kCPU);
  save_cache(tmp.file("e.safetensors"), c);
  LoadedCache l = load_cache(tmp.file("e.safetensors"));
  EXPECT_EQ(l.cache.length(), 0);
  EXPECT_EQ(l.cache.n_layer(), 3);
}

TEST(CacheFile, RefusesACacheOfAnotherModel) {
  TempDir tmp;
  save_cache(tmp.file("c.safetensors"), filled(1, 3));
  EXPECT_NO_THROW(load_cache_for(tmp.file("c.safetensors"), ident()));
  ModelIdentity other = ident("1234123412341234");
  other.name = "other";
  expect_error_with([&] { load_cache_for(tmp.file("c.safetensors"), other); },
                    {"c.safetensors", "tiny", "other", "1234123412341234", "rebuild"});
}

TEST(CacheFile, TruncatedFileIsAClearError) {
  TempDir tmp;
  save_cache(tmp.file("c.safetensors"), filled(1, 6));
  std::string bytes = kvprime::test::read_file(tmp.file("c.safetensors"));
  kvprime::test::write_file(tmp.file("t.safetensors"), bytes.substr(0, bytes.size() - 40));
  expect_error_with([&] { load_cache(tmp.file("t.safetensors")); }, {"t.safetensors"});
  kvprime::test::write_file(tmp.file("h.safetensors"), bytes.substr(0, 5));
  expect_error_with([&] { load_cache(tmp.file("h.safetensors")); }, {"h.safetensors"});
}

TEST(CacheFile, ForeignOrEditedFilesAreRefused) {
  TempDir tmp;
  // A safetensors file that is not a cache (say, model weights).
  save_safetensors(tmp.file("w.safetensors"), {{"model.embed_tokens.weight", at::zeros({4, 2})}});
  expect_error_with([&] { load_cache(tmp.file("w.safetensors")); },
                    {"w.safetensors", "not a kvprime cache"});

  KVCache c = filled(1, 3);
  auto tensors_of = [&](int64_t layers) {
    std::vector<std::pair<std::string, at::Tensor>> t;
    for (int64_t il = 0; il < layers; ++il) {
      t.emplace_back("k." + std::to_string(il), c.key(il));
      t.emplace_back("v." + std::to_string(il), c.value(il));
    }
    t.emplace_back("positions", c.positions());
    t.emplace_back("token_ids", c.token_ids());
    t.emplace_back("valid", c.valid().to(at::kLong));
    return t;
  };
  std::map<std::string, std::string> m{{"format", "kvprime.kvcache"}, {"format_version", "2"},
                                       {"model_name", "tiny"}, {"model_fingerprint", "00ff00ff00ff00ff"},
                                       {"n_layer", "3"}, {"n_head_kv", "2"}, {"head_dim", "4"},
                                       {"dtype", "float32"}, {"batch", "1"}, {"length", "3"}};
  m["checksum"] = cache_checksum(tensors_of(3));
  save_safetensors(tmp.file("ok.safetensors"), tensors_of(3), m);
  EXPECT_NO_THROW(load_cache(tmp.file("ok.safetensors")));

  auto m0 = m;
  m0.erase("checksum");
  save_safetensors(tmp.file("nosum.safetensors"), tensors_of(3), m0);
  expect_error_with([&] { load_cache(tmp.file("nosum.safetensors")); }, {"nosum.safetensors", "checksum"});
  auto m1 = m;
  m1["format_version"] = "1";  // what kvprime 0.1 wrote: no checksum
  save_safetensors(tmp.file("v1.safetensors"), tensors_of(3), m1);
  expect_error_with([&] { load_cache(tmp.file("v1.safetensors")); },
                    {"v1.safetensors", "format_version 1", "reads version 2", "rebuild"});

  save_safetensors(tmp.file("missing.safetensors"), tensors_of(2), m);  // layer 2 missing
  expect_error_with([&] { load_cache(tmp.file("missing.safetensors")); },
                    {"missing.safetensors", "k.2"});

  auto m2 = m;
  m2["dtype"] = "bfloat16";  // metadata disagrees with the stored float32 tensors
  save_safetensors(tmp.file("dtype.safetensors"), tensors_of(3), m2);
  expect_error_with([&] { load_cache(tmp.file("dtype.safetensors")); }, {"dtype.safetensors", "k.0"});

  auto m3 = m;
  m3["head_dim"] = "8";  // shapes disagree with the metadata
  save_safetensors(tmp.file("shape.safetensors"), tensors_of(3), m3);
  expect_error_with([&] { load_cache(tmp.file("shape.safetensors")); }, {"shape.safetensors", "shape"});

  auto m4 = m;
  m4["format_version"] = "99";
  save_safetensors(tmp.file("v.safetensors"), tensors_of(3), m4);
  expect_error_with([&] { load_cache(tmp.file("v.safetensors")); }, {"v.safetensors", "format_version"});

  auto m5 = m;
  m5["length"] = "seven";
  save_safetensors(tmp.file("len.safetensors"), tensors_of(3), m5);
  expect_error_with([&] { load_cache(tmp.file("len.safetensors")); }, {"len.safetensors", "length"});

  auto t6 = tensors_of(3);
  t6.back().second = at::full({1, 3}, 2, at::kLong);  // valid must be 0/1
  save_safetensors(tmp.file("valid.safetensors"), t6, m);
  expect_error_with([&] { load_cache(tmp.file("valid.safetensors")); }, {"valid.safetensors", "valid"});
}

TEST(CacheFile, CorruptedDataIsRefusedByTheChecksum) {
  TempDir tmp;
  const std::string path = tmp.file("c.safetensors");
  save_cache(path, filled(2, 5), {{"document", "d"}});
  const auto f = SafeTensorsFile::open(path);
  EXPECT_EQ(f.metadata().at("checksum").rfind("fnv1a64:", 0), 0u);
  EXPECT_EQ(f.metadata().at("kvprime_version"), kVersion);
  const uint64_t data_start = f.mapped_size() - (f.tensors().back().end);  // no trailing bytes
  const TensorInfo k1 = f.info("k.1");
  const std::string good = kvprime::test::read_file(path);
  // One flipped bit in the middle of layer 1's keys: shapes, dtypes and metadata all still agree.
  std::string bad = good;
  bad[data_start + (k1.begin + k1.end) / 2] ^= 0x10;
  kvprime::test::write_file(tmp.file("bad.safetensors"), bad);
  expect_error_with([&] { load_cache(tmp.file("bad.safetensors")); },
                    {"bad.safetensors", "corrupted", "checksum", "rebuild"});
  EXPECT_NO_THROW(load_cache(path));
  // The checksum is of the tensors only: the same cache with other user metadata has the same one,
  // another cache another one.
  const KVCache c = load_cache(path).cache;
  save_cache(tmp.file("same.safetensors"), c, {{"note", "other metadata"}});
  EXPECT_EQ(SafeTensorsFile::open(tmp.file("same.safetensors")).metadata().at("checksum"),
            f.metadata().at("checksum"));
  save_cache(tmp.file("other.safetensors"), filled(2, 5));
  EXPECT_NE(SafeTensorsFile::open(tmp.file("other.safetensors")).metadata().at("checksum"),
            f.metadata().at("checksum"));
}

TEST(CacheFile, MissingFileNamesThePath) {
  expect_error_with([&] { load_cache("/nonexistent/dir/c.safetensors"); },
                    {"/nonexistent/dir/c.safetensors"});
}

TEST(CacheFile, FromTensorsChecksEveryShape) {
  KVCache c = filled(1, 3);
  std::vector<at::Tensor> k{c.key(0), c.key(1), c.key(2)}, v{c.value(0), c.value(1), c.value(2)};
  EXPECT_NO_THROW(KVCache::from_tensors(ident(), k, v, c.positions(), c.token_ids(), c.valid()));
  auto k_short = k;
  k_short.pop_back();
  expect_error_with([&] { KVCache::from_tensors(ident(), k_short, v, c.positions(), c.token_ids(), c.valid(), "here"); },
                    {"here", "3 layers"});
  auto k_bad = k;
  k_bad[1] = at::zeros({1, 2, 4, 4});
  expect_error_with([&] { KVCache::from_tensors(ident(), k_bad, v, c.positions(), c.token_ids(), c.valid(), "here"); },
                    {"here", "layer 1"});
  auto v_dtype = v;
  v_dtype[2] = v[2].to(at::kHalf);
  expect_error_with([&] { KVCache::from_tensors(ident(), k, v_dtype, c.positions(), c.token_ids(), c.valid(), "here"); },
                    {"here", "layer 2", "float16"});
  expect_error_with([&] { KVCache::from_tensors(ident(), k, v, c.positions(), c.token_ids(), c.valid().to(at::kLong), "here"); },
                    {"here", "valid"});
}

}  // namespace
