#include "kvprime/experiment/spec.h"

// Header-only: the one translation unit that parses TOML compiles toml++ in.
#define TOML_HEADER_ONLY 1
#include <toml++/toml.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "kvprime/core/error.h"

namespace kvprime {
namespace {

namespace fs = std::filesystem;

std::string where(const std::string& origin, const toml::source_region& r) {
  std::ostringstream os;
  os << origin;
  if (r.begin.line > 0) os << ":" << r.begin.line << ":" << r.begin.column;
  return os.str();
}

// Typed access to one TOML table with errors that name file:line:col and the field, and a
// refusal of unknown keys (a typo must not silently fall back to a default).
class Table {
 public:
  Table(const toml::table& t, std::string origin, std::string path)
      : t_(t), origin_(std::move(origin)), path_(std::move(path)) {}

  template <typename T>
  std::optional<T> get(const std::string& key, const char* type_name) {
    used_.insert(key);
    const toml::node* n = t_.get(key);
    if (!n) return std::nullopt;
    if constexpr (std::is_same_v<T, double>) {
      if (auto v = n->value<double>()) return *v;  // integers are accepted as floats
    } else if constexpr (std::is_same_v<T, int64_t>) {
      if (n->is_integer()) return n->value<int64_t>();
    } else {
      if (auto v = n->value<T>()) return *v;
    }
    KVP_FAIL(where(origin_, n->source()), ": ", field(key), " must be ", type_name, ", got ",
             n->type());
  }

  std::string str(const std::string& key, const std::string& def) {
    return get<std::string>(key, "a string").value_or(def);
  }
  int64_t integer(const std::string& key, int64_t def, int64_t min) {
    int64_t v = get<int64_t>(key, "an integer").value_or(def);
    KVP_CHECK(v >= min, where_of(key), ": ", field(key), " = ", v, " must be >= ", min);
    return v;
  }
  bool boolean(const std::string& key, bool def) { return get<bool>(key, "true or false").value_or(def); }

  // One of `choices` (the accepted values are listed in the error).
  std::string choice(const std::string& key, const std::string& def,
                     const std::vector<std::string>& choices) {
    std::string v = str(key, def);
    for (const auto& c : choices)
      if (v == c) return v;
    std::string list;
    for (const auto& c : choices) list += (list.empty() ? "" : ", ") + c;
    KVP_FAIL(where_of(key), ": ", field(key), " = \"", v, "\" is not one of: ", list);
  }

  std::vector<int64_t> int_list(const std::string& key) {
    used_.insert(key);
    std::vector<int64_t> out;
    const toml::node* n = t_.get(key);
    if (!n) return out;
    const toml::array* a = n->as_array();
    KVP_CHECK(a, where(origin_, n->source()), ": ", field(key), " must be an array of integers");
    for (const auto& e : *a) {
      KVP_CHECK(e.is_integer(), where(origin_, e.source()), ": ", field(key),
                " must hold integers only");
      out.push_back(*e.value<int64_t>());
    }
    return out;
  }

  void refuse_unknown() const {
    for (const auto& [k, v] : t_) {
      const std::string key(k.str());
      if (!used_.count(key)) {
        std::string list;
        for (const auto& u : used_) list += (list.empty() ? "" : ", ") + u;
        KVP_FAIL(where(origin_, v.source()), ": unknown field ", field(key), " (accepted: ", list, ")");
      }
    }
  }

  std::string where_of(const std::string& key) const {
    const toml::node* n = t_.get(key);
    return n ? where(origin_, n->source()) : where(origin_, t_.source());
  }
  std::string field(const std::string& key) const { return "'" + path_ + "." + key + "'"; }
  const toml::table& raw() const { return t_; }

