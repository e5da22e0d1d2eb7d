// ExperimentConfig, the seed's text-level builders (same names and arguments, model / tokenizer /
// config passed as in the seed), the token-id layer, and scoring.
#include <torch/csrc/utils/pybind.h>
#include <pybind11/stl.h>

#include "bindings.h"
#include "kvprime/core/error.h"
#include "kvprime/prime/build.h"
#include "kvprime/prime/experiment_config.h"
#include "kvprime/prime/score.h"

namespace kvprime::py {

namespace {

// A Primer lives for one call: it only holds references to the three arguments.
template <typename F>
auto with_primer(const Model& model, const Tokenizer& tok, const ExperimentConfig& cfg, F&& f) {
  pyb::gil_scoped_release release;
  Primer primer(model, tok, cfg);
  return f(primer);
}

ScoreOptions score_options(std::optional<int64_t> start_position, std::optional<at::Tensor> hidden) {
  ScoreOptions o;
  o.start_position = start_position;
  if (hidden) o.hidden_slots = *hidden;
  return o;
}

void set_config_field(ExperimentConfig& c, const std::string& k, const pyb::handle& v) {
  if (k == "model_name") c.model_name = v.cast<std::string>();
  else if (k == "dtype") c.dtype = v.cast<std::string>();
  else if (k == "device") c.device = v.cast<std::string>();
  else if (k == "seed") c.seed = v.cast<uint64_t>();
  else if (k == "num_samples") c.num_samples = v.cast<int64_t>();
  else if (k == "document_template") c.document_template = v.cast<std::string>();
  else if (k == "query_template") c.query_template = v.cast<std::string>();
  else if (k == "surrogate_template") c.surrogate_template = v.cast<std::string>();
  else if (k == "prefix_separator") c.prefix_separator = v.cast<std::string>();
  else if (k == "suffix_template") c.suffix_template = v.cast<std::string>();
  else if (k == "answer_template") c.answer_template = v.cast<std::string>();
  else
    KVP_FAIL("ExperimentConfig: unknown field '", k,
             "' (fields: model_name, dtype, device, seed, num_samples, document_template, "
             "query_template, surrogate_template, prefix_separator, suffix_template, answer_template)");
}

}  // namespace

void bind_prime(pyb::module_& m) {
  using namespace pybind11::literals;

  pyb::class_<ExperimentConfig>(m, "ExperimentConfig",
      "The seed's ExperimentConfig: templates and run settings, e.g. "
      "ExperimentConfig(num_samples=10, seed=42).")
      .def(pyb::init([](const pyb::kwargs& kw) {
        ExperimentConfig c;
        for (auto item : kw) set_config_field(c, item.first.cast<std::string>(), item.second);
        return c;
      }))
      .def_readwrite("model_name", &ExperimentConfig::model_name)
      .def_readwrite("dtype", &ExperimentConfig::dtype)
      .def_readwrite("device", &ExperimentConfig::device)
      .def_readwrite("seed", &ExperimentConfig::seed)
      .def_readwrite("num_samples", &ExperimentConfig::num_samples)
      .def_readwrite("document_template", &ExperimentConfig::document_template)
      .def_readwrite("query_template", &ExperimentConfig::query_template)
      .def_readwrite("surrogate_template", &ExperimentConfig::surrogate_template)
      .def_readwrite("prefix_separator", &ExperimentConfig::prefix_separator)
      .def_readwrite("suffix_template", &ExperimentConfig::suffix_template)
      .def_readwrite("answer_template", &ExperimentConfig::answer_template)
      .def("__repr__", [](const ExperimentConfig& c) {
        return "ExperimentConfig(model_name=" + pyb::repr(pyb::str(c.model_name)).cast<std::string>() +
               ", dtype='" + c.dtype + "', device='" + c.device + "', seed=" + std::to_string(c.seed) +
               ", num_samples=" + std::to_string(c.num_samples) + ", ...)";
      });
  m.def("format_template",
        [](const std::string& tpl, const std::map<std::string, std::string>& values) {
          return format_template(tpl, values);
        },
        "template"_a, "values"_a, "{name} substitution; an unknown or missing name is an error.");

  // ---- the seed's text API: (length, cache) tuples as in the seed -----------------------------------
  m.def(
      "build_kv_cache",
      [](const std::string& text, const Model& mo, const Tokenizer& t, const ExperimentConfig& c) {
        BuiltCache b = with_primer(mo, t, c, [&](Primer& p) { return p.build_kv_cache(text); });
        return std::make_pair(b.length, std::move(b.cache));
      },
      "context"_a, "model"_a, "tokenizer"_a, "config"_a,
      "(ctx_len, cache) of BOS + tokenize(context).");
  m.def(
      "build_suffix_kv_cache",
      [](const std::string& passage, const std::string& suffix, const Model& mo, const Tokenizer& t,
         const ExperimentConfig& c) {
        BuiltCache b =
            with_primer(mo, t, c, [&](Primer& p) { return p.build_suffix_kv_cache(passage, suffix); });
        return std::make_pair(b.length, std::move(b.cache));
      },
      "passage"_a, "suffix"_a, "model"_a, "tokenizer"_a, "config"_a);
  auto truncated_pair = [&m](const char* name,
                             TruncatedCache (Primer::*fn)(const std::string&, const std::string&) const,
                             const char* doc) {
    m.def(
        name,
        [fn](const std::string& prefix, const std::string& passage, const Model& mo, const Tokenizer& t,
             const ExperimentConfig& c) {
          TruncatedCache r = with_primer(mo, t, c, [&](Primer& p) { return (p.*fn)(prefix, passage); });
          return std::make_pair(r.keep_len, std::move(r.cache));
        },
        "surrogate"_a, "passage"_a, "model"_a, "tokenizer"_a, "config"_a, doc);
  };
  truncated_pair("build_truncated_kv_cache", &Primer::build_truncated_kv_cache,
                 "(keep_len, cache): BOS + surrogate prefix + document, truncated to BOS + document, "
                 "keys NOT re-positioned.");
  truncated_pair("build_truncated_kv_cache_corrected", &Primer::build_truncated_kv_cache_corrected,
                 "(keep_len, cache): as build_truncated_kv_cache, document keys moved back to "
                 "positions 1..n with the model's RoPE.");
  m.def(
      "build_truncated_cache_variable_prefix",
      [](const std::string& prefix, const std::string& passage, const Model& mo, const Tokenizer& t,
         const ExperimentConfig& c) {
        TruncatedCache r = with_primer(
            mo, t, c, [&](Primer& p) { return p.build_truncated_cache_variable_prefix(prefix, passage); });
        return pyb::make_tuple(r.keep_len, std::move(r.cache), r.prefix_token_len);
      },
      "prefix"_a, "passage"_a, "model"_a, "tokenizer"_a, "config"_a,
      "(keep_len, cache, prefix_token_len) for an arbitrary prefix (prefix + separator).");
  m.def(
      "build_matched_caches",
      [](const std::string& prefix, const std::string& passage, const Model& mo, const Tokenizer& t,
         const ExperimentConfig& c) {
        MatchedCaches r =
            with_primer(mo, t, c, [&](Primer& p) { return p.build_matched_caches(prefix, passage); });
        return pyb::dict("bare"_a = std::move(r.bare), "primed"_a = std::move(r.primed),
                         "keep_len"_a = r.keep_len, "prefix_token_len"_a = r.prefix_token_len,
                         "doc_ids"_a = r.doc_ids);
      },
      "prefix"_a, "passage"_a, "model"_a, "tokenizer"_a, "config"_a,
      "Bare and primed caches over the SAME document tokens (the joint tokenization), so that BPE "
      "boundary effects cannot differ between them.");
  m.def(
      "score_answer_with_cache",
      [](const KVCache& cache, int64_t ctx_len, const std::string& query_prompt,
         const std::string& answer, const Model& mo, const Tokenizer& t, const ExperimentConfig& c) {
        return with_primer(mo, t, c, [&](Primer& p) {
          return score_answer_with_cache(p, cache, ctx_len, query_prompt, answer);
        });
      },
      "cache"_a, "ctx_len"_a, "query_prompt"_a, "answer"_a, "model"_a, "tokenizer"_a, "config"_a,
      "Mean NLL of the answer tokens after the first, after query_prompt, against the cache (which "
      "is not changed).");

  // ---- token-id layer ---------------------------------------------------------------------------
  m.def(
      "prefill",
      [](const Model& mo, const TokenIds& ids, std::optional<at::Tensor> mask) {
        pyb::gil_scoped_release release;
        return prefill(mo, ids, mask ? *mask : at::Tensor());
      },
      "model"_a, "ids"_a, "mask"_a = std::nullopt,
      "One forward over ids at positions 0..n-1 into a fresh cache; `mask` [n, n] bool "
      "(true = may attend) replaces the causal mask.");
  m.def("prefill_batch", &prefill_batch, "model"_a, "docs"_a, "max_batch"_a = 0,
        "Many sequences in batched forwards (right-padded rows).",
        pyb::call_guard<pyb::gil_scoped_release>());
  m.def("block_prefix_mask", &block_prefix_mask, "segment_lengths"_a, "doc_len"_a);
  m.def(
      "build_primed_cache",
      [](const Model& mo, const TokenIds& prefix_ids, const TokenIds& doc_ids, bool correct_rope,
         std::optional<at::Tensor> mask) {
        PrimeOptions o;
        o.correct_rope = correct_rope;
        if (mask) o.mask = *mask;
        pyb::gil_scoped_release release;
        return build_primed_cache(mo, prefix_ids, doc_ids, o);
      },
      "model"_a, "prefix_ids"_a, "doc_ids"_a, "correct_rope"_a = true, "mask"_a = std::nullopt,
      "BOS + prefix + document in one forward, cut to BOS + document (prefix_ids starts with BOS).");
  m.def(
      "build_primed_caches",
      [](const Model& mo, const std::vector<TokenIds>& prefixes, const std::vector<TokenIds>& docs,
         bool correct_rope, int64_t max_batch) {
        PrimeOptions o;
        o.correct_rope = correct_rope;
        pyb::gil_scoped_release release;
        return build_primed_caches(mo, prefixes, docs, o, max_batch);
      },
      "model"_a, "prefixes"_a, "docs"_a, "correct_rope"_a = true, "max_batch"_a = 0,
      "Many primed caches, batched.");
  m.def(
      "tokenize_joint",
      [](const Tokenizer& t, const std::string& prefix, const std::string& doc) {
        JointTokens j = tokenize_joint(t, prefix, doc);
        return std::make_pair(j.ids, j.boundary);
      },
      "tokenizer"_a, "prefix"_a, "document"_a,
      "(ids, boundary): the joint tokenization of prefix + document with BOS; ids[:boundary] are "
      "BOS + prefix.");

  // ---- scoring ------------------------------------------------------------------------------------
  pyb::class_<AnswerScore>(m, "AnswerScore")
      .def_readonly("nll", &AnswerScore::nll, "Mean NLL over the answer tokens after the first.")
      .def_readonly("n_scored", &AnswerScore::n_scored)
      .def_readonly("token_nll", &AnswerScore::token_nll)
      .def_readonly("nonfinite_logit_rows", &AnswerScore::nonfinite_logit_rows)
      .def("__repr__", [](const AnswerScore& s) {
        return "AnswerScore(nll=" + std::to_string(s.nll) + ", n_scored=" + std::to_string(s.n_scored) + ")";
      });
  m.def(
      "score_answer",
      [](const Model& mo, const KVCache& cache, const TokenIds& q, const TokenIds& a,
         std::optional<int64_t> start_position, std::optional<at::Tensor> hidden_slots) {
        ScoreOptions o = score_options(start_position, hidden_slots);
        pyb::gil_scoped_release release;
        return score_answer(mo, cache, q, a, o);
      },
      "model"_a, "cache"_a, "query_ids"_a, "answer_ids"_a, "start_position"_a = std::nullopt,
      "hidden_slots"_a = std::nullopt,
      "Teacher-forced NLL of answer_ids after query_ids against a single-row cache (not changed).");
  m.def(
      "score_answers",
      [](const Model& mo, const std::vector<KVCache>& caches, const std::vector<TokenIds>& queries,
         const std::vector<TokenIds>& answers, int64_t max_batch) {
        KVP_CHECK(caches.size() == queries.size() && caches.size() == answers.size(),
                  "score_answers: ", caches.size(), " caches, ", queries.size(), " queries and ",
                  answers.size(), " answers; expected one of each per request");
        std::vector<ScoreRequest> reqs(caches.size());
        for (size_t i = 0; i < caches.size(); ++i) {
          reqs[i].cache = &caches[i];
          reqs[i].query_ids = queries[i];
          reqs[i].answer_ids = answers[i];
        }
        pyb::gil_scoped_release release;
        return score_answers(mo, reqs, max_batch);
      },
      "model"_a, "caches"_a, "query_ids"_a, "answer_ids"_a, "max_batch"_a = 0,
      "Many (cache, query, answer) triples in batched forwards; equal to score_answer one by one "
      "(to float rounding of a different matmul shape).");
  m.def("bos_only_cache", &bos_only_cache, "model"_a, "bos_id"_a);
  m.def(
      "score_pmi",
      [](const Model& mo, const KVCache& cache, const KVCache& bos_cache, const TokenIds& q,
         const TokenIds& a) {
        pyb::gil_scoped_release release;
        PmiScore s = score_pmi(mo, cache, bos_cache, q, a);
        return std::make_tuple(s.pmi, s.conditional, s.baseline);
      },
      "model"_a, "cache"_a, "bos_cache"_a, "query_ids"_a, "answer_ids"_a,
      "(pmi, conditional, baseline): NLL with the cache minus NLL with only BOS.");
}

}  // namespace kvprime::py
