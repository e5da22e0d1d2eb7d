// Properties of the forward pass that hold for every architecture, on tiny random models:
// the cache path equals one pass, batching with padding equals one sequence at a time, masks and
// positions do what they say, and errors leave the cache untouched. (Agreement with HF
// transformers itself is tests/parity.)
#include <gtest/gtest.h>

#include "kvprime/core/error.h"
#include "kvprime/model/generate.h"
#include "kvprime/model/model.h"
#include "random_model.h"
#include "test_support.h"

using namespace kvprime;
using kvprime::test::max_rel_diff;

namespace {

// float32 with different matmul shapes (one pass vs chunks) changes reduction order only:
// agreement to a few float32 ulps of the logits' scale.
constexpr double kF32Tol = 2e-5;

at::Tensor seq(int64_t n, int64_t seed, int64_t vocab) {
  auto g = at::make_generator<at::CPUGeneratorImpl>(seed);
  return at::randint(3, vocab, {1, n}, g, at::kLong);
}

at::Tensor arange_pos(int64_t n, int64_t start = 0) {
  return at::arange(start, start + n, at::kLong).unsqueeze(0);
}

class ModelProperties : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    kvprime::test::write_random_model(dir_.path(), kvprime::test::tiny_config(GetParam()), 7);
    model_ = std::make_unique<Model>(Model::load(dir_.path()));
  }
  at::Tensor full_logits(const at::Tensor& ids, const at::Tensor& pos) {
    auto c = model_->new_cache(ids.size(0));
    return model_->forward(ids, pos, c);
  }
  kvprime::test::TempDir dir_;
  std::unique_ptr<Model> model_;
};

TEST_P(ModelProperties, CacheContinuationEqualsOnePass) {
  const int64_t V = model_->config().vocab_size;
  auto ids = seq(12, 1, V);
  auto one = model_->new_cache();
  auto full = model_->forward(ids, arange_pos(12), one);  // [1, 12, V]
  ASSERT_EQ(full.sizes(), (std::vector<int64_t>{1, 12, V}));
  ASSERT_EQ(one.length(), 12);

  auto c = model_->new_cache();
  auto a = model_->forward(ids.slice(1, 0, 7), arange_pos(7), c);
  auto b = model_->forward(ids.slice(1, 7, 12), model_->continue_positions(c, 5), c);
  EXPECT_LT(max_rel_diff(a, full.slice(1, 0, 7)), kF32Tol);
  EXPECT_LT(max_rel_diff(b, full.slice(1, 7, 12)), kF32Tol);
  for (int64_t il = 0; il < c.n_layer(); ++il) {
    EXPECT_LT(max_rel_diff(c.key(il), one.key(il)), kF32Tol) << "layer " << il;
    EXPECT_LT(max_rel_diff(c.value(il), one.value(il)), kF32Tol) << "layer " << il;
  }
  EXPECT_TRUE(at::equal(c.positions(), arange_pos(12)));
  EXPECT_TRUE(at::equal(c.token_ids(), ids));
}

TEST_P(ModelProperties, TokenByTokenEqualsOnePass) {
  const int64_t V = model_->config().vocab_size;
  auto ids = seq(9, 2, V);
  auto full = full_logits(ids, arange_pos(9));
  auto c = model_->new_cache();
  for (int64_t t = 0; t < 9; ++t) {
    auto l = model_->forward(ids.slice(1, t, t + 1), arange_pos(1, t), c);
    EXPECT_LT(max_rel_diff(l, full.slice(1, t, t + 1)), kF32Tol) << "token " << t;
  }
}

