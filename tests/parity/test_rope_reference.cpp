// kvprime's RoPE against Hugging Face transformers (the reference): per config and layer type,
// inv_freq, attention_scaling and cos/sin at a few positions, as dumped by
// tools/dump_rope_reference.py into tests/fixtures/rope/hf_inv_freq.safetensors, together with
// the HF-resolved head_dim, head counts and layer types of each config. The configs are the nine
// real ones in tests/fixtures/configs plus small synthetic ones (yarn, dynamic, legacy "type")
// whose config.json travels in the file's metadata.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "kvprime/io/safetensors.h"
#include "kvprime/model/config.h"
#include "kvprime/model/rope.h"
#include "test_support.h"

using kvprime::AttentionKind;
using kvprime::ModelConfig;
using nlohmann::json;

namespace {

// inv_freq: float32 has 2^-24 ~ 6e-8 relative rounding; pow/reciprocal kernels of different
// builds (libtorch 1.13 vs 2.x, SLEEF vs libm) may differ by a few ulps. 1e-6 (~16 ulps) allows
// that and still catches any formula slip (a wrong theta, factor or band changes values by far
// more than 1e-4).
constexpr double kInvFreqRelTol = 1e-6;
// cos/sin: 1e-6 absolute when inv_freq agrees bitwise. A difference d in inv_freq moves the
// angle at position p by p * d, so that much is added to the tolerance (both sides then follow
// their own inv_freq exactly; the tolerance does not hide a formula error, which the inv_freq
// check above catches).
constexpr double kCosSinAbsTol = 1e-6;

std::string reference_path() { return kvprime::test::fixture("rope/hf_inv_freq.safetensors"); }

// max over elements of |a - b| / |b|, in float64 (each frequency counts, also the tiny ones).
double max_elementwise_rel(const at::Tensor& a, const at::Tensor& b) {
  auto da = a.to(at::kDouble), db = b.to(at::kDouble);
  return ((da - db).abs() / db.abs()).max().item<double>();
}

AttentionKind kind_of(const std::string& layer_type) {
  return layer_type == "sliding_attention" ? AttentionKind::Sliding : AttentionKind::Full;
}

class RopeReference : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(reference_path()))
      GTEST_SKIP() << reference_path()
                   << " is absent; generate it with `python3 tools/dump_rope_reference.py` where "
                      "torch and transformers are installed, and commit it";
    file_.emplace(kvprime::SafeTensorsFile::open(reference_path()));
    const auto& meta = file_->metadata();
    ASSERT_EQ(meta.count("entries"), 1u);
    ASSERT_EQ(meta.count("configs"), 1u);
    ASSERT_EQ(meta.count("positions"), 1u);
    entries_ = json::parse(meta.at("entries"));
    configs_ = json::parse(meta.at("configs"));
    positions_ = json::parse(meta.at("positions")).get<std::vector<int64_t>>();
    if (meta.count("transformers_version"))
      std::printf("reference: transformers %s, torch %s\n",
                  meta.at("transformers_version").c_str(),
                  meta.count("torch_version") ? meta.at("torch_version").c_str() : "?");
  }

  ModelConfig load(const std::string& stem) const {
    const json& hf = configs_.at(stem);
    if (hf.contains("config_json"))  // synthetic: resolve the very JSON HF was given
      return kvprime::resolve_config(
          kvprime::parse_raw_config(hf.at("config_json"), reference_path() + "#" + stem));
    return kvprime::load_model_config(
        kvprime::test::fixture("configs/" + stem + ".config.json"));
  }

  std::optional<kvprime::SafeTensorsFile> file_;
  json entries_, configs_;
  std::vector<int64_t> positions_;
};

}  // namespace

TEST_F(RopeReference, ResolvedConfigsMatchTransformers) {
  ASSERT_FALSE(configs_.empty());
  for (auto it = configs_.begin(); it != configs_.end(); ++it) {
    SCOPED_TRACE(it.key());
    const json& hf = it.value();
    const ModelConfig c = load(it.key());
    EXPECT_EQ(c.model_type, hf.at("model_type").get<std::string>());
    EXPECT_EQ(c.head_dim, hf.at("head_dim").get<int64_t>());
    EXPECT_EQ(c.hidden_size, hf.at("hidden_size").get<int64_t>());
    EXPECT_EQ(c.n_head, hf.at("num_attention_heads").get<int64_t>());
    EXPECT_EQ(c.n_head_kv, hf.at("num_key_value_heads").get<int64_t>());
    EXPECT_EQ(c.n_layer, hf.at("num_hidden_layers").get<int64_t>());
    EXPECT_EQ(c.max_position_embeddings, hf.at("max_position_embeddings").get<int64_t>());
    // Llama and Mistral have no layer_types in transformers; the others list one per layer.
    if (hf.at("layer_types").is_array()) {
      const auto types = hf.at("layer_types").get<std::vector<std::string>>();
      ASSERT_EQ(static_cast<int64_t>(types.size()), c.n_layer);
      for (int64_t i = 0; i < c.n_layer; ++i) {
        EXPECT_EQ(c.layers[i].kind, kind_of(types[i])) << "layer " << i;
        if (c.layers[i].kind == AttentionKind::Sliding)
          EXPECT_EQ(c.layers[i].sliding_window, hf.at("sliding_window").get<int64_t>())
              << "layer " << i;
      }
    }
  }
}

