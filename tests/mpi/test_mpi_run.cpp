// Distributed runs (experiment/distributed.h): `mpirun -np 2 kvprime run` on CPU (OpenMPI from
// Debian) stores exactly the rows of a single-process run, bit for bit (whole chunks per rank:
// the same shapes, the same kernels), in the one store; a run killed mid-way resumes on every
// shard to the same rows (no duplicates, none lost); an error on one rank ends all of them.
#include <gtest/gtest.h>

#include <signal.h>
#include <stdlib.h>

#include <cmath>
#include <cstdlib>
#include <limits>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "kvprime/core/error.h"
#include "kvprime/experiment/distributed.h"
#include "kvprime/experiment/store.h"
#include "test_support.h"

using namespace kvprime;
using kvprime::test::read_file;
using kvprime::test::TempDir;
using kvprime::test::write_file;

namespace {

// Resumed chunks may hold fewer rows than in one pass (the stored ones are skipped): another
// batch composition, float32 reduction order only.
constexpr double kTol = 1e-5;
constexpr int kSamples = 24;  // batch 4: 6 chunks, 3 per rank

std::string mpiexec() {
#ifdef KVPRIME_MPIEXEC
  return KVPRIME_MPIEXEC;
#else
  return "";
#endif
}

// mpirun for a test machine: root allowed (CI), shared memory only, no core binding (each rank
// may use every core, as a single process does).
std::vector<std::string> mpirun_args(int np) {
  return {"--allow-run-as-root", "--oversubscribe", "--bind-to", "none", "--mca", "btl", "self,vader",
          "-np", std::to_string(np), kvprime::test::cli_path()};
}

std::string mpirun_cmd(int np) {
  std::string cmd = mpiexec();
  for (const auto& a : mpirun_args(np)) cmd += " '" + a + "'";
  return cmd;
}

std::string experiment(const std::string& dir, const std::string& out) {
  return kvprime::test::write_demo_experiment(dir, "mpi", out, kSamples,
                                              "[[condition]]\nname = \"oracle\"\nprefix = \"oracle\"\n"
                                              "[[condition]]\nname = \"values_only\"\nprefix = \"oracle\"\nkeys = \"bare\"\n",
                                              "batch = 4\n");
}

using Key = kvprime::test::RowKey;
std::map<Key, ResultRow> rows_of(const std::string& store) { return kvprime::test::rows_by_key(store); }

const std::map<Key, ResultRow>& single_process() {
  static const std::map<Key, ResultRow> ref = [] {
    TempDir tmp;
    const auto r = kvprime::test::run_cli("run -q '" + experiment(tmp.path(), tmp.file("out")) + "'");
    EXPECT_EQ(r.code, 0) << r.out;
    return rows_of(tmp.file("out/results.sqlite"));
  }();
  return ref;
}

class Mpi : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!built_with_mpi() || mpiexec().empty())
      GTEST_SKIP() << "kvprime was built without MPI (install libopenmpi-dev openmpi-bin: scripts/setup.sh does)";
    // Under AddressSanitizer (scripts/sanitize.sh) the ranks keep every memory check but not the
    // leak check at exit: OpenMPI unloads its components (dlclose) before exit, so the
    // process-lifetime state they allocated is reported from "<unknown module>" frames that no
    // suppression can name. Without ASan this variable is ignored.
    const char* asan = std::getenv("ASAN_OPTIONS");
    const std::string opts = std::string(asan ? asan : "") + (asan && *asan ? ":" : "") + "detect_leaks=0";
    setenv("ASAN_OPTIONS", opts.c_str(), 1);
  }
};

TEST(MpiWire, RowsRoundTripExactly) {
  ResultRow r;
  r.sample_id = "s-1 \xc3\xa9";
  r.sample_index = 7;
  r.condition = "oracle";
  r.candidate = 2;
  r.nll = 1.0 / 3.0;
  r.n_scored = 3;
  r.token_nll = {0.1, std::numeric_limits<double>::quiet_NaN(), 1e-300};
  r.pmi = -0.25;
  r.prefix_tokens = 5;
  r.doc_tokens = 40;
  r.cache_len = 41;
  r.prefix_text = "how much\noxygen";
  r.seconds = 0.125;
  r.extra = {{"key_divergence", {0.5, 0.25}}};
  ResultRow plain;
  plain.sample_id = "s-2";
  FailureRow f{"s-3", 9, "oracle", -1, "logits", "2 of 3 rows NaN"};
  std::vector<ResultRow> rows;
  std::vector<FailureRow> failures;
  decode_rows(encode_rows({r, plain}, {f}), rows, failures);
  ASSERT_EQ(rows.size(), 2u);
  ASSERT_EQ(failures.size(), 1u);
  const ResultRow& g = rows[0];
  EXPECT_EQ(g.sample_id, r.sample_id);
  EXPECT_EQ(g.sample_index, 7);
  EXPECT_EQ(g.candidate, 2);
  EXPECT_EQ(g.nll, r.nll);  // bit-exact
  ASSERT_EQ(g.token_nll.size(), 3u);
  EXPECT_EQ(g.token_nll[0], 0.1);
  EXPECT_TRUE(std::isnan(g.token_nll[1]));
  EXPECT_EQ(g.token_nll[2], 1e-300);
  EXPECT_EQ(g.pmi, r.pmi);
  EXPECT_FALSE(g.baseline_nll.has_value());
  EXPECT_EQ(g.prefix_text, r.prefix_text);
  EXPECT_EQ(g.extra, r.extra);
  EXPECT_FALSE(rows[1].pmi.has_value());
  EXPECT_EQ(failures[0].what, "logits");
  EXPECT_EQ(failures[0].detail, f.detail);
  std::vector<uint8_t> junk = {0xff, 0x00, 0x12};
  EXPECT_THROW(decode_rows(junk, rows, failures), Error);
}