TEST_P(ModelProperties, PaddedBatchEqualsOneAtATime) {
  const int64_t V = model_->config().vocab_size;
  auto a = seq(10, 3, V), b = seq(6, 4, V);
  auto la = full_logits(a, arange_pos(10));
  auto lb = full_logits(b, arange_pos(6));
  // Left padding for b: 4 pad slots, then its tokens at positions 0..5.
  auto ids = at::zeros({2, 10}, at::kLong);
  ids[0] = a[0];
  ids[1].slice(0, 4, 10).copy_(b[0]);
  auto pos = at::zeros({2, 10}, at::kLong);
  pos[0] = at::arange(10, at::kLong);
  pos[1].slice(0, 4, 10).copy_(at::arange(6, at::kLong));
  auto mask = at::ones({2, 10}, at::kBool);
  mask[1].slice(0, 0, 4).fill_(false);
  ForwardOptions fo;
  fo.attention_mask = mask;
  auto c = model_->new_cache(2);
  auto l = model_->forward(ids, pos, c, fo);
  EXPECT_LT(max_rel_diff(l[0], la[0]), kF32Tol);
  EXPECT_LT(max_rel_diff(l[1].slice(0, 4, 10), lb[0]), kF32Tol);
  EXPECT_FALSE(at::isnan(l).any().item<bool>()) << "padding rows must stay finite";

  // Continue both rows by 3 tokens: row 1 keeps its own positions, padding stays invisible.
  auto more = seq(3, 5, V);
  auto ids2 = at::cat({more, more}, 0);
  auto l2 = model_->forward(ids2, model_->continue_positions(c, 3), c);
  auto ra = full_logits(at::cat({a, more}, 1), arange_pos(13));
  auto rb = full_logits(at::cat({b, more}, 1), arange_pos(9));
  EXPECT_LT(max_rel_diff(l2[0], ra[0].slice(0, 10, 13)), kF32Tol);
  EXPECT_LT(max_rel_diff(l2[1], rb[0].slice(0, 6, 9)), kF32Tol);

  // LogitsMode::Last picks each row's last real token.
  ForwardOptions last;
  last.logits = LogitsMode::Last;
  last.attention_mask = at::tensor({1, 1, 1, 1, 1, 1, 0, 0, 0, 0}, at::kLong).to(at::kBool).view({1, 10});
  auto c1 = model_->new_cache();
  auto right_padded = at::cat({b, at::zeros({1, 4}, at::kLong)}, 1);
  auto ll = model_->forward(right_padded, arange_pos(10), c1, last);  // [1, V]
  EXPECT_LT(max_rel_diff(ll[0], lb[0][5]), kF32Tol);
}

TEST_P(ModelProperties, ExplicitCausalMaskEqualsDefault) {
  const int64_t V = model_->config().vocab_size;
  auto ids = seq(8, 6, V);
  auto ref = full_logits(ids, arange_pos(8));
  ForwardOptions fo;
  fo.custom_mask = at::ones({8, 8}, at::kBool).tril().unsqueeze(0);
  auto c = model_->new_cache();
  EXPECT_LT(max_rel_diff(model_->forward(ids, arange_pos(8), c, fo), ref), 1e-6);
}

TEST_P(ModelProperties, BlockDiagonalMaskIsolatesSegments) {
  // Segment B (4 tokens at positions 5..8) under a mask that hides segment A must give the same
  // logits as B run alone at the same positions.
  const int64_t V = model_->config().vocab_size;
  auto A = seq(5, 7, V), Bseg = seq(4, 8, V);
  auto ids = at::cat({A, Bseg}, 1);
  auto m = at::zeros({9, 9}, at::kBool);
  m.slice(0, 0, 5).slice(1, 0, 5).copy_(at::ones({5, 5}, at::kBool).tril());
  m.slice(0, 5, 9).slice(1, 5, 9).copy_(at::ones({4, 4}, at::kBool).tril());
  ForwardOptions fo;
  fo.custom_mask = m.unsqueeze(0);
  auto c = model_->new_cache();
  auto l = model_->forward(ids, arange_pos(9), c, fo);
  auto alone = full_logits(Bseg, arange_pos(4, 5));
  EXPECT_LT(max_rel_diff(l.slice(1, 5, 9), alone), kF32Tol);
  // ... and differs from the causal run, where B sees A.
  auto causal = full_logits(ids, arange_pos(9));
  EXPECT_GT(max_rel_diff(causal.slice(1, 5, 9), alone), 1e-3);
}

TEST_P(ModelProperties, RopeIsRelative) {
  // Shifting every position by the same amount leaves attention (hence logits) unchanged up to
  // float32 rounding of cos/sin at larger angles. Not for sliding windows? Windows are by slot, so
  // they are unaffected too.
  const int64_t V = model_->config().vocab_size;
  auto ids = seq(8, 9, V);
  auto l0 = full_logits(ids, arange_pos(8));
  auto l1 = full_logits(ids, arange_pos(8, 37));
  EXPECT_LT(max_rel_diff(l1, l0), 1e-4);
  // Positions do matter within a sequence: a permuted position order changes the logits.
  auto perm = at::tensor({0, 2, 1, 3, 4, 5, 7, 6}, at::kLong).unsqueeze(0);
  EXPECT_GT(max_rel_diff(full_logits(ids, perm), l0), 1e-4);
}

TEST_P(ModelProperties, ErrorsLeaveTheCacheUnchanged) {
  const int64_t V = model_->config().vocab_size;
  auto c = model_->new_cache();
  model_->forward(seq(4, 10, V), arange_pos(4), c);
  auto before = c.clone();
  auto bad = at::full({1, 2}, V, at::kLong);  // out of vocabulary
  EXPECT_THROW(model_->forward(bad, arange_pos(2, 4), c), Error);
  EXPECT_THROW(model_->forward(seq(2, 11, V), arange_pos(3), c), Error);  // shape mismatch
  EXPECT_EQ(c.length(), 4);
  for (int64_t il = 0; il < c.n_layer(); ++il) EXPECT_TRUE(at::equal(c.key(il), before.key(il)));
}

