// safetensors reader/writer and Hugging Face checkpoint directories: round trips, zero-copy views,
// a hand-written reference file, the writer's exact bytes, and every kind of bad input.
#include <sys/resource.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <string>

#include "kvprime/core/error.h"
#include "kvprime/io/safetensors.h"
#include "test_support.h"

namespace kvprime {
namespace {

using test::TempDir;
using test::write_file;

// ---- helpers --------------------------------------------------------------------------------

std::string u64le(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  return s;
}

// A safetensors file from a header text (unpadded) and raw data bytes.
std::string st_bytes(const std::string& header, const std::string& data) {
  return u64le(header.size()) + header + data;
}

// The message of the kvprime::Error `f` throws; records a failure if it throws nothing.
std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a kvprime::Error, none was thrown";
  return {};
}

void expect_mentions(const std::string& msg, std::initializer_list<std::string> words) {
  for (const auto& w : words)
    EXPECT_NE(msg.find(w), std::string::npos) << "message lacks '" << w << "':\n  " << msg;
}

bool proc_maps_mention(const std::string& path) {
  return test::read_file("/proc/self/maps").find(path) != std::string::npos;
}

// ---- round trips ----------------------------------------------------------------------------

TEST(SafeTensors, RoundTripsEveryDtype) {
  TempDir dir;
  const std::string path = dir.file("all.safetensors");
  at::manual_seed(0);
  const auto f32 = at::randn({2, 3});
  std::vector<std::pair<std::string, at::Tensor>> in = {
      {"f64", at::randn({2, 3}, at::kDouble)},
      {"f32", f32},
      {"f16", at::randn({4}).to(at::kHalf)},
      {"bf16", at::randn({3, 1, 2}).to(at::kBFloat16)},
      {"i64", at::tensor({int64_t{1} << 40, int64_t{-5}, int64_t{0}}, at::kLong)},
      {"i32", at::randint(-1000, 1000, {5}, at::kInt)},
      {"i16", at::randint(-30000, 30000, {2, 2}, at::kShort)},
      {"i8", at::randint(-128, 127, {7}, at::kChar)},
      {"u8", at::randint(0, 255, {3}, at::kByte)},
      {"bool", at::randn({9}) > 0},
      {"scalar", at::scalar_tensor(3.25, at::kFloat)},  // 0-dim
      {"empty", at::empty({0, 4}, at::kFloat)},
      {"empty_bf16", at::empty({3, 0}, at::kBFloat16)},
      {"transposed", f32.t()},  // not contiguous: saved as its logical values
  };
  save_safetensors(path, in);
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));

  const auto f = SafeTensorsFile::open(path);
  ASSERT_EQ(f.tensors().size(), in.size());
  const std::map<std::string, std::string> names = {
      {"f64", "F64"}, {"f32", "F32"}, {"f16", "F16"}, {"bf16", "BF16"}, {"i64", "I64"},
      {"i32", "I32"}, {"i16", "I16"}, {"i8", "I8"},   {"u8", "U8"},     {"bool", "BOOL"}};
  for (const auto& [name, t] : in) {
    SCOPED_TRACE(name);
    const at::Tensor got = f.tensor(name);
    EXPECT_EQ(got.scalar_type(), t.scalar_type());
    EXPECT_EQ(got.sizes().vec(), t.sizes().vec());
    EXPECT_TRUE(at::equal(got, t));
    EXPECT_EQ(f.info(name).shape, t.sizes().vec());
    if (names.count(name)) EXPECT_EQ(f.info(name).dtype, names.at(name));
  }
  EXPECT_EQ(f.tensor("scalar").dim(), 0);
  EXPECT_EQ(f.tensor("scalar").item<float>(), 3.25f);
  // tensors() is in data order, which our writer makes the given order.
  for (size_t i = 0; i < in.size(); ++i) EXPECT_EQ(f.tensors()[i].name, in[i].first);
  EXPECT_TRUE(f.metadata().empty());
}