 private:
  const toml::table& t_;
  std::string origin_, path_;
  std::set<std::string> used_;
};

PrefixKind parse_prefix_kind(const std::string& s) {
  static const std::map<std::string, PrefixKind> m{
      {"none", PrefixKind::None},           {"oracle", PrefixKind::Oracle},
      {"shuffled", PrefixKind::Shuffled},   {"reversed", PrefixKind::Reversed},
      {"surrogate", PrefixKind::Surrogate}, {"generated", PrefixKind::Generated},
      {"keywords", PrefixKind::Keywords},   {"first_sentence", PrefixKind::FirstSentence},
      {"static", PrefixKind::Static},       {"random_words", PrefixKind::RandomWords}};
  return m.at(s);
}

std::string resolve(const std::string& base, const std::string& p) {
  if (p.empty() || fs::path(p).is_absolute()) return p;
  return (fs::path(base) / p).lexically_normal().string();
}

ConditionSpec parse_condition(const toml::table& t, const std::string& origin, size_t index) {
  Table c(t, origin, "condition[" + std::to_string(index) + "]");
  ConditionSpec s;
  s.name = c.str("name", "");
  KVP_CHECK(!s.name.empty(), where(origin, t.source()), ": condition ", index,
            " has no name; give each [[condition]] a unique name = \"...\"");
  KVP_CHECK(s.name.find_first_of(" \t\n,") == std::string::npos, c.where_of("name"),
            ": condition name \"", s.name, "\" must not contain spaces or commas");
  PrefixSpec& p = s.prefix;
  p.kind = parse_prefix_kind(c.choice("prefix", "none",
                                      {"none", "oracle", "shuffled", "reversed", "surrogate", "generated",
                                       "keywords", "first_sentence", "static", "random_words"}));
  p.surrogate_index = c.integer("surrogate_index", 0, 0);
  p.text = c.str("text", "");
  p.generate_template = c.str("generate_template", p.generate_template);
  p.max_new_tokens = c.integer("max_new_tokens", p.max_new_tokens, 1);
  p.top_k = c.integer("top_k", p.top_k, 1);
  p.n_words = c.integer("n_words", p.n_words, 1);
  p.length_matched = c.boolean("length_matched", p.length_matched);
  p.template_ = c.str("prefix_template", p.template_);
  p.repetitions = c.integer("repetitions", 1, 1);
  if (p.kind == PrefixKind::Static)
    KVP_CHECK(!p.text.empty(), where(origin, t.source()), ": condition '", s.name,
              "': prefix = \"static\" needs text = \"...\"");
  if (p.kind == PrefixKind::Generated)
    KVP_CHECK(p.generate_template.find("{document}") != std::string::npos, c.where_of("generate_template"),
              ": condition '", s.name, "': generate_template must contain {document}");
  KVP_CHECK(p.template_.find("{prefix}") != std::string::npos, c.where_of("prefix_template"),
            ": condition '", s.name, "': prefix_template must contain {prefix}");

  s.mask = c.choice("mask", "causal", {"causal", "block"}) == "block" ? BuildMask::Block : BuildMask::Causal;
  s.context = c.choice("context", "truncated", {"truncated", "full"}) == "full" ? ContextMode::Full
                                                                              : ContextMode::Truncated;
  s.correct_rope = c.boolean("correct_rope", true);
  if (auto n = c.get<int64_t>("roundtrip_noise", "an integer offset")) {
    KVP_CHECK(*n > 0, c.where_of("roundtrip_noise"), ": roundtrip_noise must be a positive offset");
    s.roundtrip_noise = *n;
  }
  s.keys = c.choice("keys", "self", {"self", "bare"}) == "bare" ? CacheSource::Bare : CacheSource::Self;
  s.values = c.choice("values", "self", {"self", "bare"}) == "bare" ? CacheSource::Bare : CacheSource::Self;
  s.layers = c.int_list("layers");
  for (int64_t l : s.layers)
    KVP_CHECK(l >= 0, c.where_of("layers"), ": layer indices must be >= 0");
  if (auto a = c.get<double>("value_alpha", "a number")) {
    KVP_CHECK(*a >= 0.0 && *a <= 1.0, c.where_of("value_alpha"), ": value_alpha must be in [0, 1]");
    s.value_alpha = *a;
  }
  s.hide_prefix = c.boolean("hide_prefix", false);
  s.target = c.choice("target", "nll", {"nll", "pmi"}) == "pmi" ? ScoreTarget::Pmi : ScoreTarget::Nll;
  if (auto n = c.get<int64_t>("pad_to_tokens", "an integer")) {
    KVP_CHECK(*n > 0, c.where_of("pad_to_tokens"), ": pad_to_tokens must be positive");
    s.pad_to_tokens = *n;
  }
  c.refuse_unknown();

  // Combinations that have no meaning are refused rather than silently ignored.
  const bool has_prefix = p.kind != PrefixKind::None;
  auto bad = [&](bool cond, const std::string& why) {
    KVP_CHECK(!cond, where(origin, t.source()), ": condition '", s.name, "': ", why);
  };
  bad(s.mask == BuildMask::Block && !has_prefix, "mask = \"block\" needs a prefix");
  bad(s.hide_prefix && s.context != ContextMode::Full,
      "hide_prefix applies to context = \"full\" (a truncated cache has no prefix slots)");
  bad(s.context == ContextMode::Full && !has_prefix, "context = \"full\" needs a prefix");
  bad(s.context == ContextMode::Full &&
          (s.keys == CacheSource::Bare || s.values == CacheSource::Bare || s.value_alpha),
      "mixing with the bare cache (keys/values/value_alpha) needs context = \"truncated\"");
  bad(s.value_alpha && s.values == CacheSource::Bare,
      "value_alpha blends bare and primed values; do not also set values = \"bare\"");
  bad(!s.layers.empty() && s.keys == CacheSource::Self && s.values == CacheSource::Self &&
          !s.value_alpha,
      "layers = [...] selects where this condition's keys/values are used; set keys or values = \"bare\"");
  bad(!has_prefix && (s.keys == CacheSource::Bare || s.values == CacheSource::Bare || s.value_alpha),
      "mixing with the bare cache needs a prefix (the bare condition is the bare cache)");
  bad(!s.correct_rope && (s.keys == CacheSource::Bare || s.values == CacheSource::Bare || s.value_alpha),
      "mixing with the bare cache needs correct_rope = true (keys must sit at the bare cache's positions)");
  bad(!s.correct_rope && s.context == ContextMode::Full, "correct_rope = false has no effect with context = \"full\"");
  return s;
}

ExperimentConfig parse_templates(const toml::table* t, const std::string& origin) {
  ExperimentConfig cfg;
  if (!t) return cfg;
  Table c(*t, origin, "templates");
  cfg.document_template = c.str("document", cfg.document_template);
  cfg.query_template = c.str("query", cfg.query_template);
  cfg.surrogate_template = c.str("surrogate", cfg.surrogate_template);
  cfg.prefix_separator = c.str("prefix_separator", cfg.prefix_separator);
  cfg.suffix_template = c.str("suffix", cfg.suffix_template);
  cfg.answer_template = c.str("answer", cfg.answer_template);
  c.refuse_unknown();
  auto needs = [&](const std::string& key, const std::string& tpl, const char* ph) {
    KVP_CHECK(tpl.find(ph) != std::string::npos, c.where_of(key), ": templates.", key,
              " must contain ", ph);
  };
  needs("document", cfg.document_template, "{document}");
  needs("query", cfg.query_template, "{query}");
  needs("answer", cfg.answer_template, "{answer}");
  return cfg;
}

}  // namespace

const char* prefix_kind_name(PrefixKind k) {
  switch (k) {
    case PrefixKind::None: return "none";
    case PrefixKind::Oracle: return "oracle";
    case PrefixKind::Shuffled: return "shuffled";
    case PrefixKind::Reversed: return "reversed";
    case PrefixKind::Surrogate: return "surrogate";
    case PrefixKind::Generated: return "generated";
    case PrefixKind::Keywords: return "keywords";
    case PrefixKind::FirstSentence: return "first_sentence";
    case PrefixKind::Static: return "static";
    case PrefixKind::RandomWords: return "random_words";
  }
  return "?";
}

nlohmann::json ExperimentSpec::results_identity() const {
  nlohmann::json conds = nlohmann::json::array();
  for (const auto& c : conditions) {
    const PrefixSpec& p = c.prefix;
    conds.push_back({{"name", c.name},
                     {"prefix", prefix_kind_name(p.kind)},
                     {"surrogate_index", p.surrogate_index},
                     {"text", p.text},
                     {"generate_template", p.generate_template},
                     {"max_new_tokens", p.max_new_tokens},
                     {"top_k", p.top_k},
                     {"n_words", p.n_words},
                     {"length_matched", p.length_matched},
                     {"prefix_template", p.template_},
                     {"repetitions", p.repetitions},
                     {"mask", c.mask == BuildMask::Block ? "block" : "causal"},
                     {"context", c.context == ContextMode::Full ? "full" : "truncated"},
                     {"correct_rope", c.correct_rope},
                     {"roundtrip_noise", c.roundtrip_noise ? nlohmann::json(*c.roundtrip_noise) : nlohmann::json()},
                     {"keys", c.keys == CacheSource::Bare ? "bare" : "self"},
                     {"values", c.values == CacheSource::Bare ? "bare" : "self"},
                     {"layers", c.layers},
                     {"value_alpha", c.value_alpha ? nlohmann::json(*c.value_alpha) : nlohmann::json()},
                     {"hide_prefix", c.hide_prefix},
                     {"target", c.target == ScoreTarget::Pmi ? "pmi" : "nll"},
                     {"pad_to_tokens", c.pad_to_tokens ? nlohmann::json(*c.pad_to_tokens) : nlohmann::json()}});
  }
  const ExperimentConfig& t = templates;
  nlohmann::json id = {{"name", name},
          {"model", model},
          {"dtype", dtype},
          {"device", device},
          {"dataset", dataset},
          {"samples", samples},
          {"seed", seed},
          {"ranking", ranking},
          {"divergence_samples", divergence_samples},
          {"templates",
           {{"document", t.document_template}, {"query", t.query_template},
            {"surrogate", t.surrogate_template}, {"prefix_separator", t.prefix_separator},
            {"suffix", t.suffix_template}, {"answer", t.answer_template}}},
          {"conditions", conds}};
  // Only when not the default, so that stores made before the option existed still resume.
  if (weights != "native") id["weights"] = weights;
  return id;
}

namespace {

// toml++ 3.3 (Debian 12) reaches __builtin_unreachable() (undefined behaviour; UBSan reports it)
// when it tests a non-ASCII character outside a string for whitespace, e.g. in a bare key
// `café = 1`, right after a line-ending backslash in a multi-line basic string, or right after a
// backslash in a basic string (`"""a\é`, checked for a line-ending backslash): its
// is_non_ascii_horizontal_whitespace covers only some of the blocks it dispatches to (found by
// fuzz_experiment_toml). TOML 1.0 allows non-ASCII only inside strings and comments, so such input
// is refused here, before the parser sees it.
void refuse_non_ascii_outside_strings(const std::string& t, const std::string& origin) {
  enum { Code, Comment, Basic, Literal, MlBasic, MlLiteral } st = Code;
  int64_t line = 1;
  // The last non-blank character in code ('\n' at a line start): a quote opens a string only where
  // a key or a value can start; elsewhere (`x = 0"...`) toml++ reads on through the value.
  char prev = '\n';
  auto fail = [&](const char* where) {
    KVP_FAIL(origin, ":", line, ": non-ASCII character ", where, "; TOML keys and syntax are "
             "ASCII (quote the key: \"caf\xC3\xA9\" = 1), non-ASCII text belongs in strings or comments");
  };
  for (size_t i = 0; i < t.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(t[i]);
    const bool three = i + 2 < t.size() && t[i + 1] == t[i] && t[i + 2] == t[i];
    if (c == '\n') ++line;
    switch (st) {
      case Code: {
        if (c >= 0x80) fail("outside a string");
        const bool opens = prev == '\n' || prev == '=' || prev == '[' || prev == ',' || prev == '{' || prev == '.';
        if (c == '#') st = Comment;
        else if (c == '"' && opens) { st = three ? MlBasic : Basic; i += three ? 2 : 0; }
        else if (c == '\'' && opens) { st = three ? MlLiteral : Literal; i += three ? 2 : 0; }
        if (c == '\n') prev = '\n';
        else if (c != ' ' && c != '\t' && c != '\r') prev = static_cast<char>(c);
        break;
      }
      case Comment:
        if (c == '\n') { st = Code; prev = '\n'; }
        break;
      case Basic:
        if (c == '\\') {
          if (i + 1 < t.size() && static_cast<unsigned char>(t[i + 1]) >= 0x80) fail("after a backslash (not a TOML escape)");
          ++i;
        }
        else if (c == '"' || c == '\n') { st = Code; prev = static_cast<char>(c); }
        break;
      case Literal:
        if (c == '\'' || c == '\n') { st = Code; prev = static_cast<char>(c); }
        break;
      case MlBasic:
        if (c == '\\') {
          if (i + 1 < t.size() && static_cast<unsigned char>(t[i + 1]) >= 0x80) fail("after a backslash (not a TOML escape)");
          size_t j = i + 1;  // a line-ending backslash trims the whitespace that follows
          while (j < t.size() && (t[j] == ' ' || t[j] == '\t' || t[j] == '\r' || t[j] == '\n')) ++j;
          if (j > i + 1 && j < t.size() && static_cast<unsigned char>(t[j]) >= 0x80)
            fail("right after a line-ending backslash in a multi-line string");
          if (j == i + 1) ++i;  // an escape such as \" or \\: skip the escaped character
        } else if (c == '"' && three) {
          st = Code;
          prev = '"';
          i += 2;
        }
        break;
      case MlLiteral:
        if (c == '\'' && three) {
          st = Code;
          prev = '\'';
          i += 2;
        }
        break;
    }
  }
}

}  // namespace

ExperimentSpec parse_experiment(const std::string& toml_text, const std::string& origin,
                                const std::string& base_dir) {
  refuse_non_ascii_outside_strings(toml_text, origin);
  toml::table root;
  try {
    root = toml::parse(toml_text, origin);
  } catch (const toml::parse_error& e) {
    KVP_FAIL(where(origin, e.source()), ": TOML syntax error: ", e.description());
  }
  ExperimentSpec s;
  s.source = origin;
  const toml::table* exp = root["experiment"].as_table();
  KVP_CHECK(exp, origin, ": missing [experiment] table (name, model, dataset, ...)");
  {
    Table e(*exp, origin, "experiment");
    s.name = e.str("name", s.name);
    s.model = e.str("model", "");
    s.dtype = e.choice("dtype", s.dtype, {"float32", "bfloat16", "float16"});
    s.device = e.str("device", s.device);
    s.weights = e.choice("weights", s.weights, {"native", "nf4", "nf4-dq"});
    s.dataset = e.str("dataset", "");
    s.samples = e.integer("samples", 0, 0);
    s.seed = static_cast<uint64_t>(e.integer("seed", 42, 0));
    s.batch = e.integer("batch", s.batch, 1);
    s.out = e.str("out", "");
    s.ranking = e.boolean("ranking", false);
    s.divergence_samples = e.integer("divergence_samples", s.divergence_samples, 0);
    e.refuse_unknown();
    KVP_CHECK(!s.model.empty(), where(origin, exp->source()), ": 'experiment.model' is required (a checkpoint directory)");
    KVP_CHECK(!s.dataset.empty(), where(origin, exp->source()), ": 'experiment.dataset' is required (a JSONL file)");
    KVP_CHECK(s.device == "cpu" || s.device.rfind("cuda", 0) == 0, e.where_of("device"),
              ": 'experiment.device' = \"", s.device, "\" must be cpu, cuda or cuda:N");
  }
  s.model = resolve(base_dir, s.model);
  s.dataset = resolve(base_dir, s.dataset);
  s.out = resolve(base_dir, s.out.empty() ? "out/" + s.name : s.out);
  s.templates = parse_templates(root["templates"].as_table(), origin);
  s.templates.model_name = s.model;
  s.templates.dtype = s.dtype;
  s.templates.device = s.device;
  s.templates.seed = s.seed;
  s.templates.num_samples = s.samples;

  for (const auto& [k, v] : root) {
    const std::string key(k.str());
    KVP_CHECK(key == "experiment" || key == "templates" || key == "condition", where(origin, v.source()),
              ": unknown table '", key, "' (accepted: [experiment], [templates], [[condition]])");
  }
  if (const toml::node* cn = root.get("condition")) {
    const toml::array* arr = cn->as_array();
    KVP_CHECK(arr && arr->is_array_of_tables(), where(origin, cn->source()),
              ": conditions are written as [[condition]] tables");
    size_t i = 0;
    for (const auto& n : *arr) s.conditions.push_back(parse_condition(*n.as_table(), origin, i++));
  }
  std::set<std::string> names;
  for (const auto& c : s.conditions)
    KVP_CHECK(names.insert(c.name).second, origin, ": two conditions are named '", c.name,
              "'; condition names must be unique");
  // The baseline: "bare" first (added when not declared; a declared "bare" must be bare).
  auto it = std::find_if(s.conditions.begin(), s.conditions.end(), [](const ConditionSpec& c) { return c.name == "bare"; });
  if (it == s.conditions.end()) {
    ConditionSpec bare;
    bare.name = "bare";
    s.conditions.insert(s.conditions.begin(), bare);
  } else {
    KVP_CHECK(it->is_bare() && it->target == ScoreTarget::Nll, origin,
              ": the condition named 'bare' is the baseline and must have no prefix, noise or padding");
    std::rotate(s.conditions.begin(), it, it + 1);
  }
  return s;
}

ExperimentSpec load_experiment(const std::string& toml_path) {
  std::ifstream f(toml_path, std::ios::binary);
  KVP_CHECK(f.good(), "cannot read experiment file '", toml_path, "'");
  std::ostringstream ss;
  ss << f.rdbuf();
  std::string base = fs::path(toml_path).parent_path().string();
  if (base.empty()) base = ".";
  return parse_experiment(ss.str(), toml_path, base);
}

}  // namespace kvprime
