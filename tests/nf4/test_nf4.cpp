// NF4 weights (model/nf4.h, LoadOptions::weights): the quantizer equals an independent reference
// of bitsandbytes' algorithm bit for bit (tools/nf4_reference.py -> tests/fixtures/nf4), the
// dequantizer inverts it to within half a code step, and the demo model with NF4 weights keeps its
// answers: mean answer NLL within a stated bound of float32, and the seed's checks at the seed's
// own (4-bit) tolerances.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <map>

#include "kvprime/cache/surgery.h"
#include "kvprime/core/error.h"
#include "kvprime/io/safetensors.h"
#include "kvprime/model/model.h"
#include "kvprime/model/nf4.h"
#include "kvprime/prime/build.h"
#include "kvprime/prime/experiment_config.h"
#include "kvprime/prime/score.h"
#include "kvprime/tokenizer/tokenizer.h"
#include "test_support.h"

using namespace kvprime;
using kvprime::test::max_abs_diff;

namespace {

std::string demo_dir() { return kvprime::test::source_dir() + "/models/demo"; }

TEST(Nf4, QuantizerMatchesTheReferenceBitForBit) {
  auto f = SafeTensorsFile::open(kvprime::test::fixtures_dir() + "/nf4/reference.safetensors");
  for (const std::string c : {"normal", "heavy", "tail", "edge"}) {
    SCOPED_TRACE(c);
    at::Tensor w = f.tensor(c + "/weight");
    Nf4Tensor q = quantize_nf4(w, 64);
    EXPECT_EQ(q.shape, w.sizes().vec());
    ASSERT_TRUE(at::equal(q.absmax, f.tensor(c + "/absmax")));
    const at::Tensor want = f.tensor(c + "/codes");
    ASSERT_EQ(q.codes.sizes(), want.sizes());
    const int64_t differ = q.codes.ne(want).sum().item<int64_t>();
    EXPECT_EQ(differ, 0) << "code bytes differ from the reference: at "
                         << at::nonzero(q.codes.ne(want)).view({-1});
  }
}

TEST(Nf4, DequantizeIsWithinHalfACodeStep) {
  auto g = at::make_generator<at::CPUGeneratorImpl>(7);
  at::Tensor w = at::randn({96, 130}, g);  // 12480 elements: 195 blocks, no tail
  Nf4Tensor q = quantize_nf4(w);
  EXPECT_EQ(q.bytes(), 12480 / 2 + 195 * 4);
  at::Tensor d = dequantize_nf4(q, at::kFloat);
  ASSERT_EQ(d.sizes(), w.sizes());
  // Per block: |x - x_hat| <= absmax * (largest gap between code values) / 2.
  const auto& code = nf4_code();
  double gap = 0;
  for (size_t i = 1; i < code.size(); ++i) gap = std::max<double>(gap, code[i] - code[i - 1]);
  at::Tensor err = (d - w).abs().reshape({195, 64}).amax(1);
  EXPECT_TRUE(at::all(err <= q.absmax * (gap / 2 + 1e-6)).item<bool>());
  // Each block's largest element is represented exactly (code +-1).
  at::Tensor blocks = w.reshape({195, 64}), back = d.reshape({195, 64});
  at::Tensor arg = blocks.abs().argmax(1, true);
  EXPECT_TRUE(at::equal(blocks.gather(1, arg), back.gather(1, arg)));
  // bfloat16 output: the float32 values rounded once.
  EXPECT_TRUE(at::equal(dequantize_nf4(q, at::kBFloat16), d.to(at::kBFloat16)));
}

// The same quantizer on CUDA (ATen's CUDA kernels for the reciprocal, multiply and bucketize):
// every code and absmax equal the CPU's, so a model quantized on the GPU is the model tested here.
TEST(Nf4, CudaQuantizerEqualsTheCpus) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device (runs on the GPU machine)";
  auto f = SafeTensorsFile::open(kvprime::test::fixtures_dir() + "/nf4/reference.safetensors");
  auto g = at::make_generator<at::CPUGeneratorImpl>(11);
  std::vector<at::Tensor> inputs = {f.tensor("normal/weight"), f.tensor("edge/weight"), f.tensor("tail/weight"),
                                    at::randn({512, 4096}, g).to(at::kBFloat16)};
  for (const at::Tensor& w : inputs) {
    Nf4Tensor c = quantize_nf4(w), d = quantize_nf4(w.to(at::kCUDA));
    EXPECT_TRUE(at::equal(c.codes, d.codes.cpu()));
    EXPECT_TRUE(at::equal(c.absmax, d.absmax.cpu()));
    // Dequantized on CUDA (the fused kernel) = on the CPU (eager ops), in every dtype.
    for (auto dt : {at::kFloat, at::kBFloat16, at::kHalf}) {
      EXPECT_TRUE(at::equal(dequantize_nf4(c, dt), dequantize_nf4(d, dt).cpu())) << dt;
      at::Tensor into = at::zeros({d.numel()}, at::TensorOptions().dtype(dt).device(at::kCUDA));
      dequantize_nf4_into(d, into);
      EXPECT_TRUE(at::equal(dequantize_nf4(c, dt).view({-1}), into.cpu())) << dt;
    }
  }
}

