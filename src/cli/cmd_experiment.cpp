// run, explain: the experiment commands (experiment/spec.h, experiment/runner.h).
#include <fstream>
#include <iostream>

#include "commands.h"
#include "kvprime/core/dtype.h"
#include "kvprime/core/error.h"
#include "kvprime/experiment/dataset.h"
#include "kvprime/experiment/distributed.h"
#include "kvprime/experiment/runner.h"
#include "kvprime/experiment/seed_bench.h"
#include "kvprime/experiment/spec.h"

namespace kvprime::cli {

namespace {

struct Loaded {
  Model model;
  Tokenizer tok;
};

Loaded load_for(const ExperimentSpec& spec) {
  Tokenizer tok = Tokenizer::from_checkpoint(spec.model);
  return {Model::load(spec.model, load_options_for(spec)), std::move(tok)};
}

}  // namespace

Action add_run(CLI::App& app) {
  struct Args {
    std::string toml;
    bool new_run = false, quiet = false;
    int64_t samples = -1;
  };
  auto a = std::make_shared<Args>();
  app.add_option("experiment", a->toml, "experiment TOML file")->required()->check(CLI::ExistingFile);
  app.add_flag("--new-run", a->new_run,
               "start over although results of another configuration are stored (they are archived, not deleted)");
  app.add_option("--samples", a->samples, "override experiment.samples (0: all); part of the run's identity")
      ->check(CLI::NonNegativeNumber);
  app.add_flag("-q,--quiet", a->quiet, "no progress bar");
  return [a]() {
    ExperimentSpec spec = load_experiment(a->toml);
    if (a->samples >= 0) spec.samples = a->samples;
    RunOptions ro;
    ro.new_run = a->new_run;
    ro.progress = !a->quiet;
    RunSummary s;
    int ranks = 1;
    if (launched_by_mpi()) {
      // mpirun -np N: every rank runs its shard, rank 0 stores all rows and reports.
      MpiSession mpi;  // an error naming the fix if this kvprime was built without MPI
      const MpiWorld& w = mpi.world();
      try {
        s = run_experiment_distributed(spec, ro, w);
      } catch (const std::exception& e) {
        // Rows already stored stay; the other ranks must not wait for this one.
        std::cerr << "kvprime run: rank " << w.rank << " of " << w.size << ": error: " << e.what() << "\n";
        MpiSession::abort(1);
      }
      if (w.rank != 0) return s.interrupted ? 1 : 0;
      ranks = w.size;
    } else {
      Loaded L = load_for(spec);
      ExperimentRunner runner(spec, L.model, L.tok, read_dataset(spec.dataset, dataset_options_for(spec)));
      s = runner.run(ro);
    }
    std::cout << "kvprime run: " << spec.name << (ranks > 1 ? " (" + std::to_string(ranks) + " MPI ranks)" : "")
              << ": " << s.samples << " samples x " << s.conditions
              << " conditions; " << s.rows_done_before << " rows were stored, " << s.rows_computed
              << " computed in " << s.seconds << " s (" << static_cast<int64_t>(s.tokens / std::max(s.seconds, 1e-9))
              << " tokens/s)";
    if (s.skipped_samples) std::cout << "; " << s.skipped_samples << " samples skipped (one-token answers)";
    std::cout << "\n  results: " << spec.store_path() << "\n";
    if (s.failures)
      std::cerr << "kvprime run: warning: " << s.failures << " score(s) of this run came out NaN or "
                << "infinite; they are stored as failures, listed in the report and left out of "
                << "every statistic\n";
    if (s.interrupted) return 1;
    write_experiment_report(spec);
    std::cout << "  report:  " << spec.out << "/report.md, report.html, results.csv, summary.csv\n";
    return 0;
  };
}

Action add_explain(CLI::App& app) {
  struct Args {
    std::string toml;
    int64_t sample = 0;
  };
  auto a = std::make_shared<Args>();
  app.add_option("experiment", a->toml, "experiment TOML file")->required()->check(CLI::ExistingFile);
  app.add_option("--sample", a->sample, "which sample (0-based index among the dataset's samples)")->capture_default_str();
  return [a]() {
    ExperimentSpec spec = load_experiment(a->toml);
    Loaded L = load_for(spec);
    // The same samples as the run: keywords (IDF) and random words depend on the whole set.
    auto samples = read_dataset(spec.dataset, dataset_options_for(spec));
    KVP_CHECK(a->sample >= 0 && a->sample < static_cast<int64_t>(samples.size()), "--sample ", a->sample,
              ": the dataset '", spec.dataset, "' has ", samples.size(), " samples");
    ExperimentRunner runner(spec, L.model, L.tok, std::move(samples));
    std::cout << runner.explain(static_cast<size_t>(a->sample));
    return 0;
  };
}

Action add_report(CLI::App& app) {
  struct Args {
    std::string toml, out;
    int64_t run_id = -1;
  };
  auto a = std::make_shared<Args>();
  app.add_option("experiment", a->toml, "experiment TOML file")->required()->check(CLI::ExistingFile);
  app.add_option("--run-id", a->run_id, "report this run of the store (archived ones too); default: the current run");
  app.add_option("-o,--out", a->out, "output directory (default: experiment.out)");
  return [a]() {
    ExperimentSpec spec = load_experiment(a->toml);
    write_experiment_report(spec, a->run_id, a->out);
    std::cout << "kvprime report: " << (a->out.empty() ? spec.out : a->out)
              << "/report.md, report.html, results.csv, summary.csv\n";
    return 0;
  };
}

}  // namespace kvprime::cli

namespace kvprime::cli {

Action add_bench(CLI::App& app) {
  auto o = std::make_shared<SeedBenchOptions>();
  o->model_dir = "models/demo";
  o->data = "data/demo/qa.jsonl";
  app.add_option("-m,--model", o->model_dir, "checkpoint directory (with tokenizer.json)")->capture_default_str();
  app.add_option("--dtype", o->dtype, "float32, bfloat16, float16")->capture_default_str();
  app.add_option("--device", o->device, "cpu, cuda or cuda:N")->capture_default_str();
  app.add_option("--data", o->data, "JSONL samples (passage, query, answer, surrogates)")->capture_default_str();
  app.add_option("--samples", o->samples, "samples of the pipeline (the standard two-condition experiment)")->capture_default_str();
  app.add_option("--seed-samples", o->seed_samples, "samples of the batch-1 seed loop (0: skip it)")->capture_default_str();
  app.add_option("--batch", o->batch, "samples per chunk of the pipeline; several (64,256): one timed run each")
      ->delimiter(',')->capture_default_str();
  app.add_option("--out", o->out_dir, "directory of the pipeline's results store (default: a temporary one)");
  app.add_option("--json-out", o->json_out, "write the results as JSON (timings, checks, per-sample NLLs)");
  return [o]() { return run_seed_bench(*o); };
}

}  // namespace kvprime::cli
