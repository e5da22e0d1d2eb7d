// config.json -> RawConfig -> ModelConfig. The rules follow transformers 5.x (configuration_*.py,
// modeling_rope_utils.py, the models' attention classes); where 4.x files use other field names
// (rope_scaling, rope_local_base_freq, sliding_window_pattern) they are mapped the way 5.x maps
// them when it loads such a file.
#include "kvprime/model/config.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "kvprime/core/error.h"
#include "model/arch_defaults.h"

namespace kvprime {

using nlohmann::json;

std::string arch_name(Arch a) {
  switch (a) {
    case Arch::Llama: return "llama";
    case Arch::Mistral: return "mistral";
    case Arch::Qwen2: return "qwen2";
    case Arch::Qwen3: return "qwen3";
    case Arch::Gemma2: return "gemma2";
    case Arch::Gemma3: return "gemma3";
  }
  return "unknown";
}

std::string rope_type_name(RopeType t) {
  switch (t) {
    case RopeType::Default: return "default";
    case RopeType::Linear: return "linear";
    case RopeType::Dynamic: return "dynamic";
    case RopeType::Llama3: return "llama3";
    case RopeType::Yarn: return "yarn";
  }
  return "unknown";
}

int64_t ModelConfig::rotary_dim(int64_t il) const {
  KVP_ASSERT(il >= 0 && il < static_cast<int64_t>(layers.size()), "layer ", il, " of ",
             layers.size());
  // Python's int(head_dim * factor): truncation toward zero of the double product.
  return static_cast<int64_t>(static_cast<double>(head_dim) * layers[il].rope.partial_rotary_factor);
}

namespace {

constexpr const char* kFullAttention = "full_attention";
constexpr const char* kSlidingAttention = "sliding_attention";

// A JSON value for an error message, shortened.
std::string show(const json& v) {
  std::string s = v.dump();
  return s.size() > 80 ? s.substr(0, 77) + "..." : s;
}

// Typed access to the fields of one JSON object. Absent and null fields read as nullopt (nulls
// are recorded in `nulls` when given); a value of the wrong type is an error naming the file and
// the field, e.g. "config.json: field 'num_attention_heads' must be an integer, got "abc"".
class FieldReader {
 public:
  FieldReader(const json& obj, const std::string& source, std::string prefix,
              std::set<std::string>* nulls = nullptr)
      : obj_(obj), source_(source), prefix_(std::move(prefix)), nulls_(nulls) {}

  bool has(const std::string& key) const { return obj_.is_object() && obj_.contains(key); }

  std::optional<int64_t> integer(const std::string& key) const {
    const json* v = get(key);
    if (!v) return std::nullopt;
    if (v->is_number_unsigned()) {
      auto u = v->get<uint64_t>();
      if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        type_error(key, "an integer that fits in 64 bits", *v);
      return static_cast<int64_t>(u);
    }
    if (v->is_number_integer()) return v->get<int64_t>();
    if (v->is_number_float()) {  // 4096.0: an integer written as a float
      double d = v->get<double>();
      if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.0e18)
        return static_cast<int64_t>(d);
    }
    type_error(key, "an integer", *v);
  }

  std::optional<double> number(const std::string& key) const {
    const json* v = get(key);
    if (!v) return std::nullopt;
    if (!v->is_number()) type_error(key, "a number", *v);
    return v->get<double>();
  }

  std::optional<bool> boolean(const std::string& key) const {
    const json* v = get(key);
    if (!v) return std::nullopt;
    if (!v->is_boolean()) type_error(key, "a boolean (true or false)", *v);
    return v->get<bool>();
  }

  std::optional<std::string> string(const std::string& key) const {
    const json* v = get(key);
    if (!v) return std::nullopt;
    if (!v->is_string()) type_error(key, "a string", *v);
    return v->get<std::string>();
  }

  // eos_token_id: an integer or a list of integers.
  std::vector<int64_t> int_or_int_list(const std::string& key) const {
    const json* v = get(key);
    if (!v) return {};
    if (!v->is_array()) return {*integer(key)};
    std::vector<int64_t> out;
    for (size_t i = 0; i < v->size(); ++i) {
      const json& e = (*v)[i];
      if (!e.is_number_integer()) type_error(key, "an integer or a list of integers", *v);
      out.push_back(e.get<int64_t>());
    }
    return out;
  }