class Nf4Demo : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    LoadOptions lo;
    dense_ = new Model(Model::load(demo_dir(), lo));
    lo.weights = WeightFormat::Nf4;
    nf4_ = new Model(Model::load(demo_dir(), lo));
    tok_ = new Tokenizer(Tokenizer::from_checkpoint(demo_dir()));
    cfg_ = new ExperimentConfig();
    cfg_->answer_template = " {answer}";  // as the demo model was trained (see test_seed_demo.cpp)
  }
  static void TearDownTestSuite() {
    delete cfg_;
    delete tok_;
    delete nf4_;
    delete dense_;
  }
  static Model *dense_, *nf4_;
  static Tokenizer* tok_;
  static ExperimentConfig* cfg_;
};
Model* Nf4Demo::dense_ = nullptr;
Model* Nf4Demo::nf4_ = nullptr;
Tokenizer* Nf4Demo::tok_ = nullptr;
ExperimentConfig* Nf4Demo::cfg_ = nullptr;

const std::string kPassage =
    "The Amazon rainforest produces approximately 20 percent of the world's oxygen. "
    "It covers over 5.5 million square kilometers and is home to roughly 10 percent "
    "of all species on Earth.";

TEST_F(Nf4Demo, CachesOfNf4AndDenseWeightsDoNotMix) {
  EXPECT_NE(nf4_->identity().fingerprint, dense_->identity().fingerprint);
  Primer a(*dense_, *tok_, *cfg_), b(*nf4_, *tok_, *cfg_);
  EXPECT_THROW(build_hybrid_cache(a.build_kv_cache(kPassage).cache, b.build_kv_cache(kPassage).cache), Error);
}

