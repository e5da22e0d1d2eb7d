// Shared helpers for the test binaries: where fixtures live, temporary directories, tensor diffs.
#pragma once

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

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

void write_file(const std::string& path, const std::string& bytes);
std::string read_file(const std::string& path);

// max |a - b| over all elements, computed in float64 on CPU.
double max_abs_diff(const at::Tensor& a, const at::Tensor& b);
// max |a - b| / max(max |b|, tiny): relative to the reference's scale.
double max_rel_diff(const at::Tensor& a, const at::Tensor& b);

}  // namespace kvprime::test