  std::vector<std::string> string_list(const std::string& key) const {
    const json* v = get(key);
    if (!v) return {};
    if (!v->is_array()) type_error(key, "a list of strings", *v);
    std::vector<std::string> out;
    for (const json& e : *v) {
      if (!e.is_string()) type_error(key, "a list of strings", *v);
      out.push_back(e.get<std::string>());
    }
    return out;
  }

  // An object, or null when absent / null.
  json object(const std::string& key) const {
    const json* v = get(key);
    if (!v) return json();
    if (!v->is_object()) type_error(key, "an object (or null)", *v);
    return *v;
  }

  std::string name(const std::string& key) const { return prefix_ + key; }

 private:
  const json* get(const std::string& key) const {
    if (!has(key)) return nullptr;
    const json& v = obj_.at(key);
    if (v.is_null()) {
      if (nulls_) nulls_->insert(key);
      return nullptr;
    }
    return &v;
  }

  [[noreturn]] void type_error(const std::string& key, const char* expected, const json& v) const {
    KVP_FAIL(source_, ": field '", name(key), "' must be ", expected, ", got ", show(v),
             "; fix the value in the file");
  }

  const json& obj_;
  const std::string& source_;
  std::string prefix_;
  std::set<std::string>* nulls_;
};

// Reads every field kvprime uses from one (text_)config object.
void read_fields(const FieldReader& r, RawConfig& raw) {
  raw.model_type = r.string("model_type");
  raw.vocab_size = r.integer("vocab_size");
  raw.hidden_size = r.integer("hidden_size");
  raw.intermediate_size = r.integer("intermediate_size");
  raw.num_hidden_layers = r.integer("num_hidden_layers");
  raw.num_attention_heads = r.integer("num_attention_heads");
  raw.num_key_value_heads = r.integer("num_key_value_heads");
  raw.head_dim = r.integer("head_dim");
  raw.max_position_embeddings = r.integer("max_position_embeddings");
  raw.sliding_window = r.integer("sliding_window");
  raw.sliding_window_pattern = r.integer("sliding_window_pattern");
  raw.max_window_layers = r.integer("max_window_layers");
  raw.bos_token_id = r.integer("bos_token_id");
  raw.pad_token_id = r.integer("pad_token_id");
  raw.eos_token_id = r.int_or_int_list("eos_token_id");
  raw.rms_norm_eps = r.number("rms_norm_eps");
  raw.rope_theta = r.number("rope_theta");
  raw.rope_local_base_freq = r.number("rope_local_base_freq");
  raw.partial_rotary_factor = r.number("partial_rotary_factor");
  raw.query_pre_attn_scalar = r.number("query_pre_attn_scalar");
  raw.attn_logit_softcapping = r.number("attn_logit_softcapping");
  raw.final_logit_softcapping = r.number("final_logit_softcapping");
  raw.attention_bias = r.boolean("attention_bias");
  raw.mlp_bias = r.boolean("mlp_bias");
  raw.tie_word_embeddings = r.boolean("tie_word_embeddings");
  raw.use_sliding_window = r.boolean("use_sliding_window");
  raw.use_bidirectional_attention = r.boolean("use_bidirectional_attention");
  raw.hidden_act = r.string("hidden_act");
  raw.hidden_activation = r.string("hidden_activation");
  raw.torch_dtype = r.string("torch_dtype");
  raw.dtype = r.string("dtype");
  raw.rope_scaling = r.object("rope_scaling");
  raw.rope_parameters = r.object("rope_parameters");
  raw.layer_types = r.string_list("layer_types");
}

}  // namespace