// The seed's model-dependent checks, which it ran on 4-bit weights, at its own tolerances.
TEST_F(Nf4Demo, SeedChecksPassAtTheSeedsTolerances) {
  Primer p(*nf4_, *tok_, *cfg_);
  const std::string ctx = "Document:\n" + kPassage;
  const std::string qp = format_template(cfg_->query_template, {{"query", "how much oxygen does the amazon produce"}});
  BuiltCache built = p.build_kv_cache(ctx);
  const double cached = score_answer_with_cache(p, built.cache, built.length, qp, "approximately 20 percent");
  const double wrong = score_answer_with_cache(p, built.cache, built.length, qp, "purple elephants flying sideways");
  // TEST 5: the full forward over the same ids.
  TokenIds ids = p.tokenize_with_bos(ctx), q = p.tokenize(qp), ans = p.tokenize(" approximately 20 percent");
  TokenIds all = ids;
  all.insert(all.end(), q.begin(), q.end());
  all.insert(all.end(), ans.begin(), ans.end());
  KVCache scratch = nf4_->new_cache();
  at::Tensor id_t = at::tensor(std::vector<int64_t>(all.begin(), all.end()), at::kLong).unsqueeze(0);
  at::Tensor logp = at::log_softmax(nf4_->forward(id_t, nf4_->continue_positions(scratch, id_t.size(1)), scratch)[0], -1);
  const int64_t a0 = static_cast<int64_t>(all.size() - ans.size());
  double full = 0;  // answer tokens after the first, predicted from the position before each
  for (int64_t t = a0 + 1; t < static_cast<int64_t>(all.size()); ++t) full -= logp[t - 1][all[t]].item<double>();
  full /= static_cast<double>(ans.size() - 1);
  EXPECT_LT(std::abs(cached - full) / std::abs(full), 0.05) << cached << " vs " << full;
  EXPECT_LT(cached, wrong);
  // TEST 6: layer-0 keys of the truncated, corrected cache equal the bare cache's (seed: < 0.1).
  MatchedCaches m = p.build_matched_caches("Some irrelevant prefix text here.", kPassage);
  EXPECT_LT(max_abs_diff(m.primed.key(0).slice(2, 1), m.bare.key(0).slice(2, 1)), 0.1);
  // TEST 11: the passage part of a suffix cache equals the bare cache (seed: < 0.15).
  BuiltCache bare = p.build_kv_cache(kPassage);
  BuiltCache suf = p.build_suffix_kv_cache(kPassage, "What is the oxygen percentage?");
  for (int64_t il = 0; il < nf4_->config().n_layer; ++il) {
    EXPECT_LT(max_abs_diff(suf.cache.key(il).slice(2, 0, bare.length), bare.cache.key(il)), 0.15) << il;
    EXPECT_LT(max_abs_diff(suf.cache.value(il).slice(2, 0, bare.length), bare.cache.value(il)), 0.15) << il;
  }
}

// Mean answer NLL over the first 40 demo samples, float32 compute, dense vs NF4 weights.
TEST_F(Nf4Demo, MeanAnswerNllStaysCloseToFloat32) {
  std::ifstream f(kvprime::test::source_dir() + "/data/demo/qa.jsonl");
  std::string line;
  Primer pd(*dense_, *tok_, *cfg_), pq(*nf4_, *tok_, *cfg_);
  double sum_d = 0, sum_q = 0, max_abs = 0;
  int n = 0;
  while (n < 40 && std::getline(f, line)) {
    auto j = nlohmann::json::parse(line);
    const std::string ctx = format_template(cfg_->document_template, {{"document", j["passage"].get<std::string>()}});
    const std::string qp = format_template(cfg_->query_template, {{"query", j["query"].get<std::string>()}});
    const std::string answer = j["answer"].get<std::string>();
    if (pd.tokenize(" " + answer).size() < 2) continue;
    BuiltCache cd = pd.build_kv_cache(ctx), cq = pq.build_kv_cache(ctx);
    const double d = score_answer_with_cache(pd, cd.cache, cd.length, qp, answer);
    const double q = score_answer_with_cache(pq, cq.cache, cq.length, qp, answer);
    sum_d += d;
    sum_q += q;
    max_abs = std::max(max_abs, std::abs(q - d));
    ++n;
  }
  ASSERT_GE(n, 30);
  const double mean_d = sum_d / n, mean_q = sum_q / n;
  std::printf("[ nf4      ] n=%d mean answer NLL: float32 %.4f, nf4 %.4f (diff %+.4f), max |diff| %.4f\n",
              n, mean_d, mean_q, mean_q - mean_d, max_abs);
  // Bound: NF4 rounds each weight by up to half a code step (up to 15% of its block's absmax, the
  // widest gap being 0.30 between 0.72 and 1); on the 13.6M-parameter demo model this moved the
  // mean answer NLL of these 40 samples from 1.2078 to 1.2548 nats (+0.047, 2026-11-29, CPU).
  // The bound, 0.1 nats (about 8% of the mean), is twice that: a regression in the quantizer or
  // the dequantize-then-GEMM path (a wrong nibble order alone costs nats) fails it.
  EXPECT_LT(std::abs(mean_q - mean_d), 0.1);
}

}  // namespace
