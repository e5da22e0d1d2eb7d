// Shared helpers for the test binaries: where fixtures live, temporary directories, tensor diffs.
#pragma once

#include <sys/types.h>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "kvprime/experiment/store.h"

namespace kvprime::test {

std::string fixtures_dir();                  // tests/fixtures
std::string fixture(const std::string& rel); // tests/fixtures/<rel>
std::string source_dir();                    // repository root
std::string npm_dir();                       // third_party/npm (tokenizer packages)
std::string cli_path();                      // the built kvprime executable

// A fresh empty directory under the system temp dir, removed when the object goes.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Runs `f` and expects a kvprime::Error whose message contains every one of `parts`; no exception,
// or an exception of another type, is a test failure.
void expect_error_with(const std::function<void()>& f, const std::vector<std::string>& parts);

// The kvprime CLI run through /bin/sh with `args` (shell syntax), stdout and stderr together.
struct CliResult {
  int code = -1;     // exit status; -1 when it did not exit normally
  int signal = 0;    // the signal that killed it (a crash: SIGSEGV, SIGABRT...), 0 if none
  std::string out;   // stdout and stderr
};
CliResult run_cli(const std::string& args);
// Any shell command line, the same way (stdout and stderr together).
CliResult run_shell(const std::string& command);

// `exe args...` started in the background (fork + execv), stdout and stderr into the file `log`.
pid_t spawn(const std::string& exe, const std::vector<std::string>& args, const std::string& log);
// waitpid: the exit status, or minus the signal that ended it.
int wait_exit(pid_t pid);
// Rows committed to a results store so far (0 while it does not exist or is being created).
int64_t committed_rows(const std::string& store);
// Waits (up to 60 s) until `store` holds at least `rows` rows or `pid` exits; false if it exited.
bool wait_rows(pid_t pid, const std::string& store, int64_t rows);

// An experiment on the demo model and dataset, as TOML text: `name`, the first `samples` samples,
// `out`, the demo model's answer template " {answer}", then `extra` lines of [experiment] (e.g.
// "batch = 4\n") and the [[condition]] tables `conditions`.
std::string demo_experiment_toml(const std::string& name, const std::string& out, int samples,
                                 const std::string& conditions, const std::string& extra = "");
// The same written to dir/e.toml; returns that path.
std::string write_demo_experiment(const std::string& dir, const std::string& name, const std::string& out,
                                  int samples, const std::string& conditions, const std::string& extra = "");

// A results store's rows by (sample, condition, candidate); a duplicate key fails the test.
using RowKey = std::tuple<std::string, std::string, int64_t>;
std::map<RowKey, ResultRow> rows_by_key(const std::string& store);

void write_file(const std::string& path, const std::string& bytes);
std::string read_file(const std::string& path);

// max |a - b| over all elements, computed in float64 on CPU.
double max_abs_diff(const at::Tensor& a, const at::Tensor& b);
// max |a - b| / max(max |b|, tiny): relative to the reference's scale.
double max_rel_diff(const at::Tensor& a, const at::Tensor& b);

}  // namespace kvprime::test
