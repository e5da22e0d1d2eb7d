// Running an experiment: every (sample, condition) scored once, batched, stored as it is computed.
//
// Samples are ordered by passage length (so a chunk pads little) and cut into chunks of `batch`.
// Per chunk and condition: a plain bare condition is scored in the forward that builds it
// (score_full_batch); a plain primed one is built as one batched cache (build_primed_batch) and
// scored directly (score_batch); block-masked and full-context builds go one row at a time, and
// conditions that mix with the bare cache split the batch into rows (score_answers). The rows of
// a chunk are written in one transaction, so an interrupted run loses at most the chunk in flight,
// and a re-run skips every (sample, condition) stored. KVPRIME_PROFILE=1 prints where the time
// went (synchronising at each phase).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "kvprime/experiment/dataset.h"
#include "kvprime/experiment/spec.h"
#include "kvprime/model/model.h"
#include "kvprime/prime/build.h"
#include "kvprime/tokenizer/tokenizer.h"

namespace kvprime {

class ResultSink;

struct RunOptions {
  bool new_run = false;        // start over under a new run id (old rows are archived, not lost)
  bool progress = true;        // progress bar on stderr
  int64_t stop_after_rows = 0; // testing: stop (as if killed) after this many stored rows; 0: never
  // Sharding (distributed runs): this process computes chunk k (of `batch` samples, in the length
  // order below) iff k % shard_count == shard_index. Whole chunks, so each row is computed with
  // exactly the shapes (and float rounding) of a single-process run.
  int64_t shard_index = 0, shard_count = 1;
  // Where rows go; nullptr: the spec's store (StoreSink, opened with new_run's mode).
  ResultSink* sink = nullptr;
};

struct RunSummary {
  int64_t samples = 0, conditions = 0;
  int64_t rows_done_before = 0, rows_computed = 0;
  int64_t skipped_samples = 0;  // answers of < 2 tokens (the NLL skips the first answer token)
  int64_t tokens = 0;           // tokens through the model (build + score)
  int64_t failures = 0;         // (sample, condition, candidate) scores of the run that were
                                // NaN/inf (this call's and earlier ones'), stored as failures
                                // (ResultStore::failures), not as results
  double seconds = 0;
  bool interrupted = false;
};

// The layout of one condition for one sample, tokenized: what `explain` prints and what the
// runner builds. Slots: [BOS][prefix segments][document] (prefix slots dropped unless Full).
struct ConditionLayout {
  std::string prefix_text;              // after prefix_template, one segment's text
  std::vector<TokenIds> segments;       // prefix token ids per repetition (causal: one joint)
  TokenIds prefix_ids;                  // BOS + all prefix tokens
  TokenIds doc_ids;                     // the document's tokens (joint tokenization)
  std::vector<int64_t> segment_lengths; // block mask segments
  int64_t cache_len = 0;                // slots the query sees after the build
  int64_t hidden = 0;                   // of which hidden from the query (hide_prefix)
};

class ExperimentRunner {
 public:
  ExperimentRunner(const ExperimentSpec& spec, const Model& model, const Tokenizer& tokenizer,
                   std::vector<Sample> samples);

  RunSummary run(const RunOptions& options = {});

  // Tokenized layout of `condition` for sample `index` (no forward except generated prefixes).
  ConditionLayout layout(const ConditionSpec& condition, size_t index) const;
  // Human-readable: `[BOS][Q Q Q][passage] -> query sees [BOS][· · ·][passage]` plus counts.
  std::string explain(size_t index) const;

  const std::vector<Sample>& samples() const { return samples_; }

 private:
  struct Impl;
  const ExperimentSpec& spec_;
  const Model& model_;
  const Tokenizer& tok_;
  std::vector<Sample> samples_;
};

// How `spec` reads its dataset: the sample limit, and the fields its conditions need (surrogates
// for prefix = "surrogate", irrelevant passages for ranking), so a missing one is an error naming
// the line and the condition before any work is done.
DatasetOptions dataset_options_for(const ExperimentSpec& spec);

// How `spec` loads its model: experiment.dtype, .device and .weights, errors naming the file.
LoadOptions load_options_for(const ExperimentSpec& spec);

// Loads model, tokenizer and dataset of `spec`, runs it: what `kvprime run` does.
RunSummary run_experiment(const ExperimentSpec& spec, const RunOptions& options = {});

// Reads the results of `spec`'s run (run_id >= 0: that run, archived ones too) from its store
// and writes report.md, report.html, results.csv and summary.csv into `out_dir` (default
// spec.out). Returns the report's summary JSON. Per-layer divergences come from the rows that
// measured them (experiment.divergence_samples).
nlohmann::json write_experiment_report(const ExperimentSpec& spec, int64_t run_id = -1,
                                       const std::string& out_dir = "");

}  // namespace kvprime