TEST(SafeTensors, RoundTripsMetadata) {
  TempDir dir;
  const std::string path = dir.file("meta.safetensors");
  const std::map<std::string, std::string> meta = {{"format", "pt"},
                                                   {"empty", ""},
                                                   {"unicode", "h\xc3\xa9llo \xe2\x9c\x93"},
                                                   {"quote", "a\"b\\c\n"}};
  save_safetensors(path, {{"x", at::ones({2})}}, meta);
  const auto f = SafeTensorsFile::open(path);
  EXPECT_EQ(f.metadata(), meta);
  EXPECT_TRUE(at::equal(f.tensor("x"), at::ones({2})));
}

TEST(SafeTensors, SaveOverwritesAtomically) {
  TempDir dir;
  const std::string path = dir.file("x.safetensors");
  save_safetensors(path, {{"a", at::zeros({2})}});
  save_safetensors(path, {{"b", at::ones({3})}});
  const auto f = SafeTensorsFile::open(path);
  EXPECT_FALSE(f.contains("a"));
  EXPECT_TRUE(at::equal(f.tensor("b"), at::ones({3})));
}

// ---- zero copy ------------------------------------------------------------------------------

TEST(SafeTensors, TensorsAreZeroCopyViewsThatKeepTheFileMapped) {
  TempDir dir;
  const std::string path = dir.file("zc.safetensors");
  const auto expected = at::arange(16, at::kFloat).reshape({4, 4});
  save_safetensors(path, {{"x", expected}});

  at::Tensor t;
  {
    const auto f = SafeTensorsFile::open(path);
    t = f.tensor("x");
    const auto* p = static_cast<const uint8_t*>(t.data_ptr());
    EXPECT_GE(p, f.mapped_data());
    EXPECT_LE(p + t.nbytes(), f.mapped_data() + f.mapped_size());
    // A second view shares the same bytes.
    EXPECT_EQ(f.tensor("x").data_ptr(), t.data_ptr());
  }
  // The SafeTensorsFile is gone; the tensor still owns the mapping.
  EXPECT_TRUE(at::equal(t, expected));
  EXPECT_TRUE(proc_maps_mention(path));
  t.reset();
  EXPECT_FALSE(proc_maps_mention(path)) << "the mapping should go with the last tensor";
}

TEST(SafeTensors, UnalignedDataIsCopiedToAlignedMemory) {
  TempDir dir;
  const std::string path = dir.file("unaligned.safetensors");
  // The writer packs in the given order: 3 bool bytes put the float32 data at offset 3.
  const auto flags = at::tensor({1, 0, 1}, at::kInt).to(at::kBool);
  const auto values = at::tensor({1.5f, -2.0f, 8.0f});
  save_safetensors(path, {{"flags", flags}, {"values", values}});
  const auto f = SafeTensorsFile::open(path);
  EXPECT_EQ(f.info("values").begin, 3u);
  const at::Tensor v = f.tensor("values");
  EXPECT_TRUE(at::equal(v, values));
  EXPECT_EQ(reinterpret_cast<uintptr_t>(v.data_ptr()) % alignof(float), 0u);
  const auto* p = static_cast<const uint8_t*>(v.data_ptr());
  EXPECT_TRUE(p < f.mapped_data() || p >= f.mapped_data() + f.mapped_size()) << "expected a copy";
  // The bool tensor (alignment 1) is still a view.
  const auto* q = static_cast<const uint8_t*>(f.tensor("flags").data_ptr());
  EXPECT_TRUE(q >= f.mapped_data() && q < f.mapped_data() + f.mapped_size());
  EXPECT_TRUE(at::equal(f.tensor("flags"), flags));
}

// ---- the format itself, checked against the spec rather than our own writer -----------------