TEST_F(RopeReference, FrequenciesAndCosSinMatchTransformers) {
  ASSERT_FALSE(entries_.empty());
  const int64_t n_pos = static_cast<int64_t>(positions_.size());
  const at::Tensor positions = at::tensor(positions_, at::kLong).view({1, n_pos});
  for (auto it = entries_.begin(); it != entries_.end(); ++it) {
    const std::string key = it.key();
    SCOPED_TRACE(key);
    const json& e = it.value();
    const std::string layer_type = e.at("layer_type").get<std::string>();
    const ModelConfig c = load(e.at("config").get<std::string>());

    // The first layer of this attention kind (models with one RoPE record it as full_attention).
    auto layer = std::find_if(c.layers.begin(), c.layers.end(), [&](const kvprime::LayerSpec& l) {
      return l.kind == kind_of(layer_type);
    });
    if (layer == c.layers.end()) layer = c.layers.begin();
    const kvprime::Rotary rotary(layer->rope, c.head_dim, c.max_position_embeddings);
    const auto& f = rotary.frequencies();

    const at::Tensor hf_inv = file_->tensor(key + "/inv_freq");
    ASSERT_EQ(f.rotary_dim, e.at("rotary_dim").get<int64_t>());
    ASSERT_EQ(f.inv_freq.sizes(), hf_inv.sizes());
    double inv_rel = max_elementwise_rel(f.inv_freq, hf_inv);
    double inv_abs = kvprime::test::max_abs_diff(f.inv_freq, hf_inv);
    EXPECT_LE(inv_rel, kInvFreqRelTol);
    EXPECT_DOUBLE_EQ(f.attention_scaling, e.at("attention_scaling").get<double>());
    // The frequencies HF's forward used: dynamic RoPE regrows them for max(position) + 1 past
    // max_position_embeddings; other types keep their initial ones.
    if (file_->contains(key + "/inv_freq_forward")) {
      const int64_t seq_len = *std::max_element(positions_.begin(), positions_.end()) + 1;
      const at::Tensor ours = kvprime::compute_rope_frequencies(layer->rope, c.head_dim,
                                                                c.max_position_embeddings, seq_len)
                                  .inv_freq;
      const at::Tensor hf_forward = file_->tensor(key + "/inv_freq_forward");
      const double fwd_rel = max_elementwise_rel(ours, hf_forward);
      EXPECT_LE(fwd_rel, kInvFreqRelTol) << "frequencies used by forward";
      inv_rel = std::max(inv_rel, fwd_rel);
      inv_abs = std::max(inv_abs, kvprime::test::max_abs_diff(ours, hf_forward));
    }

    auto [cos, sin] = rotary.cos_sin(positions, at::kFloat);  // [1, T, rotary_dim]
    const at::Tensor hf_cos = file_->tensor(key + "/cos"), hf_sin = file_->tensor(key + "/sin");
    ASSERT_EQ(cos[0].sizes(), hf_cos.sizes());
    double worst_cos = 0, worst_sin = 0;
    for (int64_t t = 0; t < n_pos; ++t) {
      const double tol = kCosSinAbsTol + static_cast<double>(std::abs(positions_[t])) * inv_abs *
                                             std::max(1.0, f.attention_scaling);
      const double dc = kvprime::test::max_abs_diff(cos[0][t], hf_cos[t]);
      const double ds = kvprime::test::max_abs_diff(sin[0][t], hf_sin[t]);
      EXPECT_LE(dc, tol) << "cos at position " << positions_[t];
      EXPECT_LE(ds, tol) << "sin at position " << positions_[t];
      worst_cos = std::max(worst_cos, dc);
      worst_sin = std::max(worst_sin, ds);
    }
    std::printf("%-42s %-8s inv_freq max rel diff %.2e  cos %.2e  sin %.2e\n", key.c_str(),
                kvprime::rope_type_name(layer->rope.type).c_str(), inv_rel, worst_cos, worst_sin);
  }
}
