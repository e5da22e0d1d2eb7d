// The committed demo model (models/demo, trained by tools/train_demo_model.py on the GPU machine):
// kvprime reproduces HF transformers' numbers on it and it passes issue 4's quality bar on the
// held-out demo samples, scored entirely in C++ (our tokenizer, our forward).
#include <gtest/gtest.h>

#include <fstream>
#include <map>

#include "kvprime/io/safetensors.h"
#include "kvprime/model/model.h"
#include "kvprime/tokenizer/tokenizer.h"
#include "test_support.h"

using namespace kvprime;
using kvprime::test::max_rel_diff;

namespace {

std::string demo(const std::string& f) { return kvprime::test::source_dir() + "/models/demo/" + f; }

class DemoModel : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    model_ = new Model(Model::load(kvprime::test::source_dir() + "/models/demo"));
    tok_ = new Tokenizer(Tokenizer::from_file(demo("tokenizer.json"), demo("tokenizer_config.json")));
  }
  static void TearDownTestSuite() {
    delete model_;
    delete tok_;
  }

  // Mean NLL of all answer tokens after `prompt` (BOS + prompt ids, then " " + answer ids), the
  // convention of tools/train_demo_model.py's evaluation.
  static double answer_nll(const std::string& prompt, const std::string& answer) {
    std::vector<int32_t> p = tok_->encode(prompt, true);
    std::vector<int32_t> a = tok_->encode(" " + answer, false);
    std::vector<int64_t> ids(p.begin(), p.end());
    ids.insert(ids.end(), a.begin(), a.end());
    auto t = at::tensor(ids, at::kLong).unsqueeze(0);
    auto c = model_->new_cache();
    auto logits = model_->forward(t, at::arange(t.size(1), at::kLong).unsqueeze(0), c);
    auto lp = at::log_softmax(logits[0].to(at::kDouble), -1);  // [T, V]
    const int64_t n = static_cast<int64_t>(a.size()), start = static_cast<int64_t>(p.size());
    double total = 0;
    for (int64_t i = 0; i < n; ++i) total -= lp[start + i - 1][a[i]].item<double>();
    return total / static_cast<double>(n);
  }

  static Model* model_;
  static Tokenizer* tok_;
};
Model* DemoModel::model_ = nullptr;
Tokenizer* DemoModel::tok_ = nullptr;

TEST_F(DemoModel, MatchesTransformersLogitsAndCache) {
  // reference.safetensors: HF float32 forward of the first held-out prompt on the same fp16
  // weights, computed on CUDA by the training script. Tolerance 2e-3, wider than the 1e-5 of
  // tests/parity, and why: the HF parity fixtures made on CPU agree with us to 1e-5 on the same
  // Llama architecture, while this CUDA-made reference differs by 1.5e-4 at layer 1 growing to
  // 9e-4 in the logits — the pattern of reduced-precision GPU float32 kernels in the reference.
  // TODO(next GPU session): regenerate reference.safetensors on CPU and tighten to 1e-5.
  auto ref = SafeTensorsFile::open(demo("reference.safetensors"));
  auto ids = ref.tensor("input_ids").unsqueeze(0);
  // Our tokenizer produces HF's ids for the prompt.
  std::vector<int32_t> ours = tok_->encode(ref.metadata().at("prompt"), true);
  ASSERT_EQ(static_cast<int64_t>(ours.size()), ids.size(1));
  for (size_t i = 0; i < ours.size(); ++i) ASSERT_EQ(ours[i], ids[0][i].item<int64_t>()) << i;

  auto c = model_->new_cache();
  auto logits = model_->forward(ids, at::arange(ids.size(1), at::kLong).unsqueeze(0), c);
  EXPECT_LT(max_rel_diff(logits[0], ref.tensor("logits")), 2e-3);
  for (int64_t il = 0; il < c.n_layer(); ++il) {
    EXPECT_LT(max_rel_diff(c.key(il)[0], ref.tensor("k/" + std::to_string(il))), 2e-3) << il;
    EXPECT_LT(max_rel_diff(c.value(il)[0], ref.tensor("v/" + std::to_string(il))), 2e-3) << il;
  }
}

TEST_F(DemoModel, HeldOutQualityBar) {
  std::map<std::string, nlohmann::json> samples;
  std::ifstream f(kvprime::test::source_dir() + "/data/demo/qa.jsonl");
  std::string line;
  while (std::getline(f, line))
    if (!line.empty()) {
      auto j = nlohmann::json::parse(line);
      samples[j["id"]] = j;
    }
  auto eval = nlohmann::json::parse(kvprime::test::read_file(demo("eval.json")));
  const std::string doc = "Document:\n{passage}", query = "\n\nQuery: {query}\nAnswer:";
  auto fill = [](std::string t, const std::string& key, const std::string& v) {
    return t.replace(t.find(key), key.size(), v);
  };
  int n = 0, correct_better = 0, passage_helps = 0;
  double max_rel_vs_hf = 0;
  for (const auto& row : eval["per_sample"]) {
    const auto& s = samples.at(row["id"].get<std::string>());
    ASSERT_EQ(s["split"], "heldout");
    const std::string q = fill(query, "{query}", s["query"]);
    const std::string with_passage = fill(doc, "{passage}", s["passage"]) + q;
    const std::string no_passage = "Query: " + s["query"].get<std::string>() + "\nAnswer:";
    const double correct = answer_nll(with_passage, s["answer"]);
    const double mismatched =
        answer_nll(with_passage, samples.at(row["mismatched_id"].get<std::string>())["answer"]);
    const double bare = answer_nll(no_passage, s["answer"]);
    correct_better += correct < mismatched;
    passage_helps += correct < bare;
    ++n;
    // HF computed the same NLLs (float32, CUDA) in the training script.
    max_rel_vs_hf = std::max(max_rel_vs_hf, std::abs(correct - row["correct_all"].get<double>()) /
                                                row["correct_all"].get<double>());
  }
  ASSERT_GE(n, 60);
  const double pct_cm = 100.0 * correct_better / n, pct_pn = 100.0 * passage_helps / n;
  std::printf("[ demo     ] held-out n=%d: correct<mismatched %.1f%%, passage<no-passage %.1f%%, "
              "max rel diff vs HF NLL %.2e\n", n, pct_cm, pct_pn, max_rel_vs_hf);
  EXPECT_GE(pct_cm, 75.0);
  EXPECT_GE(pct_pn, 70.0);
  // Same tokens and weights; HF's NLLs come from the CUDA run (see the tolerance note above).
  EXPECT_LT(max_rel_vs_hf, 5e-3);
}

}  // namespace
