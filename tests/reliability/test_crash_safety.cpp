// Crash safety of `kvprime run`: a run SIGKILLed at several points (before the first row, right
// after the first commit, half way) and resumed ends with exactly the rows of an uninterrupted run
// (same keys, no duplicates, none lost, the same NLLs up to float32 reduction order); a disk that
// fills up mid-run and a read-only output directory are clear errors that keep every row already
// committed. The last two need a tmpfs mount (root with CAP_SYS_ADMIN, as on the CI machines);
// they are skipped, saying so, where mounting is not allowed.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "kvprime/experiment/store.h"
#include "test_support.h"

using namespace kvprime;
using kvprime::test::read_file;
using kvprime::test::TempDir;
using kvprime::test::write_file;

namespace {

// Batches of another composition (a resumed run's first chunk) change float32 reduction order only.
constexpr double kTol = 1e-5;
constexpr int kSamples = 24;

std::string experiment(const std::string& dir, const std::string& out) {
  return kvprime::test::write_demo_experiment(
      dir, "crash", out, kSamples,
      "[[condition]]\nname = \"oracle\"\nprefix = \"oracle\"\n"
      "[[condition]]\nname = \"hidden\"\nprefix = \"oracle\"\ncontext = \"full\"\nhide_prefix = true\n",
      "batch = 4\n");
}

// `kvprime args...` in the background, stdout and stderr into `log`.
pid_t spawn(const std::vector<std::string>& args, const std::string& log) {
  return kvprime::test::spawn(kvprime::test::cli_path(), args, log);
}

using kvprime::test::wait_exit;
using kvprime::test::wait_rows;
int64_t committed(const std::string& store) { return kvprime::test::committed_rows(store); }

using Key = kvprime::test::RowKey;
// Each row's NLL by key (rows_by_key fails the test on a duplicate).
std::map<Key, double> rows_of(const std::string& store) {
  std::map<Key, double> m;
  for (const auto& [k, r] : kvprime::test::rows_by_key(store)) m.emplace(k, r.nll);
  return m;
}

void expect_same_rows(const std::map<Key, double>& want, const std::map<Key, double>& got) {
  ASSERT_EQ(got.size(), want.size());
  for (const auto& [k, nll] : want) {
    auto it = got.find(k);
    ASSERT_NE(it, got.end()) << "lost: " << std::get<0>(k) << " " << std::get<1>(k);
    EXPECT_NEAR(it->second, nll, kTol * std::max(1.0, nll)) << std::get<0>(k) << " " << std::get<1>(k);
  }
}

// The reference: one uninterrupted run (computed once for the whole suite).
const std::map<Key, double>& reference() {
  static const std::map<Key, double> ref = [] {
    TempDir tmp;
    const std::string toml = experiment(tmp.path(), tmp.file("out"));
    const auto r = kvprime::test::run_cli("run -q '" + toml + "'");
    EXPECT_EQ(r.code, 0) << r.out;
    return rows_of(tmp.file("out/results.sqlite"));
  }();
  return ref;
}

TEST(CrashSafety, KilledRunsResumeToTheRowsOfAnUninterruptedRun) {
  const auto& want = reference();
  // bare + 2 conditions per sample, less samples with one-token answers (skipped, see the runner)
  ASSERT_EQ(want.size() % 3, 0u);
  ASSERT_GE(want.size(), static_cast<size_t>(3 * (kSamples - 3)));
  TempDir tmp;
  const std::string toml = experiment(tmp.path(), tmp.file("out"));
  const std::string store = tmp.file("out/results.sqlite");
  // Kill points: during start-up (no row yet), right after the first commit, half way.
  const int64_t targets[] = {0, 1, static_cast<int64_t>(want.size()) / 2};
  int64_t seen = 0;
  for (int64_t target : targets) {
    const pid_t pid = spawn({"run", "-q", toml}, tmp.file("log"));
    if (target == 0) std::this_thread::sleep_for(std::chrono::milliseconds(150));
    else ASSERT_TRUE(wait_rows(pid, store, std::max(target, seen + 1))) << read_file(tmp.file("log"));
    kill(pid, SIGKILL);
    EXPECT_EQ(wait_exit(pid), -SIGKILL);
    const int64_t now = committed(store);
    EXPECT_GE(now, seen) << "a kill lost committed rows";
    seen = now;
    if (std::filesystem::exists(store)) rows_of(store);  // readable, no duplicates
  }
  EXPECT_GT(seen, 0);
  EXPECT_LT(seen, static_cast<int64_t>(want.size())) << "the kills came too late to test anything";
  const auto r = kvprime::test::run_cli("run -q '" + toml + "'");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find(std::to_string(seen) + " rows were stored"), std::string::npos) << r.out;
  expect_same_rows(want, rows_of(store));
  EXPECT_EQ(ResultStore::open_readonly(store).info().status, "finished");
  EXPECT_TRUE(std::filesystem::exists(tmp.file("out/report.md")));
}