TEST(MpiWire, RankDeviceMapsCudaToTheLocalRank) {
  MpiWorld w;
  w.local_rank = 3;
  EXPECT_EQ(rank_device("cuda", w, 2), "cuda:1");
  EXPECT_EQ(rank_device("cuda:0", w, 2), "cuda:0");  // an explicit device is kept
  EXPECT_EQ(rank_device("cpu", w, 2), "cpu");
  EXPECT_EQ(rank_device("cuda", w, 0), "cuda");      // no GPU: loading names the problem
}

TEST_F(Mpi, TwoRanksStoreExactlyTheRowsOfOneProcess) {
  const auto& want = single_process();
  ASSERT_GT(want.size(), 40u);
  TempDir tmp;
  const std::string toml = experiment(tmp.path(), tmp.file("out"));
  const auto r = kvprime::test::run_shell(mpirun_cmd(2) + " run -q '" + toml + "'");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("(2 MPI ranks)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("report:"), std::string::npos) << "rank 0 writes the report\n" << r.out;
  const auto got = rows_of(tmp.file("out/results.sqlite"));
  ASSERT_EQ(got.size(), want.size());
  for (const auto& [k, w] : want) {
    auto it = got.find(k);
    ASSERT_NE(it, got.end()) << "lost: " << std::get<0>(k) << " " << std::get<1>(k);
    EXPECT_EQ(it->second.nll, w.nll) << std::get<0>(k) << " " << std::get<1>(k);
    EXPECT_EQ(it->second.token_nll, w.token_nll) << std::get<0>(k) << " " << std::get<1>(k);
    EXPECT_EQ(it->second.cache_len, w.cache_len);
    EXPECT_EQ(it->second.prefix_text, w.prefix_text);
  }
  const auto runs = ResultStore::list_runs(tmp.file("out/results.sqlite"));
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].status, "finished");
  // Re-running computes nothing: every shard resumes from the store rank 0 broadcast.
  const auto again = kvprime::test::run_shell(mpirun_cmd(2) + " run -q '" + toml + "'");
  ASSERT_EQ(again.code, 0) << again.out;
  EXPECT_NE(again.out.find(std::to_string(want.size()) + " rows were stored, 0 computed"), std::string::npos)
      << again.out;
}

TEST_F(Mpi, AKilledRunResumesOnEveryShard) {
  const auto& want = single_process();
  TempDir tmp;
  const std::string toml = experiment(tmp.path(), tmp.file("out"));
  const std::string store = tmp.file("out/results.sqlite");
  std::vector<std::string> args = mpirun_args(2);
  args.insert(args.end(), {"run", "-q", toml});
  const pid_t pid = kvprime::test::spawn(mpiexec(), args, tmp.file("log"));
  // A few chunks in (each chunk x condition commits 4 rows), then the whole job is killed:
  // SIGTERM to mpirun, which ends both ranks.
  const bool running = kvprime::test::wait_rows(pid, store, 8);
  if (running) kill(pid, SIGTERM);
  const int code = kvprime::test::wait_exit(pid);
  const int64_t kept = kvprime::test::committed_rows(store);
  ASSERT_TRUE(running) << "the run ended before 8 rows were stored (code " << code << ")\n"
                       << read_file(tmp.file("log"));
  EXPECT_NE(code, 0);
  EXPECT_LT(kept, static_cast<int64_t>(want.size())) << "killed too late to test a resume";
  const auto resumed = kvprime::test::run_shell(mpirun_cmd(2) + " run -q '" + toml + "'");
  ASSERT_EQ(resumed.code, 0) << resumed.out;
  EXPECT_NE(resumed.out.find(std::to_string(kept) + " rows were stored"), std::string::npos) << resumed.out;
  const auto got = rows_of(store);
  ASSERT_EQ(got.size(), want.size());
  for (const auto& [k, w] : want) {
    auto it = got.find(k);
    ASSERT_NE(it, got.end()) << "lost: " << std::get<0>(k) << " " << std::get<1>(k);
    EXPECT_NEAR(it->second.nll, w.nll, kTol * std::max(1.0, w.nll)) << std::get<0>(k) << " " << std::get<1>(k);
  }
  EXPECT_EQ(ResultStore::list_runs(store).at(0).status, "finished");
}

TEST_F(Mpi, AnErrorOnARankEndsTheJobWithItsMessage) {
  TempDir tmp;
  std::string toml = experiment(tmp.path(), tmp.file("out"));
  std::string text = read_file(toml);
  text.replace(text.find("models/demo"), 11, "models/no-such-model");
  write_file(toml, text);
  const auto r = kvprime::test::run_shell("timeout 120 " + mpirun_cmd(2) + " run -q '" + toml + "'");
  EXPECT_NE(r.code, 0) << r.out;
  EXPECT_NE(r.code, 124) << "the job hung instead of ending\n" << r.out;
  EXPECT_NE(r.out.find("no-such-model"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("rank "), std::string::npos) << r.out;
}

}  // namespace
