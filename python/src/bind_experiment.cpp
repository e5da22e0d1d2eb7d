// Experiments: the TOML spec, the runner (what `kvprime run` does), the results store and the
// report. Results come back as plain Python lists of dicts (one per stored row), ready for pandas.
#include <torch/csrc/utils/pybind.h>
#include <pybind11/stl.h>

#include "bindings.h"
#include "kvprime/core/error.h"
#include "kvprime/experiment/dataset.h"
#include "kvprime/experiment/runner.h"
#include "kvprime/experiment/spec.h"
#include "kvprime/experiment/store.h"

namespace kvprime::py {

namespace {

using namespace pybind11::literals;

pyb::dict row_dict(const ResultRow& r) {
  pyb::dict d("sample_id"_a = r.sample_id, "sample_index"_a = r.sample_index,
              "condition"_a = r.condition, "candidate"_a = r.candidate, "nll"_a = r.nll,
              "n_scored"_a = r.n_scored, "token_nll"_a = r.token_nll, "pmi"_a = r.pmi,
              "baseline_nll"_a = r.baseline_nll, "prefix_tokens"_a = r.prefix_tokens,
              "doc_tokens"_a = r.doc_tokens, "cache_len"_a = r.cache_len,
              "prefix_text"_a = r.prefix_text, "seconds"_a = r.seconds);
  d["extra"] = to_python(r.extra);
  return d;
}

pyb::dict failure_dict(const FailureRow& f) {
  return pyb::dict("sample_id"_a = f.sample_id, "sample_index"_a = f.sample_index,
                   "condition"_a = f.condition, "candidate"_a = f.candidate, "what"_a = f.what,
                   "detail"_a = f.detail);
}

pyb::dict run_info_dict(const RunInfo& i) {
  pyb::dict d("run_id"_a = i.run_id, "name"_a = i.name, "status"_a = i.status,
              "archived"_a = i.archived, "created_at"_a = i.created_at,
              "finished_at"_a = i.finished_at, "kvprime_version"_a = i.kvprime_version,
              "config_hash"_a = i.config_hash, "rows"_a = i.rows, "failures"_a = i.failures);
  d["config"] = to_python(i.config);
  return d;
}

pyb::dict summary_dict(const RunSummary& s) {
  return pyb::dict("samples"_a = s.samples, "conditions"_a = s.conditions,
                   "rows_done_before"_a = s.rows_done_before, "rows_computed"_a = s.rows_computed,
                   "skipped_samples"_a = s.skipped_samples, "tokens"_a = s.tokens,
                   "failures"_a = s.failures, "seconds"_a = s.seconds,
                   "interrupted"_a = s.interrupted);
}

pyb::dict sample_dict(const Sample& s) {
  pyb::dict d("id"_a = s.id, "index"_a = s.index, "line"_a = s.line, "passage"_a = s.passage,
              "query"_a = s.query, "answer"_a = s.answer, "surrogates"_a = s.surrogates,
              "irrelevant"_a = s.irrelevant);
  d["extra"] = to_python(s.extra);
  return d;
}

}  // namespace

void bind_experiment(pyb::module_& m) {
  pyb::class_<ConditionSpec>(m, "ConditionSpec", "One condition of an experiment (read-only view).")
      .def_readonly("name", &ConditionSpec::name)
      .def_property_readonly("prefix", [](const ConditionSpec& c) { return prefix_kind_name(c.prefix.kind); })
      .def_readonly("correct_rope", &ConditionSpec::correct_rope)
      .def_readonly("hide_prefix", &ConditionSpec::hide_prefix)
      .def_property_readonly("is_bare", &ConditionSpec::is_bare);

  pyb::class_<ExperimentSpec>(m, "ExperimentSpec",
      "An experiment file (TOML) as read; the run settings can be changed before run_experiment.")
      .def_readonly("source", &ExperimentSpec::source)
      .def_readwrite("name", &ExperimentSpec::name)
      .def_readwrite("model", &ExperimentSpec::model)
      .def_readwrite("dtype", &ExperimentSpec::dtype)
      .def_readwrite("device", &ExperimentSpec::device)
      .def_readwrite("weights", &ExperimentSpec::weights)
      .def_readwrite("dataset", &ExperimentSpec::dataset)
      .def_readwrite("samples", &ExperimentSpec::samples)
      .def_readwrite("seed", &ExperimentSpec::seed)
      .def_readwrite("batch", &ExperimentSpec::batch)
      .def_readwrite("out", &ExperimentSpec::out)
      .def_readwrite("templates", &ExperimentSpec::templates)
      .def_readonly("conditions", &ExperimentSpec::conditions)
      .def_property_readonly("store_path", &ExperimentSpec::store_path)
      .def("results_identity", [](const ExperimentSpec& s) { return to_python(s.results_identity()); });

  m.def("load_experiment", &load_experiment, "path"_a, "Reads and validates an experiment TOML file.");
  m.def("parse_experiment", &parse_experiment, "toml_text"_a, "origin"_a = "<string>",
        "base_dir"_a = ".", "As load_experiment, from a string; relative paths against base_dir.");
  m.def(
      "run_experiment",
      [](const ExperimentSpec& spec, bool new_run, bool progress) {
        RunOptions o;
        o.new_run = new_run;
        o.progress = progress;
        RunSummary s;
        {
          pyb::gil_scoped_release release;
          s = run_experiment(spec, o);
        }
        return summary_dict(s);
      },
      "spec"_a, "new_run"_a = false, "progress"_a = false,
      "What `kvprime run` does: loads model, tokenizer and dataset, scores every (sample, "
      "condition) not yet stored, resumable. Returns the run's summary.");
  m.def(
      "write_experiment_report",
      [](const ExperimentSpec& spec, int64_t run_id, const std::string& out_dir) {
        nlohmann::json j;
        {
          pyb::gil_scoped_release release;
          j = write_experiment_report(spec, run_id, out_dir);
        }
        return to_python(j);
      },
      "spec"_a, "run_id"_a = -1, "out_dir"_a = "",
      "report.md, report.html, results.csv, summary.csv; returns the summary.");

  m.def(
      "read_results",
      [](const std::string& path, const std::string& run_name, int64_t run_id) {
        ResultStore s = ResultStore::open_readonly(path, run_name, run_id);
        pyb::list out;
        for (const auto& r : s.rows()) out.append(row_dict(r));
        return out;
      },
      "path"_a, "run_name"_a = "", "run_id"_a = -1,
      "The stored rows of a results.sqlite (the current run unless run_name / run_id say).");
  m.def(
      "read_failures",
      [](const std::string& path, const std::string& run_name, int64_t run_id) {
        ResultStore s = ResultStore::open_readonly(path, run_name, run_id);
        pyb::list out;
        for (const auto& f : s.failures()) out.append(failure_dict(f));
        return out;
      },
      "path"_a, "run_name"_a = "", "run_id"_a = -1, "Scores that were NaN/inf (never averaged in).");
  m.def(
      "list_runs",
      [](const std::string& path) {
        pyb::list out;
        for (const auto& i : ResultStore::list_runs(path)) out.append(run_info_dict(i));
        return out;
      },
      "path"_a);
  m.def(
      "read_dataset",
      [](const std::string& path, int64_t limit) {
        DatasetOptions o;
        o.limit = limit;
        pyb::list out;
        for (const auto& s : read_dataset(path, o)) out.append(sample_dict(s));
        return out;
      },
      "path"_a, "limit"_a = 0, "A JSONL dataset (passage, query, answer, ...), validated.");
}

}  // namespace kvprime::py