TEST(SafeTensors, ReadsAHandWrittenReferenceFile) {
  // Header written by hand per the spec: 364 bytes of JSON + 4 spaces = 368 = 0x170.
  const std::string header = R"({"__metadata__":{"format":"pt"},)"
                             R"("w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                             R"("i":{"dtype":"I16","shape":[1,2],"data_offsets":[8,12]},)"
                             R"("h":{"dtype":"F16","shape":[],"data_offsets":[12,14]},)"
                             R"("b":{"dtype":"BF16","shape":[1],"data_offsets":[14,16]},)"
                             R"("m":{"dtype":"BOOL","shape":[2],"data_offsets":[16,18]},)"
                             R"("e":{"dtype":"I64","shape":[0,3],"data_offsets":[18,18]}})"
                             "    ";
  ASSERT_EQ(header.size(), 368u) << "the hand-computed length prefix below is wrong";
  const std::string bytes = std::string("\x70\x01\x00\x00\x00\x00\x00\x00", 8) + header +
                            std::string(
                                "\x00\x00\x80\x3f"  // w[0] = 1.0f
                                "\x00\x00\x00\xc0"  // w[1] = -2.0f
                                "\x01\x00"          // i[0][0] = 1
                                "\xff\xff"          // i[0][1] = -1
                                "\x00\xc1"          // h = -2.5 (half 0xC100)
                                "\xc0\x3f"          // b[0] = 1.5 (bfloat16 0x3FC0)
                                "\x01\x00",         // m = {true, false}
                                18);
  TempDir dir;
  const std::string path = dir.file("reference.safetensors");
  write_file(path, bytes);

  const auto f = SafeTensorsFile::open(path);
  EXPECT_EQ(f.metadata(), (std::map<std::string, std::string>{{"format", "pt"}}));
  ASSERT_EQ(f.tensors().size(), 6u);
  EXPECT_EQ(f.tensors()[0].name, "w");  // data order, not the header's key order
  EXPECT_EQ(f.tensors()[5].name, "e");

  EXPECT_TRUE(at::equal(f.tensor("w"), at::tensor({1.0f, -2.0f})));
  EXPECT_TRUE(at::equal(f.tensor("i"), at::tensor({1, -1}, at::kShort).reshape({1, 2})));
  const at::Tensor h = f.tensor("h");
  EXPECT_EQ(h.scalar_type(), at::kHalf);
  EXPECT_EQ(h.dim(), 0);
  EXPECT_EQ(h.item<float>(), -2.5f);
  const at::Tensor b = f.tensor("b");
  EXPECT_EQ(b.scalar_type(), at::kBFloat16);
  EXPECT_EQ(b.to(at::kFloat).item<float>(), 1.5f);
  const at::Tensor m = f.tensor("m");
  EXPECT_EQ(m.scalar_type(), at::kBool);
  EXPECT_TRUE(m[0].item<bool>());
  EXPECT_FALSE(m[1].item<bool>());
  const at::Tensor e = f.tensor("e");
  EXPECT_EQ(e.scalar_type(), at::kLong);
  EXPECT_EQ(e.sizes().vec(), (std::vector<int64_t>{0, 3}));
}

TEST(SafeTensors, WriterProducesTheSpecBytes) {
  TempDir dir;
  const std::string path = dir.file("w.safetensors");
  save_safetensors(path, {{"a", at::tensor({1.0f, -2.0f})}});
  // 54 bytes of compact JSON padded with 2 spaces to 56 = 0x38, then the little-endian floats.
  const std::string expected = std::string("\x38\x00\x00\x00\x00\x00\x00\x00", 8) +
                               R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}  )" +
                               std::string("\x00\x00\x80\x3f\x00\x00\x00\xc0", 8);
  EXPECT_EQ(test::read_file(path), expected);
}

TEST(SafeTensors, AcceptsGapsAndTrailingBytes) {
  // The spec's reference writer never leaves holes, but a padding writer may; nothing is aliased.
  TempDir dir;
  const std::string path = dir.file("gaps.safetensors");
  write_file(path, st_bytes(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[4,6]}})",
                            std::string("\x09\x09\x09\x09\x07\x08\x09\x09", 8)));
  EXPECT_TRUE(at::equal(SafeTensorsFile::open(path).tensor("a"), at::tensor({7, 8}, at::kByte)));
}

// ---- bad input ------------------------------------------------------------------------------

struct BadFile {
  const char* name;
  std::string bytes;
  std::vector<std::string> words;  // the message must mention each (besides the path)
};