RawConfig parse_raw_config(const json& j, const std::string& source) {
  KVP_CHECK(j.is_object(), source, ": expected a JSON object {...} at the top level, got ",
            j.type_name(), "; is this a Hugging Face config.json?");
  RawConfig raw;
  raw.source = source;
  FieldReader top(j, source, "");
  raw.architectures = top.string_list("architectures");
  const std::optional<std::string> outer_type = top.string("model_type");

  // Gemma3ForConditionalGeneration: the language model is described by text_config; the
  // vision tower is not used.
  if (outer_type == "gemma3") {
    json text = top.object("text_config");
    raw.json = text.is_null() ? json::object() : text;  // HF: a default Gemma3TextConfig
    raw.field_prefix = "text_config.";
    raw.from_text_config = true;
  } else {
    raw.json = j;
  }

  FieldReader r(raw.json, source, raw.field_prefix, &raw.null_fields);
  read_fields(r, raw);

  if (raw.from_text_config) {
    if (!raw.model_type) raw.model_type = "gemma3_text";  // Gemma3Config.sub_configs
    // What generation and loading use sits at the top level of these files (e.g. gemma-3-4b-it's
    // eos_token_id [1, 106] and torch_dtype): take it when the text_config leaves it out.
    std::set<std::string> outer_nulls;
    FieldReader o(j, source, "", &outer_nulls);
    auto fill_int = [&](std::optional<int64_t>& f, const char* key) {
      if (!r.has(key) && o.has(key)) {
        f = o.integer(key);
        if (outer_nulls.count(key)) raw.null_fields.insert(key);
      }
    };
    fill_int(raw.bos_token_id, "bos_token_id");
    fill_int(raw.pad_token_id, "pad_token_id");
    if (!r.has("eos_token_id") && o.has("eos_token_id")) {
      raw.eos_token_id = o.int_or_int_list("eos_token_id");
      if (outer_nulls.count("eos_token_id")) raw.null_fields.insert("eos_token_id");
    }
    if (!r.has("tie_word_embeddings")) raw.tie_word_embeddings = o.boolean("tie_word_embeddings");
    if (!r.has("torch_dtype")) raw.torch_dtype = o.string("torch_dtype");
    if (!r.has("dtype")) raw.dtype = o.string("dtype");
  }
  return raw;
}

