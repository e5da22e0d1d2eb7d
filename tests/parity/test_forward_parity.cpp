// kvprime's forward against HF transformers' own numbers: tiny random-weight models of real
// architectures and their float32 logits / K / V, dumped by tools/make_parity_fixtures.py on the
// GPU machine (transformers 5.17, torch 2.11, eager attention) into tests/fixtures/parity/<model>/.
//
// Tolerance: float32 on both sides; the only differences are the order of floating-point
// reductions (matmul blocking, MKL vs cuBLAS/oneDNN, the mean in RMSNorm). Logits and K/V must
// agree to 1e-5 relative to the reference tensor's largest magnitude.
#include <gtest/gtest.h>

#include <filesystem>

#include "kvprime/core/compat.h"
#include "kvprime/io/safetensors.h"
#include "kvprime/model/model.h"
#include "test_support.h"

using namespace kvprime;
using kvprime::test::max_rel_diff;
namespace fs = std::filesystem;

namespace {

constexpr double kTol = 1e-5;

struct Case {
  std::string model;
  std::string device;
};

std::string case_name(const ::testing::TestParamInfo<Case>& i) {
  return i.param.model + "_" + i.param.device;
}

std::vector<Case> cases() {
  std::vector<Case> out;
  const fs::path root = kvprime::test::fixture("parity");
  if (!fs::is_directory(root)) return out;
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(root))
    if (fs::exists(e.path() / "expected.safetensors")) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  for (const auto& n : names) {
    out.push_back({n, "cpu"});
    if (compat::cuda_available()) out.push_back({n, "cuda"});
  }
  return out;
}

class ForwardParity : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    dir_ = kvprime::test::fixture("parity/" + GetParam().model);
    expected_ = std::make_unique<SafeTensorsFile>(SafeTensorsFile::open(dir_ + "/expected.safetensors"));
    LoadOptions lo;
    lo.device = at::Device(GetParam().device);
    model_ = std::make_unique<Model>(Model::load(dir_, lo));
  }
  bool has(const std::string& name) const { return expected_->contains(name); }
  at::Tensor ref(const std::string& name) const { return expected_->tensor(name); }

  // HF's DynamicCache keeps only the last `window - 1` slots of sliding layers (it never needs
  // more); kvprime keeps all of them. Compare the slots HF kept.
  void expect_cache_matches(const KVCache& c, const std::string& prefix) const {
    for (int64_t il = 0; il < c.n_layer(); ++il) {
      for (const char* kv : {"k", "v"}) {
        const std::string name = prefix + "/" + kv + "/" + std::to_string(il);
        if (!has(name)) continue;
        auto r = ref(name);
        auto ours = std::string(kv) == "k" ? c.key(il) : c.value(il);
        ASSERT_LE(r.size(2), ours.size(2)) << name;
        ours = ours.slice(2, ours.size(2) - r.size(2), ours.size(2));
        EXPECT_LT(max_rel_diff(ours, r), kTol) << name;
      }
    }
  }

  std::string dir_;
  std::unique_ptr<SafeTensorsFile> expected_;
  std::unique_ptr<Model> model_;
};

TEST_P(ForwardParity, PlainForwardLogitsAndCache) {
  ASSERT_TRUE(has("plain/input_ids"));
  auto ids = ref("plain/input_ids");
  const int64_t B = ids.size(0), T = ids.size(1);
  auto pos = at::arange(T, at::kLong).unsqueeze(0).expand({B, T}).contiguous();
  auto c = model_->new_cache(B);
  auto logits = model_->forward(ids, pos, c);
  EXPECT_LT(max_rel_diff(logits, ref("plain/logits")), kTol);
  expect_cache_matches(c, "plain");
  if (has("plain/nll")) {
    // Mean next-token NLL per row, from our logits.
    auto lp = at::log_softmax(logits.to(at::kDouble).cpu(), -1).slice(1, 0, T - 1);
    auto nll = -lp.gather(2, ids.slice(1, 1, T).unsqueeze(2)).squeeze(2).mean(1);
    EXPECT_LT(max_rel_diff(nll, ref("plain/nll")), kTol);
  }
}