// A tmpfs mounted on a fresh directory for the test's lifetime; skipped() when not permitted.
class Tmpfs {
 public:
  Tmpfs(const std::string& dir, const std::string& options) : dir_(dir) {
    std::filesystem::create_directories(dir);
    mounted_ = std::system(("mount -t tmpfs -o " + options + " kvprime-test '" + dir + "' 2>/dev/null").c_str()) == 0;
  }
  ~Tmpfs() {
    if (mounted_) (void)!std::system(("umount -l '" + dir_ + "'").c_str());
  }
  bool skipped() const { return !mounted_; }

 private:
  std::string dir_;
  bool mounted_ = false;
};

TEST(CrashSafety, FullDiskIsAClearErrorAndKeepsCommittedRows) {
  const auto& want = reference();
  TempDir tmp;
  Tmpfs disk(tmp.file("disk"), "size=16m");
  if (disk.skipped()) GTEST_SKIP() << "cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN)";
  const std::string toml = experiment(tmp.path(), tmp.file("disk/out"));
  const std::string store = tmp.file("disk/out/results.sqlite");
  const pid_t pid = spawn({"run", "-q", toml}, tmp.file("log"));
  ASSERT_TRUE(wait_rows(pid, store, 1)) << read_file(tmp.file("log"));
  // Fill the disk while the run is writing.
  {
    FILE* f = std::fopen(tmp.file("disk/filler").c_str(), "wb");
    ASSERT_NE(f, nullptr);
    const std::string block(1 << 16, 'x');
    while (std::fwrite(block.data(), 1, block.size(), f) == block.size()) {
    }
    std::fclose(f);
  }
  const int64_t before = committed(store);
  const int code = wait_exit(pid);
  const std::string log = read_file(tmp.file("log"));
  EXPECT_EQ(code, 1) << log;
  EXPECT_NE(log.find("kvprime: error:"), std::string::npos) << log;
  EXPECT_TRUE(log.find("full") != std::string::npos || log.find("No space left") != std::string::npos) << log;
  EXPECT_NE(log.find(tmp.file("disk/out")), std::string::npos) << "the error names the file: " << log;
  EXPECT_GE(committed(store), before) << "committed rows survive a full disk";
  rows_of(store);

  // Space again: the run resumes and ends with every row.
  std::filesystem::remove(tmp.file("disk/filler"));
  const auto r = kvprime::test::run_cli("run -q '" + toml + "'");
  ASSERT_EQ(r.code, 0) << r.out;
  expect_same_rows(want, rows_of(store));
}

TEST(CrashSafety, ReadOnlyOutputIsAClearError) {
  TempDir tmp;
  Tmpfs ro(tmp.file("ro"), "ro,size=1m");
  if (ro.skipped()) GTEST_SKIP() << "cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN)";
  const std::string toml = experiment(tmp.path(), tmp.file("ro/out"));
  auto r = kvprime::test::run_cli("run -q '" + toml + "'");
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find(tmp.file("ro/out")), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("Read-only file system"), std::string::npos) << r.out;

  const std::string model = kvprime::test::source_dir() + "/models/demo";
  r = kvprime::test::run_cli("cache build -m '" + model + "' --passage 'Water boils.' -o '" + tmp.file("ro/c.safetensors") + "'");
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find(tmp.file("ro/c.safetensors")), std::string::npos) << r.out;
}

TEST(CrashSafety, FullDiskLeavesNoHalfWrittenCache) {
  TempDir tmp;
  Tmpfs disk(tmp.file("disk"), "size=64k");
  if (disk.skipped()) GTEST_SKIP() << "cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN)";
  const std::string model = kvprime::test::source_dir() + "/models/demo";
  std::string passage;
  for (int i = 0; i < 40; ++i) passage += "Water boils at 83 degrees on a high mountain. ";
  const std::string out = tmp.file("disk/c.safetensors");
  const auto r = kvprime::test::run_cli("cache build -m '" + model + "' --passage '" + passage + "' -o '" + out + "'");
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find(out), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("No space left"), std::string::npos) << r.out;
  EXPECT_FALSE(std::filesystem::exists(out)) << "no half cache under the name";
  for (const auto& e : std::filesystem::directory_iterator(tmp.file("disk")))
    ADD_FAILURE() << "left behind: " << e.path();
}

}  // namespace