namespace {

// Everything resolve_config needs to word an error.
struct Ctx {
  const RawConfig& raw;
  const detail::ArchDefaults& d;
  std::string field(const std::string& key) const { return "'" + raw.field_prefix + key + "'"; }
};

Activation parse_activation(const std::string& name, const Ctx& c, const char* field) {
  // transformers' ACT2FN: "gelu" is the exact erf GELU, "gelu_pytorch_tanh" the tanh
  // approximation, "silu" and "swish" the same function.
  if (name == "silu" || name == "swish") return Activation::SiLU;
  if (name == "gelu_pytorch_tanh") return Activation::GeluTanh;
  if (name == "gelu") return Activation::GeluExact;
  KVP_FAIL(c.raw.source, ": field ", c.field(field), " is \"", name,
           "\", an activation kvprime does not implement; supported: silu (swish), "
           "gelu_pytorch_tanh, gelu");
}

bool is_per_layer_type(const json& rope_parameters) {
  if (!rope_parameters.is_object() || rope_parameters.empty()) return false;
  for (auto it = rope_parameters.begin(); it != rope_parameters.end(); ++it)
    if (it.key() != kFullAttention && it.key() != kSlidingAttention) return false;
  return true;
}

// One RoPE dict (5.x rope_parameters entry or 4.x rope_scaling) -> RopeParams.
// `where` names the dict for errors ("rope_scaling", "rope_parameters.full_attention").
RopeParams read_rope(const json& dict, const std::string& where, double theta_fallback,
                     std::optional<double> top_partial, int64_t max_pos, const Ctx& c) {
  const std::string& src = c.raw.source;
  const std::string prefix = c.raw.field_prefix + where + ".";
  FieldReader f(dict, src, prefix);
  RopeParams p;

  // "type" is the legacy (transformers < 4.45) name of "rope_type".
  std::string type = f.string("rope_type").value_or(f.string("type").value_or("default"));
  const std::string type_field = f.has("rope_type") ? "rope_type" : "type";
  if (type == "default") p.type = RopeType::Default;
  else if (type == "linear") p.type = RopeType::Linear;
  else if (type == "dynamic") p.type = RopeType::Dynamic;
  else if (type == "llama3") p.type = RopeType::Llama3;
  else if (type == "yarn") p.type = RopeType::Yarn;
  else
    KVP_FAIL(src, ": field '", prefix, type_field, "' is \"", type,
             "\", a RoPE type kvprime does not implement; supported: default, linear, dynamic, "
             "llama3, yarn (longrope/su and model-specific types are not)");

  p.theta = f.number("rope_theta").value_or(theta_fallback);
  KVP_CHECK(p.theta > 0, src, ": RoPE base '", prefix, "rope_theta' must be positive, got ",
            p.theta);

  // transformers' standardize_rope_params copies a top-level partial_rotary_factor over the
  // one in the dict.
  p.partial_rotary_factor = top_partial ? *top_partial
                                        : f.number("partial_rotary_factor").value_or(1.0);

  auto require = [&](const char* key) {
    KVP_CHECK(f.has(key), src, ": RoPE type '", type, "' needs field '", prefix, key,
              "', which is missing (transformers refuses this config too); add it");
  };
  if (p.type != RopeType::Default) {
    require("factor");
    std::optional<double> factor = f.number("factor");
    if (!factor) {
      // Only yarn defines a null factor: max_position_embeddings / original context.
      KVP_CHECK(p.type == RopeType::Yarn, src, ": field '", prefix,
                "factor' must be a number, got null");
    } else {
      p.factor = *factor;
      KVP_CHECK(p.factor > 0, src, ": field '", prefix, "factor' must be positive, got ",
                p.factor);
    }
  }
  if (p.type == RopeType::Llama3 || p.type == RopeType::Yarn) {
    // HF's standardize_rope_params: defaults to max_position_embeddings.
    p.original_max_position_embeddings =
        f.integer("original_max_position_embeddings").value_or(max_pos);
    KVP_CHECK(p.original_max_position_embeddings > 0, src, ": field '", prefix,
              "original_max_position_embeddings' must be positive, got ",
              p.original_max_position_embeddings);
  }
  if (p.type == RopeType::Llama3) {
    require("low_freq_factor");
    require("high_freq_factor");
    p.low_freq_factor = f.number("low_freq_factor").value_or(1.0);
    p.high_freq_factor = f.number("high_freq_factor").value_or(4.0);
    KVP_CHECK(p.high_freq_factor > p.low_freq_factor && p.low_freq_factor > 0, src, ": fields '",
              prefix, "low_freq_factor' (", p.low_freq_factor, ") and 'high_freq_factor' (",
              p.high_freq_factor, ") must satisfy 0 < low < high (llama3 interpolates between them)");
  }
  if (p.type == RopeType::Yarn) {
    if (!f.number("factor"))
      p.factor = static_cast<double>(max_pos) / p.original_max_position_embeddings;
    p.attention_factor = f.number("attention_factor");
    // HF: `get("beta_fast") or 32`: absent, null and 0 all mean the default.
    double bf = f.number("beta_fast").value_or(0.0), bs = f.number("beta_slow").value_or(0.0);
    p.beta_fast = bf != 0 ? bf : 32.0;
    p.beta_slow = bs != 0 ? bs : 1.0;
    p.mscale = f.number("mscale");
    p.mscale_all_dim = f.number("mscale_all_dim");
    p.truncate = f.boolean("truncate").value_or(true);
  }
  return p;
}

// Validates a layer's RoPE against the head size.
void check_rope(const RopeParams& p, int64_t head_dim, const std::string& what, const Ctx& c) {
  const std::string& src = c.raw.source;
  // The architectures kvprime runs rotate the whole head in transformers (apply_rotary_pos_emb
  // has no pass-through part, and their default rope ignores partial_rotary_factor), so a factor
  // other than 1 would not match HF.
  KVP_CHECK(p.partial_rotary_factor == 1.0, src, ": ", what, " has partial_rotary_factor ",
            p.partial_rotary_factor, ", but transformers' ", c.d.model_type,
            " model rotates the whole head; remove the field or use an architecture with partial "
            "rotary embeddings");
  const int64_t rotary_dim =
      static_cast<int64_t>(static_cast<double>(head_dim) * p.partial_rotary_factor);
  KVP_CHECK(rotary_dim > 0 && rotary_dim % 2 == 0 && rotary_dim <= head_dim, src, ": ", what,
            " gives rotary_dim ", rotary_dim, " (head_dim ", head_dim,
            " x partial_rotary_factor); it must be even and in (0, head_dim]");
}

}  // namespace

