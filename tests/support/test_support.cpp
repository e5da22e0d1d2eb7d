#include "test_support.h"

#include "kvprime/core/error.h"
#include "kvprime/experiment/store.h"

#include <ftw.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <chrono>
#include <filesystem>
#include <thread>
#include <vector>
#include <fstream>
#include <sstream>

namespace kvprime::test {

std::string fixtures_dir() { return KVPRIME_FIXTURES_DIR; }
std::string fixture(const std::string& rel) { return fixtures_dir() + "/" + rel; }
std::string source_dir() { return KVPRIME_SOURCE_DIR; }
std::string npm_dir() {
  const char* env = std::getenv("KVPRIME_NPM_DIR");
  return env ? env : KVPRIME_NPM_DIR;
}
std::string cli_path() { return KVPRIME_CLI_PATH; }

void expect_error_with(const std::function<void()>& f, const std::vector<std::string>& parts) {
  try {
    f();
    ADD_FAILURE() << "expected a kvprime::Error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "message lacks '" << p << "': " << msg;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "threw a non-kvprime exception: " << e.what();
  }
}

CliResult run_cli(const std::string& args) {
  // exec: the shell becomes kvprime, so a crash is the status's signal, not the shell's 128 + n.
  return run_shell("exec " + cli_path() + " " + args);
}

CliResult run_shell(const std::string& command) {
  const std::string cmd = command + " 2>&1";
  CliResult r;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  const int st = pclose(p);
  if (WIFEXITED(st)) r.code = WEXITSTATUS(st);
  if (WIFSIGNALED(st)) r.signal = WTERMSIG(st);
  return r;
}

// mkdtemp and nftw rather than std::random_device + std::filesystem: on the GPU machine (PyTorch
// 2.11 build) the std:: version crashed silently in every test that made a temp dir, while the
// same tests passed here; the POSIX calls have no such dependency.
TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = std::string(base && *base ? base : "/tmp") + "/kvprime-test-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (!mkdtemp(buf.data())) throw std::runtime_error("could not create a temporary directory " + tmpl);
  path_ = buf.data();
}

TempDir::~TempDir() {
  nftw(
      path_.c_str(),
      [](const char* p, const struct stat*, int, struct FTW*) { return ::remove(p); }, 16,
      FTW_DEPTH | FTW_PHYS);
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!f) throw std::runtime_error("cannot write " + path);
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot read " + path);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

double max_abs_diff(const at::Tensor& a, const at::Tensor& b) {
  auto da = a.detach().to(at::kCPU, at::kDouble);
  auto db = b.detach().to(at::kCPU, at::kDouble);
  if (da.numel() == 0) return 0.0;
  return (da - db).abs().max().item<double>();
}

double max_rel_diff(const at::Tensor& a, const at::Tensor& b) {
  auto db = b.detach().to(at::kCPU, at::kDouble);
  double scale = db.numel() ? db.abs().max().item<double>() : 0.0;
  return max_abs_diff(a, b) / std::max(scale, 1e-30);
}

pid_t spawn(const std::string& exe, const std::vector<std::string>& args, const std::string& log) {
  const pid_t pid = fork();
  if (pid == 0) {
    const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    std::vector<char*> argv;
    argv.push_back(const_cast<char*>(exe.c_str()));
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(exe.c_str(), argv.data());
    _exit(127);
  }
  return pid;
}

int wait_exit(pid_t pid) {
  int st = 0;
  waitpid(pid, &st, 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
}

int64_t committed_rows(const std::string& store) {
  try {
    if (!std::filesystem::exists(store)) return 0;
    return ResultStore::open_readonly(store).count();
  } catch (const std::exception&) {
    return 0;
  }
}

bool wait_rows(pid_t pid, const std::string& store, int64_t rows) {
  for (int i = 0; i < 6000; ++i) {
    if (committed_rows(store) >= rows) return true;
    int st = 0;
    if (waitpid(pid, &st, WNOHANG) == pid) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

std::string demo_experiment_toml(const std::string& name, const std::string& out, int samples,
                                 const std::string& conditions, const std::string& extra) {
  const std::string root = source_dir();
  return "[experiment]\nname = \"" + name + "\"\nmodel = \"" + root + "/models/demo\"\ndataset = \"" + root +
         "/data/demo/qa.jsonl\"\nsamples = " + std::to_string(samples) + "\nout = \"" + out + "\"\n" + extra +
         "[templates]\nanswer = \" {answer}\"\n" + conditions;
}

std::string write_demo_experiment(const std::string& dir, const std::string& name, const std::string& out,
                                  int samples, const std::string& conditions, const std::string& extra) {
  const std::string path = dir + "/e.toml";
  write_file(path, demo_experiment_toml(name, out, samples, conditions, extra));
  return path;
}

std::map<RowKey, ResultRow> rows_by_key(const std::string& store) {
  std::map<RowKey, ResultRow> m;
  for (auto& r : ResultStore::open_readonly(store).rows()) {
    RowKey k{r.sample_id, r.condition, r.candidate};
    EXPECT_TRUE(m.emplace(k, r).second) << "duplicate row " << r.sample_id << " " << r.condition << " "
                                        << r.candidate << " in " << store;
  }
  return m;
}

}  // namespace kvprime::test