TEST_P(ModelProperties, GreedyMatchesArgmaxOfFullForward) {
  const int64_t V = model_->config().vocab_size;
  std::vector<int64_t> prompt = {1, 17, 33, 5};
  auto c = model_->new_cache();
  GenerateOptions go;
  go.max_new_tokens = 6;
  go.stop_at_eos = false;
  auto r = generate_greedy(*model_, prompt, c, go);
  ASSERT_EQ(r.tokens.size(), 6u);
  std::vector<int64_t> all = prompt;
  for (int64_t t : r.tokens) {
    auto ids = at::tensor(all, at::kLong).unsqueeze(0);
    auto l = full_logits(ids, arange_pos(ids.size(1)));
    EXPECT_EQ(l[0][-1].argmax().item<int64_t>(), t);
    all.push_back(t);
  }
  (void)V;
}

TEST_P(ModelProperties, Bfloat16CloseToFloat32) {
  LoadOptions lo;
  lo.dtype = at::kBFloat16;
  Model bf = Model::load(dir_.path(), lo);
  const int64_t V = model_->config().vocab_size;
  auto ids = seq(8, 12, V);
  auto ref = full_logits(ids, arange_pos(8));
  auto c = bf.new_cache();
  auto l = bf.forward(ids, arange_pos(8), c);
  EXPECT_EQ(c.key(0).scalar_type(), at::kBFloat16);
  EXPECT_EQ(l.scalar_type(), at::kFloat);
  // bfloat16 keeps 8 mantissa bits: ~0.4% per rounding, compounded over two layers.
  EXPECT_LT(max_rel_diff(l, ref), 0.1);
}

INSTANTIATE_TEST_SUITE_P(AllArchitectures, ModelProperties,
                         ::testing::Values("llama", "mistral", "qwen2", "qwen3", "gemma2",
                                           "gemma3_text"));

// ---- loading errors -------------------------------------------------------------------------

TEST(ModelLoad, ConfigThatDoesNotMatchWeightsIsRefused) {
  kvprime::test::TempDir d;
  auto cfg = kvprime::test::tiny_config("llama");
  kvprime::test::write_random_model(d.path(), cfg, 1);
  cfg["intermediate_size"] = 64;  // weights were written with 48
  kvprime::test::write_file(d.file("config.json"), cfg.dump());
  try {
    Model::load(d.path());
    FAIL() << "expected an error";
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("mlp.gate_proj.weight"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[48, 32]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("does not match"), std::string::npos) << msg;
  }
}

TEST(ModelLoad, FewerLayersInConfigThanWeightsIsRefused) {
  kvprime::test::TempDir d;
  auto cfg = kvprime::test::tiny_config("llama");
  kvprime::test::write_random_model(d.path(), cfg, 1);
  cfg["num_hidden_layers"] = 1;
  kvprime::test::write_file(d.file("config.json"), cfg.dump());
  try {
    Model::load(d.path());
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("more than num_hidden_layers=1"), std::string::npos)
        << e.what();
  }
}

TEST(ModelLoad, UntiedConfigWithoutLmHeadIsRefused) {
  kvprime::test::TempDir d;
  auto cfg = kvprime::test::tiny_config("qwen2");  // tied: no lm_head.weight written
  kvprime::test::write_random_model(d.path(), cfg, 1);
  cfg["tie_word_embeddings"] = false;
  kvprime::test::write_file(d.file("config.json"), cfg.dump());
  try {
    Model::load(d.path());
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("lm_head.weight"), std::string::npos) << e.what();
  }
}

TEST(ModelLoad, MissingDirectoryNamesThePath) {
  try {
    Model::load("/nonexistent/kvprime-model");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/kvprime-model"), std::string::npos);
  }
}

TEST(ModelLoad, CacheFromAnotherModelIsRefused) {
  kvprime::test::TempDir d1, d2;
  kvprime::test::write_random_model(d1.path(), kvprime::test::tiny_config("llama"), 1);
  kvprime::test::write_random_model(d2.path(), kvprime::test::tiny_config("mistral"), 2);
  Model m1 = Model::load(d1.path()), m2 = Model::load(d2.path());
  auto c = m2.new_cache();
  auto ids = at::tensor({1, 5, 7}, at::kLong).unsqueeze(0);
  try {
    m1.forward(ids, arange_pos(3), c);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not by"), std::string::npos) << e.what();
  }
  EXPECT_EQ(c.length(), 0);
}

}  // namespace