ModelConfig resolve_config(const RawConfig& raw) {
  const std::string& src = raw.source;

  // 1. Which model: model_type, checked against the architecture class when both are given.
  const detail::ArchitectureInfo* arch_info = nullptr;
  for (const auto& a : raw.architectures)
    if ((arch_info = detail::find_architecture(a))) break;
  KVP_CHECK(raw.architectures.empty() || arch_info, src, ": field 'architectures' is ",
            json(raw.architectures).dump(), ", which kvprime does not run; supported: ",
            detail::supported_architectures());
  std::string model_type;
  if (raw.model_type) model_type = *raw.model_type;
  else if (arch_info) model_type = arch_info->text_model_type;
  KVP_CHECK(!model_type.empty(), src,
            ": neither 'model_type' nor 'architectures' is given, so the model is unknown; add "
            "\"model_type\" (one of ",
            detail::supported_model_types(), ")");
  const detail::ArchDefaults* dp = detail::find_arch_defaults(model_type);
  KVP_CHECK(dp, src, ": field '", raw.field_prefix, "model_type' is \"", model_type,
            "\", which kvprime does not support; supported model types: ",
            detail::supported_model_types(), " (and gemma3 multimodal configs via text_config)");
  const detail::ArchDefaults& d = *dp;
  KVP_CHECK(!arch_info || arch_info->text_model_type == model_type, src, ": architecture ",
            arch_info ? arch_info->name : "", " runs model_type \"",
            arch_info ? arch_info->text_model_type : "", "\", but field '", raw.field_prefix,
            "model_type' is \"", model_type, "\"; fix one of them");
  const Ctx ctx{raw, d};

  ModelConfig c;
  c.source = src;
  c.architecture = arch_info ? arch_info->name : d.architecture;
  c.model_type = model_type;
  c.arch = d.arch;
  const bool gemma = d.arch == Arch::Gemma2 || d.arch == Arch::Gemma3;

  // 2. Sizes.
  auto positive = [&](int64_t v, const char* key) {
    KVP_CHECK(v > 0, src, ": field ", ctx.field(key), " must be a positive integer, got ", v);
    return v;
  };
  c.vocab_size = positive(raw.vocab_size.value_or(d.vocab_size), "vocab_size");
  c.hidden_size = positive(raw.hidden_size.value_or(d.hidden_size), "hidden_size");
  c.intermediate_size =
      positive(raw.intermediate_size.value_or(d.intermediate_size), "intermediate_size");
  c.n_layer = positive(raw.num_hidden_layers.value_or(d.num_hidden_layers), "num_hidden_layers");
  c.n_head = positive(raw.num_attention_heads.value_or(d.num_attention_heads),
                      "num_attention_heads");
  // null / absent without a default: multi-head attention (HF: num_key_value_heads = heads).
  c.n_head_kv = positive(raw.num_key_value_heads ? *raw.num_key_value_heads
                         : (raw.is_null("num_key_value_heads") || !d.num_key_value_heads)
                             ? c.n_head
                             : *d.num_key_value_heads,
                         "num_key_value_heads");
  KVP_CHECK(c.n_head % c.n_head_kv == 0, src, ": field ", ctx.field("num_attention_heads"), " (",
            c.n_head, ") must be a multiple of ", ctx.field("num_key_value_heads"), " (",
            c.n_head_kv, "): grouped-query attention shares each key/value head among "
            "num_attention_heads / num_key_value_heads query heads; fix one of the two");
  // HF: `getattr(config, "head_dim", None) or hidden_size // num_attention_heads`.
  if (raw.head_dim) {
    c.head_dim = positive(*raw.head_dim, "head_dim");
  } else if (d.head_dim && !raw.is_null("head_dim")) {
    c.head_dim = *d.head_dim;
  } else {
    KVP_CHECK(c.hidden_size % c.n_head == 0, src, ": no 'head_dim' is given and ",
              ctx.field("hidden_size"), " (", c.hidden_size, ") is not a multiple of ",
              ctx.field("num_attention_heads"), " (", c.n_head,
              "); add \"head_dim\" or fix the sizes");
    c.head_dim = c.hidden_size / c.n_head;
  }
  KVP_CHECK(c.head_dim % 2 == 0, src, ": head_dim ", c.head_dim,
            " is odd; rotary embeddings rotate pairs of dimensions, so it must be even (field ",
            ctx.field("head_dim"), ")");
  c.max_position_embeddings = positive(
      raw.max_position_embeddings.value_or(d.max_position_embeddings), "max_position_embeddings");
  c.rms_norm_eps = raw.rms_norm_eps.value_or(d.rms_norm_eps);
  KVP_CHECK(c.rms_norm_eps > 0, src, ": field ", ctx.field("rms_norm_eps"),
            " must be positive, got ", c.rms_norm_eps);
  KVP_CHECK(!raw.use_bidirectional_attention.value_or(false), src, ": field ",
            ctx.field("use_bidirectional_attention"),
            " is true (an embedding model); kvprime runs causal language models only");

  // 3. Block structure: which projections have biases, norms, scales.
  switch (d.arch) {
    case Arch::Llama:  // attention_bias biases q, k, v and o; mlp_bias the three MLP projections
      c.qkv_bias = c.o_bias = raw.attention_bias.value_or(false);
      c.mlp_bias = raw.mlp_bias.value_or(false);
      break;
    case Arch::Mistral:  // no biases (the modeling code has bias=False everywhere)
      break;
    case Arch::Qwen2:  // q, k, v always biased, o never (attention_bias is not read)
      c.qkv_bias = true;
      break;
    case Arch::Qwen3:
    case Arch::Gemma2:
    case Arch::Gemma3:
      c.qkv_bias = c.o_bias = raw.attention_bias.value_or(false);
      break;
  }
  c.tie_word_embeddings = raw.tie_word_embeddings.value_or(d.tie_word_embeddings);
  c.qk_norm = d.arch == Arch::Qwen3 || d.arch == Arch::Gemma3;
  c.norm_one_plus = gemma;
  c.sandwich_norm = gemma;
  c.embed_scale = gemma ? std::sqrt(static_cast<double>(c.hidden_size)) : 1.0;
  if (gemma) {
    const double qpas = raw.query_pre_attn_scalar.value_or(d.query_pre_attn_scalar);
    KVP_CHECK(qpas > 0, src, ": field ", ctx.field("query_pre_attn_scalar"),
              " must be positive, got ", qpas);
    c.attn_scale = std::pow(qpas, -0.5);  // HF: query_pre_attn_scalar**-0.5
    // A null softcap disables it; an absent one takes the default (Gemma 2: 50 / 30).
    auto softcap = [&](const std::optional<double>& v, const std::optional<double>& def,
                       const char* key) -> std::optional<double> {
      std::optional<double> s = v ? v : raw.is_null(key) ? std::nullopt : def;
      KVP_CHECK(!s || *s > 0, src, ": field ", ctx.field(key), " must be positive or null, got ",
                s.value_or(0.0));
      return s;
    };
    c.attn_logit_softcap =
        softcap(raw.attn_logit_softcapping, d.attn_logit_softcapping, "attn_logit_softcapping");
    c.final_logit_softcap =
        softcap(raw.final_logit_softcapping, d.final_logit_softcapping, "final_logit_softcapping");
    // Gemma's MLP reads hidden_activation; hidden_act, often also present, is ignored by HF.
    c.act = parse_activation(raw.hidden_activation.value_or(d.activation), ctx, "hidden_activation");
  } else {
    c.attn_scale = std::pow(static_cast<double>(c.head_dim), -0.5);  // HF: head_dim**-0.5
    c.act = parse_activation(raw.hidden_act.value_or(d.activation), ctx, "hidden_act");
  }

  // 4. Attention kind per layer: the model type's rule, or layer_types when given.
  std::optional<int64_t> window;  // the sliding window of the sliding layers, if any
  std::vector<AttentionKind> kinds(c.n_layer, AttentionKind::Full);
  const std::optional<int64_t> sw =
      raw.sliding_window ? raw.sliding_window
                         : raw.is_null("sliding_window") ? std::nullopt : d.sliding_window;
  std::string window_why = ctx.field("sliding_window") + " is null";
  switch (d.arch) {
    case Arch::Llama:
      break;
    case Arch::Mistral:  // one window (or none) for every layer
      window = sw;
      if (window)
        for (auto& k : kinds) k = AttentionKind::Sliding;
      break;
    case Arch::Qwen2:
    case Arch::Qwen3: {
      // HF: sliding_window = sliding_window if use_sliding_window else None; layer i slides iff
      // sliding_window is not None and i >= max_window_layers.
      window = raw.use_sliding_window.value_or(false) ? sw : std::nullopt;
      if (!raw.use_sliding_window.value_or(false))
        window_why = ctx.field("use_sliding_window") + " is false";
      const int64_t mwl = raw.max_window_layers.value_or(d.max_window_layers);
      for (int64_t i = 0; i < c.n_layer; ++i)
        if (window && i >= mwl) kinds[i] = AttentionKind::Sliding;
      break;
    }
    case Arch::Gemma2:  // even layers slide: (i + 1) % 2 != 0
      window = sw;
      for (int64_t i = 0; i < c.n_layer; ++i)
        if ((i + 1) % 2 != 0) kinds[i] = AttentionKind::Sliding;
      break;
    case Arch::Gemma3: {  // every pattern-th layer is global: slides iff (i + 1) % pattern != 0
      window = sw;
      const int64_t pattern = raw.sliding_window_pattern.value_or(d.sliding_window_pattern);
      KVP_CHECK(pattern > 0, src, ": field ", ctx.field("sliding_window_pattern"),
                " must be a positive integer, got ", pattern);
      for (int64_t i = 0; i < c.n_layer; ++i)
        if ((i + 1) % pattern != 0) kinds[i] = AttentionKind::Sliding;
      break;
    }
  }
  if (!raw.layer_types.empty()) {
    KVP_CHECK(static_cast<int64_t>(raw.layer_types.size()) == c.n_layer, src, ": field ",
              ctx.field("layer_types"), " has ", raw.layer_types.size(),
              " entries but the model has ", c.n_layer, " layers (",
              ctx.field("num_hidden_layers"), "); give one entry per layer");
    std::vector<AttentionKind> listed(c.n_layer);
    for (int64_t i = 0; i < c.n_layer; ++i) {
      const std::string& t = raw.layer_types[i];
      KVP_CHECK(t == kFullAttention || t == kSlidingAttention, src, ": field ",
                ctx.field("layer_types"), " entry ", i, " is \"", t,
                "\"; kvprime supports \"full_attention\" and \"sliding_attention\"");
      listed[i] = t == kFullAttention ? AttentionKind::Full : AttentionKind::Sliding;
    }
    if (d.arch == Arch::Llama || d.arch == Arch::Mistral) {
      // transformers' Llama/Mistral ignore layer_types: honour it only where it agrees.
      KVP_CHECK(listed == kinds, src, ": field ", ctx.field("layer_types"),
                " disagrees with what transformers' ", d.model_type,
                " model does (it ignores layer_types and uses ",
                d.arch == Arch::Llama ? "full attention everywhere"
                                      : "sliding_window for every layer",
                "); remove layer_types or use an architecture that alternates attention kinds");
    }
    kinds = listed;
  }
  for (int64_t i = 0; i < c.n_layer; ++i) {
    if (kinds[i] != AttentionKind::Sliding) continue;
    KVP_CHECK(window, src, ": layer ", i, " uses sliding-window attention but ", window_why,
              " (transformers fails on this config too); set ", ctx.field("sliding_window"),
              " or make the layer full_attention");
    KVP_CHECK(*window > 0, src, ": field ", ctx.field("sliding_window"),
              " must be a positive integer, got ", *window);
  }

  // 5. RoPE per layer.
  const json& rp = raw.rope_parameters;
  const int64_t max_pos = c.max_position_embeddings;
  RopeParams global_rope, local_rope;
  if (d.arch == Arch::Gemma3) {
    // Gemma3TextConfig.convert_rope_params_to_dict: rope_parameters per layer type; a 4.x
    // rope_scaling updates the full-attention entry; rope_theta / rope_local_base_freq fill the
    // missing thetas of the full / sliding entries.
    json full = json::object(), sliding = json::object();
    if (rp.is_object()) {
      KVP_CHECK(is_per_layer_type(rp), src, ": field ", ctx.field("rope_parameters"),
                " must map layer types to RoPE settings for Gemma 3, e.g. {\"full_attention\": "
                "{...}, \"sliding_attention\": {...}}; got ", show(rp));
      FieldReader f(rp, src, raw.field_prefix + "rope_parameters.");
      json fa = f.object(kFullAttention), sa = f.object(kSlidingAttention);
      if (fa.is_object()) full = fa;
      if (sa.is_object()) sliding = sa;
    }
    std::string full_where = "rope_parameters.full_attention";
    if (raw.rope_scaling.is_object()) {
      full.update(raw.rope_scaling);
      full_where = rp.is_object() ? "rope_parameters.full_attention/rope_scaling" : "rope_scaling";
    }
    global_rope = read_rope(full, full_where, raw.rope_theta.value_or(d.rope_theta),
                            raw.partial_rotary_factor, max_pos, ctx);
    local_rope = read_rope(sliding, "rope_parameters.sliding_attention",
                           raw.rope_local_base_freq.value_or(d.rope_local_base_freq),
                           raw.partial_rotary_factor, max_pos, ctx);
    check_rope(global_rope, c.head_dim, "the full-attention RoPE", ctx);
    check_rope(local_rope, c.head_dim, "the sliding-attention RoPE", ctx);
  } else {
    // One setting for all layers. transformers 5 reads `rope_scaling or rope_parameters`.
    json dict = json::object();
    std::string where = "rope_parameters";
    if (raw.rope_scaling.is_object()) {
      dict = raw.rope_scaling;
      where = "rope_scaling";
    } else if (rp.is_object()) {
      KVP_CHECK(!is_per_layer_type(rp), src, ": field ", ctx.field("rope_parameters"),
                " is given per layer type, but transformers' ", d.model_type,
                " model uses one RoPE setting for all layers; write a single dict");
      dict = rp;
    }
    global_rope = read_rope(dict, where, raw.rope_theta.value_or(d.rope_theta),
                            raw.partial_rotary_factor, max_pos, ctx);
    check_rope(global_rope, c.head_dim, "the RoPE setting", ctx);
    local_rope = global_rope;
  }

  c.layers.resize(c.n_layer);
  for (int64_t i = 0; i < c.n_layer; ++i) {
    LayerSpec& l = c.layers[i];
    l.kind = kinds[i];
    l.sliding_window = l.kind == AttentionKind::Sliding ? *window : 0;
    l.rope = l.kind == AttentionKind::Sliding ? local_rope : global_rope;
  }

  // 6. Loading and generation.
  if (raw.from_text_config)
    c.weight_prefixes = {"language_model.model.", "model.language_model."};
  else
    c.weight_prefixes = {"model."};
  c.bos_token_id = raw.bos_token_id ? raw.bos_token_id
                   : raw.is_null("bos_token_id") ? std::nullopt : d.bos_token_id;
  c.pad_token_id = raw.pad_token_id ? raw.pad_token_id
                   : raw.is_null("pad_token_id") ? std::nullopt : d.pad_token_id;
  if (!raw.eos_token_id.empty()) c.eos_token_ids = raw.eos_token_id;
  else if (!raw.is_null("eos_token_id") && d.eos_token_id) c.eos_token_ids = {*d.eos_token_id};
  c.torch_dtype = raw.dtype.value_or(raw.torch_dtype.value_or(""));
  return c;
}

ModelConfig load_model_config(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  std::string file = path;
  if (fs::is_directory(path, ec)) {
    file = (fs::path(path) / "config.json").string();
    KVP_CHECK(fs::exists(file, ec), path, ": directory has no config.json; point to a Hugging "
              "Face model directory or to its config.json");
  }
  KVP_CHECK(fs::exists(file, ec), file, ": no such file; give a config.json or the model "
            "directory that holds it");
  std::ifstream in(file, std::ios::binary);
  KVP_CHECK(in.good(), file, ": cannot open for reading (check permissions)");
  std::stringstream ss;
  ss << in.rdbuf();
  KVP_CHECK(!in.bad(), file, ": read error");
  json j;
  try {
    j = json::parse(ss.str());
  } catch (const json::exception& e) {  // parse_error, and out_of_range for a number like 1e999
    KVP_FAIL(file, ": not valid JSON (", e.what(), "); is the file truncated or not a config.json?");
  }
  return resolve_config(parse_raw_config(j, file));
}

}  // namespace kvprime
