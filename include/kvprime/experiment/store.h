// The results store of experiments: one SQLite file (e.g. out/demo/results.sqlite) that holds runs
// and their per-sample results, written as they are computed.
//
// A run is identified by its name (the experiment's name) and carries the configuration it was
// started with (any JSON: the experiment's results identity). Opening a run:
//   StoreMode::Resume  (default) creates the run, or resumes it when the stored configuration is
//                      the same JSON; a different configuration is refused with the first differing
//                      JSON path, since resuming would mix results of two configurations.
//   StoreMode::NewRun  archives the run of that name (its rows stay in the file under its own run
//                      id, marked archived — nothing is ever deleted) and starts a fresh one.
// put() writes rows in one transaction; a row whose key (run, sample_id, condition, candidate) is
// already stored is skipped (the first value wins), so a resumed run never duplicates a row.
// A score that came out NaN or infinite (or whose logits or cache held one) is not a result: it
// is stored as a FailureRow under the same key, reported, and never averaged in. Failures count
// as done (the computation is deterministic, a resume would fail the same way); --new-run
// recomputes them.
//
// Durability: journal_mode = WAL with synchronous = FULL. A committed put() survives a killed
// process (SIGKILL) *and* a power loss or OS crash; a put() in flight when the process dies is
// rolled back as a whole. (synchronous = NORMAL would save one fsync per commit but may lose the
// last commits on power loss; commits here are per batch of rows, seconds of model work apart, so
// the fsync is free and "never loses a row" holds.) Readers (open_readonly, a report, sqlite3)
// can read while a run writes: WAL readers see the last committed state and never block the writer.
// A busy timeout of 30 s absorbs short lock waits; two processes writing the same run at once is
// safe (no duplicates) but wasteful.
//
// A ResultStore is one SQLite connection: movable, not copyable, for one thread at a time. Do not
// carry an open store across fork(). Every failure is a kvprime::Error naming the file, what was
// being done and SQLite's message.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace kvprime {

enum class StoreMode {
  Resume,  // create the run or resume it (same configuration only)
  NewRun,  // archive the run of that name (rows kept) and start a fresh one
};

// One score: a sample under a condition, for one candidate document.
struct ResultRow {
  static constexpr int64_t kPlain = -1;

  std::string sample_id;               // Sample::id
  int64_t sample_index = 0;            // Sample::index (position in the dataset as read)
  std::string condition;               // condition name
  int64_t candidate = kPlain;          // -1: the sample's own passage; k >= 0: the k-th irrelevant
                                       // passage (ranking), scored under the same condition
  double nll = 0;                      // mean NLL of the scored answer tokens (never NaN)
  int64_t n_scored = 0;                // answer tokens scored
  std::vector<double> token_nll;       // per scored token: empty, or n_scored values (exact, NaN ok)
  std::optional<double> pmi;           // nll - baseline_nll, when the condition scores PMI
  std::optional<double> baseline_nll;  // NLL under the BOS-only cache (PMI)
  int64_t prefix_tokens = 0;           // prefix tokens the cache was built with (0: none)
  int64_t doc_tokens = 0;              // document tokens in the cache
  int64_t cache_len = 0;               // slots of the cache the query was scored against
  std::string prefix_text;             // the prefix as built (for inspection)
  double seconds = 0;                  // wall time attributed to this row
  nlohmann::json extra;                // anything else (null or any JSON), stored as JSON text
};

// A (sample, condition, candidate) whose score could not be computed honestly.
struct FailureRow {
  std::string sample_id;
  int64_t sample_index = 0;
  std::string condition;
  int64_t candidate = ResultRow::kPlain;
  std::string what;    // "cache" (NaN/inf in a valid slot's K/V), "logits", "nll", "baseline_nll"
  std::string detail;  // human-readable: which values, how many
};

struct RunInfo {
  int64_t run_id = 0;
  std::string name;
  std::string status;                  // "running" or "finished"
  bool archived = false;               // replaced by a NewRun (rows kept)
  std::string created_at, finished_at, archived_at;  // ISO 8601 UTC; empty when not (yet) set
  std::string kvprime_version;         // of the kvprime that created the run
  nlohmann::json config;
  std::string config_hash;             // fnv1a64 of config.dump() (16 hex digits), for a glance
  int64_t rows = 0;                    // stored results
  int64_t failures = 0;                // stored failures (non-finite scores)
};

class ResultStore {
 public:
  // 2 added the failures table; a version-1 file is migrated when opened for writing and read
  // as having no failures otherwise.
  static constexpr int kSchemaVersion = 2;

  // Opens or creates the store at `path` (missing parent directories are created) for writing the
  // run `run_name` with `config` (see StoreMode above).
  static ResultStore open(const std::string& path, const std::string& run_name,
                          const nlohmann::json& config, StoreMode mode = StoreMode::Resume);
  // Read-only, for reports: run `run_id` when >= 0 (archived runs too), else the current run named
  // `run_name`, or when that is empty the only current run of the store. Writing methods throw.
  static ResultStore open_readonly(const std::string& path, const std::string& run_name = "",
                                   int64_t run_id = -1);
  // Every run of the store (archived ones too), oldest first.
  static std::vector<RunInfo> list_runs(const std::string& path);

  ResultStore(ResultStore&&) noexcept;
  ResultStore& operator=(ResultStore&&) noexcept;
  ~ResultStore();

  const std::string& path() const;
  RunInfo info() const;  // read fresh from the file (status and row count included)

  // (sample_id, condition) pairs with at least one stored row or failure of this run. For
  // rankings, put all candidates of a (sample, condition) in the same put() so that "done" means
  // all of them.
  std::set<std::pair<std::string, std::string>> done() const;
  // The full keys (sample_id, condition, candidate) of rows and failures.
  std::set<std::tuple<std::string, std::string, int64_t>> done_keys() const;

  // Stores `rows` in one transaction (all or nothing) and returns how many were new; rows whose key
  // is already stored (or repeated within `rows`) are skipped. Every row is checked first: empty
  // sample_id or condition, NaN nll/pmi/baseline_nll/seconds, negative counts, candidate < -1,
  // token_nll of a size other than 0 or n_scored — an error naming the row, nothing written.
  // A run marked finished goes back to running when new rows arrive. `failures` go in the same
  // transaction (a key may not be both a row and a failure: an error, nothing written); an empty
  // what or a key already stored is handled as for rows. Returns the new rows + failures.
  // An infinite nll, pmi or baseline_nll is refused like NaN: store it as a failure.
  int64_t put(const std::vector<ResultRow>& rows, const std::vector<FailureRow>& failures = {});

  // This run's rows ordered by (sample_index, condition, candidate).
  std::vector<ResultRow> rows() const;
  int64_t count() const;
  // This run's failures ordered by (sample_index, condition, candidate).
  std::vector<FailureRow> failures() const;

  void mark_finished();  // status = finished, finished_at = now

 private:
  struct Impl;
  explicit ResultStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The first place where two JSON values differ, as "<JSON pointer>: stored <a>, now <b>" (values
// shortened), or "" when they are equal. Numbers compare by value (1 == 1.0).
std::string first_json_difference(const nlohmann::json& stored, const nlohmann::json& now);

}  // namespace kvprime