std::vector<BadFile> bad_files() {
  const std::string f32x2 = std::string(8, '\0');
  return {
      {"shorter_than_8_bytes", "abc", {"only 3 bytes", "shorter than the 8-byte", "corrupt"}},
      {"empty_file", "", {"only 0 bytes", "shorter"}},
      {"header_length_beyond_file", u64le(100) + "{}", {"header length", "100 bytes", "only 2"}},
      {"absurd_header_length", u64le(uint64_t{1} << 62) + "{}", {"header length", "limit"}},
      {"header_not_json", st_bytes("{\"a\": nope", ""), {"not valid JSON", "re-download"}},
      {"header_not_utf8", st_bytes("{\"\xff\":{}}", ""), {"not valid JSON"}},
      {"header_not_object", st_bytes("[1, 2]", ""), {"JSON object", "found a JSON array"}},
      {"duplicate_tensor_name",
       st_bytes(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                R"("a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})",
                "xy"),
       {"'a'", "twice"}},
      {"entry_not_object", st_bytes(R"({"a": 5})", ""), {"tensor 'a'", "expected an object"}},
      {"unknown_dtype_fp8",
       st_bytes(R"({"w":{"dtype":"F8_E4M3","shape":[1],"data_offsets":[0,1]}})", "x"),
       {"tensor 'w'", "dtype 'F8_E4M3'", "not supported", "BF16"}},
      {"garbage_dtype",
       st_bytes(R"({"w":{"dtype":"float32","shape":[1],"data_offsets":[0,4]}})", "xxxx"),
       {"tensor 'w'", "dtype 'float32'"}},
      {"dtype_missing",
       st_bytes(R"({"w":{"shape":[1],"data_offsets":[0,4]}})", "xxxx"),
       {"tensor 'w'", "\"dtype\" is missing"}},
      {"shape_times_dtype_not_range",
       st_bytes(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", "xxxx"),
       {"tensor 'w'", "needs 8 bytes", "spans 4 bytes"}},
      {"range_beyond_data",
       st_bytes(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", f32x2),
       {"tensor 'w'", "beyond the end of the data section", "only 8 bytes"}},
      {"overlapping_ranges",
       st_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                std::string(12, '\0')),
       {"'a'", "'b'", "overlap"}},
      {"identical_ranges",
       st_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                R"("b":{"dtype":"I32","shape":[1],"data_offsets":[0,4]}})",
                std::string(4, '\0')),
       {"'a'", "'b'", "overlap"}},
      {"negative_shape",
       st_bytes(R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", f32x2),
       {"tensor 'w'", "shape", "negative -2"}},
      {"fractional_shape",
       st_bytes(R"({"w":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}})", f32x2),
       {"tensor 'w'", "shape", "non-negative integer"}},
      {"shape_overflows",
       st_bytes(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})",
                f32x2),
       {"tensor 'w'", "overflows"}},
      {"begin_after_end",
       st_bytes(R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", f32x2),
       {"tensor 'w'", "end before they begin"}},
      {"offsets_not_a_pair",
       st_bytes(R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[0]}})", ""),
       {"tensor 'w'", "data_offsets", "[begin, end]"}},
      {"metadata_not_strings",
       st_bytes(R"({"__metadata__":{"format":"pt","step":3}})", ""),
       {"__metadata__", "'step'", "must be a string"}},
      {"metadata_not_object",
       st_bytes(R"({"__metadata__":["pt"]})", ""),
       {"__metadata__", "must be an object"}},
      {"truncated_data",
       st_bytes(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})",
                std::string(10, '\0')),
       {"tensor 'w'", "only 10 bytes", "truncated"}},
  };
}

TEST(SafeTensors, RejectsBadFilesWithClearMessages) {
  TempDir dir;
  for (const BadFile& bad : bad_files()) {
    SCOPED_TRACE(bad.name);
    const std::string path = dir.file(std::string(bad.name) + ".safetensors");
    write_file(path, bad.bytes);
    const std::string msg = error_of([&] { SafeTensorsFile::open(path); });
    expect_mentions(msg, {path});
    for (const auto& w : bad.words) expect_mentions(msg, {w});
  }
}

TEST(SafeTensors, TruncatedCopyOfAValidFileIsRejected) {
  TempDir dir;
  const std::string good = dir.file("good.safetensors");
  save_safetensors(good, {{"a", at::ones({4, 4})}, {"b", at::ones({8})}});
  const std::string bytes = test::read_file(good);
  const std::string cut = dir.file("cut.safetensors");
  write_file(cut, bytes.substr(0, bytes.size() - 5));
  expect_mentions(error_of([&] { SafeTensorsFile::open(cut); }), {cut, "tensor 'b'", "truncated"});
}