TEST_P(ForwardParity, ContinuingACache) {
  if (!has("continue/input_ids")) GTEST_SKIP() << "fixture has no continue case";
  auto ids = ref("continue/input_ids");  // [B, T_total]; the last `n` are the continuation
  auto expect = ref("continue/logits");  // [B, n, V]
  const int64_t B = ids.size(0), T = ids.size(1), n = expect.size(1);
  auto c = model_->new_cache(B);
  auto pos = at::arange(T, at::kLong).unsqueeze(0).expand({B, T}).contiguous();
  model_->forward(ids.slice(1, 0, T - n), pos.slice(1, 0, T - n), c, {LogitsMode::None, {}, {}});
  auto logits = model_->forward(ids.slice(1, T - n, T), pos.slice(1, T - n, T), c);
  EXPECT_LT(max_rel_diff(logits, expect), kTol);
  expect_cache_matches(c, "continue");
}

TEST_P(ForwardParity, PaddedBatch) {
  if (!has("padded/input_ids")) GTEST_SKIP() << "fixture has no padded case";
  auto ids = ref("padded/input_ids");
  auto mask = ref("padded/attention_mask").to(at::kBool);
  auto pos = ref("padded/position_ids");
  ForwardOptions fo;
  fo.attention_mask = mask;
  auto c = model_->new_cache(ids.size(0));
  auto logits = model_->forward(ids, pos, c, fo).cpu();
  auto expect = ref("padded/logits");
  // Only real tokens are defined; HF's padding rows are arbitrary.
  auto sel = mask.unsqueeze(-1).expand_as(logits);
  EXPECT_LT(max_rel_diff(logits.masked_select(sel), expect.masked_select(sel)), kTol);
}

TEST_P(ForwardParity, ExplicitPositions) {
  if (!has("positions/input_ids")) GTEST_SKIP() << "fixture has no positions case";
  auto ids = ref("positions/input_ids");
  auto pos = ref("positions/position_ids");
  auto c = model_->new_cache(ids.size(0));
  auto logits = model_->forward(ids, pos, c);
  EXPECT_LT(max_rel_diff(logits, ref("positions/logits")), kTol);
  expect_cache_matches(c, "positions");
}

TEST_P(ForwardParity, LongerThanTheSlidingWindow) {
  if (!has("long/input_ids")) GTEST_SKIP() << "fixture has no long case";
  auto ids = ref("long/input_ids");
  const int64_t B = ids.size(0), T = ids.size(1);
  auto pos = at::arange(T, at::kLong).unsqueeze(0).expand({B, T}).contiguous();
  auto c = model_->new_cache(B);
  EXPECT_LT(max_rel_diff(model_->forward(ids, pos, c), ref("long/logits")), kTol);
}

INSTANTIATE_TEST_SUITE_P(HF, ForwardParity, ::testing::ValuesIn(cases()), case_name);
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(ForwardParity);

// The committed fixture set must be complete, so a missing directory fails instead of skipping.
TEST(ForwardParityFixtures, AllArchitecturesPresent) {
  for (const char* m : {"llama3", "llama_yarn", "mistral", "qwen2", "qwen3", "gemma2", "gemma3"})
    EXPECT_TRUE(fs::exists(kvprime::test::fixture(std::string("parity/") + m + "/expected.safetensors")))
        << m << ": run tools/make_parity_fixtures.py on the GPU machine";
}

// Gemma 3 published by transformers 4.x (rope_theta + rope_local_base_freq + rope_scaling +
// sliding_window_pattern) describes the same model as the 5.x file (rope_parameters per layer
// type + layer_types): both must give HF's logits.
TEST(ForwardParityFixtures, Gemma3TransformersV4ConfigGivesTheSameLogits) {
  const std::string src = kvprime::test::fixture("parity/gemma3");
  kvprime::test::TempDir d;
  fs::copy_file(src + "/config_v4.json", d.file("config.json"));
  fs::copy_file(src + "/model.safetensors", d.file("model.safetensors"));
  Model m = Model::load(d.path());
  auto expected = SafeTensorsFile::open(src + "/expected.safetensors");
  auto ids = expected.tensor("plain/input_ids");
  const int64_t B = ids.size(0), T = ids.size(1);
  auto pos = at::arange(T, at::kLong).unsqueeze(0).expand({B, T}).contiguous();
  auto c = m.new_cache(B);
  EXPECT_LT(max_rel_diff(m.forward(ids, pos, c), expected.tensor("plain/logits")), kTol);
}

}  // namespace
