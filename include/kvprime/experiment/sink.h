// Where a run's results go: the runner asks its sink which (sample, condition) pairs are stored
// already, hands it each chunk's rows, and tells it when the run ended.
//
// StoreSink writes to the run's SQLite store (what a single process does). The distributed run
// (experiment/distributed.h) has rank 0 write through a StoreSink and every other rank send its
// rows to rank 0, so that all results land in one store whatever the ranks' file systems.
#pragma once

#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "kvprime/experiment/store.h"

namespace kvprime {

class ResultSink {
 public:
  virtual ~ResultSink() = default;
  // (sample id, condition) pairs stored (results and failures): a run skips them.
  virtual std::set<std::pair<std::string, std::string>> done() = 0;
  // One chunk's rows, stored atomically (all or nothing) before the call returns or, for a
  // remote sink, as soon as the writer receives them.
  virtual void put(const std::vector<ResultRow>& rows, const std::vector<FailureRow>& failures) = 0;
  // The run's last call: `interrupted` (stopped early) leaves the run unfinished, to be resumed.
  virtual void finish(bool interrupted) = 0;
  // Failures stored for the run so far (all ranks' where the sink can see them).
  virtual int64_t failures() = 0;
};

// The run's SQLite store (ResultStore::open with the spec's name and identity).
class StoreSink : public ResultSink {
 public:
  StoreSink(const std::string& path, const std::string& run_name, const nlohmann::json& config,
            StoreMode mode);
  std::set<std::pair<std::string, std::string>> done() override { return store_.done(); }
  void put(const std::vector<ResultRow>& rows, const std::vector<FailureRow>& failures) override {
    store_.put(rows, failures);
  }
  void finish(bool interrupted) override {
    if (!interrupted) store_.mark_finished();
  }
  int64_t failures() override { return store_.info().failures; }
  ResultStore& store() { return store_; }

 private:
  ResultStore store_;
};

}  // namespace kvprime