TEST(SafeTensors, RejectsBoolBytesOtherThanZeroOrOne) {
  TempDir dir;
  const std::string path = dir.file("bool.safetensors");
  write_file(path, st_bytes(R"({"m":{"dtype":"BOOL","shape":[3],"data_offsets":[0,3]}})",
                            std::string("\x01\x00\x02", 3)));
  const auto f = SafeTensorsFile::open(path);  // the header is fine; the data is checked on use
  expect_mentions(error_of([&] { f.tensor("m"); }), {path, "tensor 'm'", "element 2", "0 or 1"});
}

TEST(SafeTensors, MissingFileAndMissingTensor) {
  TempDir dir;
  const std::string nowhere = dir.file("nope.safetensors");
  expect_mentions(error_of([&] { SafeTensorsFile::open(nowhere); }), {nowhere, "No such file"});
  expect_mentions(error_of([&] { SafeTensorsFile::open(dir.path()); }),
                  {dir.path(), "not a regular file"});

  const std::string path = dir.file("x.safetensors");
  save_safetensors(path, {{"alpha", at::ones({1})}});
  const auto f = SafeTensorsFile::open(path);
  EXPECT_TRUE(f.contains("alpha"));
  EXPECT_FALSE(f.contains("beta"));
  expect_mentions(error_of([&] { f.info("beta"); }), {path, "no tensor 'beta'", "'alpha'"});
  expect_mentions(error_of([&] { f.tensor("beta"); }), {path, "'beta'"});
}

// ---- writer errors --------------------------------------------------------------------------

TEST(SafeTensors, SaveRejectsBadRequests) {
  TempDir dir;
  const std::string path = dir.file("bad.safetensors");
  expect_mentions(error_of([&] {
                    save_safetensors(path, {{"a", at::ones({1})}, {"a", at::zeros({1})}});
                  }),
                  {path, "'a'", "twice"});
  expect_mentions(error_of([&] {
                    save_safetensors(path, {{"__metadata__", at::ones({1})}});
                  }),
                  {path, "reserved"});
  expect_mentions(error_of([&] {
                    save_safetensors(path, {{"c", at::ones({2}, at::kComplexFloat)}});
                  }),
                  {path, "tensor 'c'", "cannot store"});
  expect_mentions(error_of([&] {
                    save_safetensors(path, {{"u", at::Tensor()}});
                  }),
                  {path, "'u'", "undefined"});
  expect_mentions(error_of([&] {
                    save_safetensors(path, {{"\xff", at::ones({1})}});
                  }),
                  {path, "UTF-8"});
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));

  const std::string no_dir = dir.file("missing/x.safetensors");
  expect_mentions(error_of([&] {
                    save_safetensors(no_dir, {{"a", at::ones({1})}});
                  }),
                  {no_dir, "cannot create", "No such file"});
}

