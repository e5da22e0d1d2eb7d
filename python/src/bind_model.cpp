// Model, Tokenizer and the resolved ModelConfig.
#include <torch/csrc/utils/pybind.h>
#include <pybind11/stl.h>

#include "bindings.h"
#include "kvprime/core/dtype.h"
#include "kvprime/core/error.h"
#include "kvprime/model/config.h"
#include "kvprime/model/model.h"
#include "kvprime/model/rope.h"
#include "kvprime/tokenizer/tokenizer.h"

namespace kvprime::py {

namespace {

LogitsMode parse_logits(const std::string& s) {
  if (s == "all") return LogitsMode::All;
  if (s == "last") return LogitsMode::Last;
  if (s == "none") return LogitsMode::None;
  KVP_FAIL("logits='", s, "': expected 'all', 'last' or 'none'");
}

}  // namespace

void bind_model(pyb::module_& m) {
  using namespace pybind11::literals;

  pyb::class_<ModelConfig>(m, "ModelConfig",
                           "The resolved config.json of a loaded model (read-only view).")
      .def_readonly("source", &ModelConfig::source)
      .def_readonly("architecture", &ModelConfig::architecture)
      .def_readonly("model_type", &ModelConfig::model_type)
      .def_readonly("vocab_size", &ModelConfig::vocab_size)
      .def_readonly("hidden_size", &ModelConfig::hidden_size)
      .def_readonly("intermediate_size", &ModelConfig::intermediate_size)
      .def_readonly("num_hidden_layers", &ModelConfig::n_layer)
      .def_readonly("num_attention_heads", &ModelConfig::n_head)
      .def_readonly("num_key_value_heads", &ModelConfig::n_head_kv)
      .def_readonly("head_dim", &ModelConfig::head_dim)
      .def_readonly("max_position_embeddings", &ModelConfig::max_position_embeddings)
      .def_readonly("rms_norm_eps", &ModelConfig::rms_norm_eps)
      .def_readonly("tie_word_embeddings", &ModelConfig::tie_word_embeddings)
      .def_readonly("bos_token_id", &ModelConfig::bos_token_id)
      .def_property_readonly("rope_theta",
                             [](const ModelConfig& c) { return c.layers.at(0).rope.theta; })
      .def("__repr__", [](const ModelConfig& c) {
        return "<ModelConfig " + c.model_type + " layers=" + std::to_string(c.n_layer) +
               " hidden=" + std::to_string(c.hidden_size) + " heads=" + std::to_string(c.n_head) +
               "/" + std::to_string(c.n_head_kv) + " head_dim=" + std::to_string(c.head_dim) + ">";
      });

  // Model is move-only in C++; Python holds it through a shared_ptr (caches keep no reference to
  // it: they carry the model's identity, which every operation checks).
  pyb::class_<Model, std::shared_ptr<Model>>(m, "Model",
      "A Hugging Face checkpoint (config.json + safetensors) loaded into LibTorch.")
      .def_static(
          "load",
          [](const std::string& dir, const std::string& dtype, const std::string& device,
             const std::string& name, const std::string& weights) {
            LoadOptions o;
            o.dtype = parse_dtype(dtype, "dtype");
            o.device = parse_device(device, "device");
            o.name = name;
            o.weights = parse_weight_format(weights, "weights");
            pyb::gil_scoped_release release;
            return std::make_shared<Model>(Model::load(dir, o));
          },
          "path"_a, "dtype"_a = "float32", "device"_a = "cpu", "name"_a = "", "weights"_a = "native",
          "Loads config.json + *.safetensors from `path` (dtype: float32 | bfloat16 | float16; "
          "device: cpu | cuda | cuda:N; weights: native | nf4 | nf4-dq).")
      .def_property_readonly("config", &Model::config, pyb::return_value_policy::reference_internal)
      .def_property_readonly("dtype", [](const Model& mo) { return dtype_name(mo.dtype()); })
      .def_property_readonly("device", [](const Model& mo) { return mo.device().str(); })
      .def_property_readonly("name", [](const Model& mo) { return mo.identity().name; })
      .def_property_readonly("fingerprint", [](const Model& mo) { return mo.identity().fingerprint; })
      .def("new_cache", &Model::new_cache, "batch"_a = 1, "An empty cache of this model.")
      .def(
          "forward",
          [](const Model& mo, const at::Tensor& input_ids, KVCache* cache,
             std::optional<at::Tensor> positions, const std::string& logits,
             std::optional<at::Tensor> attention_mask, std::optional<at::Tensor> custom_mask) {
            ForwardOptions o;
            o.logits = parse_logits(logits);
            if (attention_mask) o.attention_mask = *attention_mask;
            if (custom_mask) o.custom_mask = *custom_mask;
            KVP_CHECK(input_ids.dim() == 2, "input_ids: expected [batch, tokens], got ",
                      input_ids.dim(), " dimensions");
            pyb::gil_scoped_release release;
            KVCache scratch;
            KVCache& c = cache ? *cache : (scratch = mo.new_cache(input_ids.size(0)));
            at::Tensor pos = positions ? *positions : mo.continue_positions(c, input_ids.size(1));
            return mo.forward(input_ids, pos, c, o);
          },
          "input_ids"_a, "cache"_a = nullptr, "positions"_a = std::nullopt, "logits"_a = "all",
          "attention_mask"_a = std::nullopt, "custom_mask"_a = std::nullopt,
          "One forward of input_ids [B, T] (int64). With `cache`, T slots are appended to it and "
          "positions default to continuing it; returns float32 logits [B, T, vocab] ('all'), "
          "[B, vocab] ('last') or an empty tensor ('none').")
      .def(
          "rotary_cos_sin",
          [](const Model& mo, const at::Tensor& positions, int64_t layer, const std::string& dtype) {
            KVP_CHECK(layer >= 0 && layer < mo.config().n_layer, "layer ", layer, " out of range [0, ",
                      mo.config().n_layer, ")");
            return mo.rotary(layer).cos_sin(positions.to(at::kLong), parse_dtype(dtype, "dtype"));
          },
          "positions"_a, "layer"_a = 0, "dtype"_a = "float32",
          "The model's own RoPE (HF rotary_emb): cos, sin of shape [B, T, rotary_dim] for "
          "positions [B, T].")
      .def("__repr__", [](const Model& mo) {
        return "<kvprime.Model " + mo.identity().name + " (" + mo.config().model_type + ", " +
               dtype_name(mo.dtype()) + ", " + mo.device().str() + ")>";
      });

  m.def("rotate_half", &rotate_half, "x"_a, "rotate_half([a, b]) = [-b, a] over the last dimension.");

  pyb::class_<Tokenizer>(m, "Tokenizer", "A Hugging Face tokenizer.json, re-implemented in C++.")
      .def_static("from_file", &Tokenizer::from_file, "tokenizer_json"_a, "tokenizer_config"_a = "")
      .def_static("from_checkpoint", &Tokenizer::from_checkpoint, "path"_a,
                  "tokenizer.json (+ tokenizer_config.json) of a checkpoint directory.")
      .def("encode",
           [](const Tokenizer& t, const std::string& text, bool add_special_tokens) {
             return t.encode(text, add_special_tokens);
           },
           "text"_a, "add_special_tokens"_a = true)
      .def("encode_with_offsets",
           [](const Tokenizer& t, const std::string& text, bool add_special_tokens) {
             Encoding e = t.encode_with_offsets(text, add_special_tokens);
             return pyb::dict("ids"_a = e.ids, "tokens"_a = e.tokens, "offsets"_a = e.offsets,
                              "special_tokens_mask"_a = e.special_tokens_mask);
           },
           "text"_a, "add_special_tokens"_a = true,
           "ids, tokens, byte offsets [begin, end) and the special-tokens mask.")
      .def("decode", &Tokenizer::decode, "ids"_a, "skip_special_tokens"_a = false)
      .def("id_to_token", &Tokenizer::id_to_token, "id"_a)
      .def("token_to_id", [](const Tokenizer& t, const std::string& s) { return t.token_to_id(s); },
           "token"_a)
      .def_property_readonly("vocab_size", &Tokenizer::vocab_size)
      .def_property_readonly("bos_token_id", &Tokenizer::bos_id)
      .def_property_readonly("eos_token_id", &Tokenizer::eos_id)
      .def("is_special", &Tokenizer::is_special, "id"_a);
}

}  // namespace kvprime::py