TEST(SafeTensorsDeathTest, WriteFailureIsReportedAndLeavesNoPartialFile) {
  // A file-size limit makes write() fail with EFBIG, like a full disk fails with ENOSPC. Run in
  // a child process so the limit cannot touch anything else.
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  TempDir dir;
  const std::string path = dir.file("big.safetensors");
  save_safetensors(path, {{"old", at::ones({1})}});
  EXPECT_EXIT(
      {
        std::signal(SIGXFSZ, SIG_IGN);  // get EFBIG instead of being killed
        rlimit lim{};
        getrlimit(RLIMIT_FSIZE, &lim);
        lim.rlim_cur = 4096;
        setrlimit(RLIMIT_FSIZE, &lim);
        std::string msg;
        try {
          save_safetensors(path, {{"big", at::ones({100000})}});
        } catch (const Error& e) {
          msg = e.what();
        }
        const bool ok = msg.find(path) != std::string::npos &&
                        msg.find("larger than allowed") != std::string::npos &&
                        !std::filesystem::exists(path + ".tmp") &&
                        SafeTensorsFile::open(path).contains("old");
        std::fprintf(stderr, "message: %s\n", msg.c_str());
        std::filesystem::remove_all(dir.path());  // exit() skips ~TempDir in the child
        // _exit: no static destructors in the forked child (CUDA builds crash in them).
        _exit(ok ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "message: .*larger than allowed");
}

// ---- checkpoints ----------------------------------------------------------------------------

void write_index(const std::string& dir, const std::string& weight_map_json) {
  write_file(dir + "/model.safetensors.index.json",
             R"({"metadata":{"total_size":0},"weight_map":)" + weight_map_json + "}");
}

TEST(Checkpoint, OpensASingleFile) {
  TempDir dir;
  save_safetensors(dir.file("model.safetensors"),
                   {{"b.weight", at::ones({2})}, {"a.weight", at::zeros({3})}});
  const auto c = Checkpoint::open(dir.path());
  EXPECT_EQ(c.dir(), dir.path());
  EXPECT_EQ(c.names(), (std::vector<std::string>{"a.weight", "b.weight"}));
  EXPECT_TRUE(at::equal(c.tensor("b.weight"), at::ones({2})));
  EXPECT_EQ(c.info("a.weight").shape, std::vector<int64_t>{3});
  EXPECT_EQ(c.file_of("a.weight"), dir.file("model.safetensors"));
  EXPECT_FALSE(c.contains("c.weight"));
  expect_mentions(error_of([&] { c.tensor("c.weight"); }),
                  {dir.path(), "no tensor 'c.weight'", "'a.weight'"});
}

TEST(Checkpoint, OpensShardsThroughTheIndex) {
  TempDir dir;
  const std::string s1 = "model-00001-of-00002.safetensors",
                    s2 = "model-00002-of-00002.safetensors";
  save_safetensors(dir.file(s1), {{"embed", at::ones({4, 2})}, {"layer.0", at::zeros({2})}});
  save_safetensors(dir.file(s2), {{"layer.1", at::full({2}, 7.0)}, {"unlisted", at::ones({1})}});
  write_index(dir.path(),
              R"({"embed":")" + s1 + R"(","layer.0":")" + s1 + R"(","layer.1":")" + s2 + R"("})");
  const auto c = Checkpoint::open(dir.path());
  EXPECT_EQ(c.files().size(), 2u);
  EXPECT_EQ(c.names(), (std::vector<std::string>{"embed", "layer.0", "layer.1", "unlisted"}));
  EXPECT_EQ(c.file_of("embed"), dir.file(s1));
  EXPECT_EQ(c.file_of("layer.1"), dir.file(s2));
  EXPECT_TRUE(at::equal(c.tensor("layer.1"), at::full({2}, 7.0)));
  // Present in a shard though the index forgot it: still reachable.
  EXPECT_EQ(c.file_of("unlisted"), dir.file(s2));
}

TEST(Checkpoint, IndexNamingAMissingShard) {
  TempDir dir;
  save_safetensors(dir.file("a.safetensors"), {{"x", at::ones({1})}});
  write_index(dir.path(), R"({"x":"a.safetensors","y":"b.safetensors"})");
  expect_mentions(error_of([&] { Checkpoint::open(dir.path()); }),
                  {dir.file("model.safetensors.index.json"), "'b.safetensors'", "missing"});
}

TEST(Checkpoint, IndexNamingATensorItsShardLacks) {
  TempDir dir;
  save_safetensors(dir.file("a.safetensors"), {{"x", at::ones({1})}});
  save_safetensors(dir.file("b.safetensors"), {{"y", at::ones({1})}});
  write_index(dir.path(), R"({"x":"a.safetensors","y":"a.safetensors"})");
  expect_mentions(error_of([&] { Checkpoint::open(dir.path()); }),
                  {dir.file("model.safetensors.index.json"), "tensor 'y'",
                   dir.file("a.safetensors"), "no such tensor"});
}

TEST(Checkpoint, TensorInTwoShards) {
  TempDir dir;
  save_safetensors(dir.file("a.safetensors"), {{"x", at::ones({1})}, {"dup", at::ones({1})}});
  save_safetensors(dir.file("b.safetensors"), {{"y", at::ones({1})}, {"dup", at::zeros({1})}});
  write_index(dir.path(), R"({"x":"a.safetensors","y":"b.safetensors","dup":"a.safetensors"})");
  expect_mentions(
      error_of([&] { Checkpoint::open(dir.path()); }),
      {dir.path(), "'dup'", "two shards", dir.file("a.safetensors"), dir.file("b.safetensors")});
}

TEST(Checkpoint, BadIndexFiles) {
  TempDir dir;
  const std::string idx = dir.file("model.safetensors.index.json");
  write_file(idx, "{\"weight_map\": ");
  expect_mentions(error_of([&] { Checkpoint::open(dir.path()); }), {idx, "not valid JSON"});
  write_file(idx, R"({"metadata":{}})");
  expect_mentions(error_of([&] { Checkpoint::open(dir.path()); }), {idx, "weight_map"});
  write_file(idx, R"({"weight_map":{"x":"../outside.safetensors"}})");
  expect_mentions(error_of([&] { Checkpoint::open(dir.path()); }),
                  {idx, "'x'", "not a plain file name"});
  write_file(idx, R"({"weight_map":{}})");
  expect_mentions(error_of([&] { Checkpoint::open(dir.path()); }), {idx, "empty"});
}

TEST(Checkpoint, EmptyOrWrongDirectorySaysWhatIsExpected) {
  TempDir dir;
  expect_mentions(
      error_of([&] { Checkpoint::open(dir.path()); }),
      {dir.path(), "holds nothing", "model.safetensors.index.json", "one model.safetensors"});
  save_safetensors(dir.file("weights.safetensors"), {{"x", at::ones({1})}});
  write_file(dir.file("config.json"), "{}");
  expect_mentions(error_of([&] { Checkpoint::open(dir.path()); }),
                  {dir.path(), "'config.json', 'weights.safetensors'", "model.safetensors"});
  const std::string nowhere = dir.file("nope");
  expect_mentions(error_of([&] { Checkpoint::open(nowhere); }), {nowhere, "does not exist"});
}

TEST(Checkpoint, FingerprintIsStableAndTracksHeaders) {
  TempDir dir;
  const std::string path = dir.file("model.safetensors");
  save_safetensors(path, {{"w", at::ones({2, 2})}}, {{"format", "pt"}});
  const std::string fp = Checkpoint::open(dir.path()).fingerprint();
  EXPECT_EQ(fp.size(), 16u);
  EXPECT_EQ(fp.find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_EQ(Checkpoint::open(dir.path()).fingerprint(), fp);

  // Same header, different data: the fingerprint covers headers only, by design.
  save_safetensors(path, {{"w", at::zeros({2, 2})}}, {{"format", "pt"}});
  EXPECT_EQ(Checkpoint::open(dir.path()).fingerprint(), fp);

  save_safetensors(path, {{"w", at::ones({4})}}, {{"format", "pt"}});
  const std::string reshaped = Checkpoint::open(dir.path()).fingerprint();
  EXPECT_NE(reshaped, fp);
  save_safetensors(path, {{"w", at::ones({2, 2})}}, {{"format", "np"}});
  EXPECT_NE(Checkpoint::open(dir.path()).fingerprint(), fp);
  EXPECT_NE(Checkpoint::open(dir.path()).fingerprint(), reshaped);
}

TEST(Checkpoint, ShardedFingerprintIgnoresShardNames) {
  TempDir a, b;
  for (const auto* d : {&a, &b}) {
    const std::string p = d == &a ? "p" : "q";
    save_safetensors(d->file(p + "1.safetensors"), {{"x", at::ones({1})}});
    save_safetensors(d->file(p + "2.safetensors"), {{"y", at::ones({2})}});
    write_index(d->path(), R"({"x":")" + p + R"(1.safetensors","y":")" + p + R"(2.safetensors"})");
  }
  EXPECT_EQ(Checkpoint::open(a.path()).fingerprint(), Checkpoint::open(a.path()).fingerprint());
  EXPECT_EQ(Checkpoint::open(a.path()).fingerprint(), Checkpoint::open(b.path()).fingerprint());
}

}  // namespace
}  // namespace kvprime
