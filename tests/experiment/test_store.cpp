// The SQLite results store: rows round trip exactly; a re-opened run resumes (done() knows every
// stored row, re-puts never duplicate); a changed configuration is refused naming the difference;
// a new run archives the old one; a process killed with SIGKILL between or inside transactions
// leaves every committed row readable and the store openable; readers read while a run writes.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include "kvprime/core/error.h"
#include "kvprime/core/version.h"
#include "kvprime/experiment/store.h"
#include "test_support.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <thread>

using namespace kvprime;
using kvprime::test::TempDir;
using json = nlohmann::json;

using kvprime::test::expect_error_with;

namespace {

json config() {
  return {{"model", "models/demo"},
          {"seed", 42},
          {"conditions", json::array({{{"name", "bare"}, {"prefix", {{"kind", "none"}}}},
                                      {{"name", "oracle"}, {"prefix", {{"kind", "oracle"}, {"rep", 1}}}}})}};
}

// A deterministic row for (sample i, condition c, candidate k): its values tell its key.
ResultRow make_row(int64_t i, const std::string& c, int64_t k = ResultRow::kPlain) {
  ResultRow r;
  r.sample_id = "s" + std::to_string(i);
  r.sample_index = i;
  r.condition = c;
  r.candidate = k;
  r.nll = 1.0 + i * 0.001 + (c == "bare" ? 0.5 : 0.0) + 0.01 * static_cast<double>(k + 1);
  r.n_scored = 3;
  r.token_nll = {r.nll - 0.1, r.nll, r.nll + 0.1};
  if (c != "bare") {
    r.baseline_nll = 2.0;
    r.pmi = r.nll - 2.0;
  }
  r.prefix_tokens = c == "bare" ? 0 : 7;
  r.doc_tokens = 50 + i;
  r.cache_len = r.prefix_tokens + r.doc_tokens + 1;
  r.prefix_text = c == "bare" ? "" : "query of " + r.sample_id;
  r.seconds = 0.25;
  r.extra = {{"k", k}};
  return r;
}

std::vector<ResultRow> make_rows(int64_t from, int64_t to, const std::string& c) {
  std::vector<ResultRow> out;
  for (int64_t i = from; i < to; ++i) out.push_back(make_row(i, c));
  return out;
}

bool bit_equal(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }

void expect_same_row(const ResultRow& a, const ResultRow& b) {
  EXPECT_EQ(a.sample_id, b.sample_id);
  EXPECT_EQ(a.sample_index, b.sample_index);
  EXPECT_EQ(a.condition, b.condition);
  EXPECT_EQ(a.candidate, b.candidate);
  EXPECT_TRUE(bit_equal(a.nll, b.nll)) << a.nll << " vs " << b.nll;
  EXPECT_EQ(a.n_scored, b.n_scored);
  ASSERT_EQ(a.token_nll.size(), b.token_nll.size());
  for (size_t t = 0; t < a.token_nll.size(); ++t)
    EXPECT_TRUE(bit_equal(a.token_nll[t], b.token_nll[t])) << "token " << t;
  EXPECT_EQ(a.pmi.has_value(), b.pmi.has_value());
  if (a.pmi && b.pmi) EXPECT_TRUE(bit_equal(*a.pmi, *b.pmi));
  EXPECT_EQ(a.baseline_nll.has_value(), b.baseline_nll.has_value());
  if (a.baseline_nll && b.baseline_nll) EXPECT_TRUE(bit_equal(*a.baseline_nll, *b.baseline_nll));
  EXPECT_EQ(a.prefix_tokens, b.prefix_tokens);
  EXPECT_EQ(a.doc_tokens, b.doc_tokens);
  EXPECT_EQ(a.cache_len, b.cache_len);
  EXPECT_EQ(a.prefix_text, b.prefix_text);
  EXPECT_TRUE(bit_equal(a.seconds, b.seconds));
  EXPECT_EQ(a.extra, b.extra);
}

// Raw SQLite access for what the API must not offer (corrupting, inspecting pragmas).
std::string sql_value(const std::string& path, const std::string& query) {
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr), SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  std::string out;
  if (sqlite3_prepare_v2(db, query.c_str(), -1, &st, nullptr) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW &&
      sqlite3_column_text(st, 0))
    out = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
  sqlite3_finalize(st);
  sqlite3_close(db);
  return out;
}

void sql_exec(const std::string& path, const std::string& statements) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  char* err = nullptr;
  EXPECT_EQ(sqlite3_exec(db, statements.c_str(), nullptr, nullptr, &err), SQLITE_OK) << (err ? err : "");
  sqlite3_free(err);
  sqlite3_close(db);
}

}  // namespace

TEST(ResultStore, RowsRoundTripExactly) {
  TempDir tmp;
  const std::string path = tmp.file("sub/dir/results.sqlite");  // parent directories are created
  auto store = ResultStore::open(path, "demo", config());
  ResultRow odd = make_row(5, "oracle", 1);
  odd.token_nll = {std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity(),
                   -0.0, std::numeric_limits<double>::denorm_min(), 1.0 / 3.0};
  odd.n_scored = 5;
  odd.nll = std::numeric_limits<double>::max();  // (an infinite nll is a failure, not a row)
  odd.prefix_text = "Ünïcode \"quotes\" and\nnewlines\t\xF0\x9F\x98\x80";
  odd.extra = json::object({{"nested", {{"a", json::array({1, 2.5, "x", nullptr})}}}});
  ResultRow plain = make_row(2, "bare");
  plain.extra = nullptr;
  plain.token_nll.clear();  // token_nll is optional
  ResultRow big = make_row(9, "oracle");
  big.n_scored = 4096;
  big.token_nll.assign(4096, 0.0);
  for (int t = 0; t < 4096; ++t) big.token_nll[t] = std::sin(t) * 7.0;
  EXPECT_EQ(store.put({odd, plain, big}), 3);

  auto rows = store.rows();
  ASSERT_EQ(rows.size(), 3u);
  expect_same_row(rows[0], plain);  // ordered by sample_index
  expect_same_row(rows[1], odd);
  expect_same_row(rows[2], big);
  EXPECT_EQ(store.count(), 3);
  EXPECT_EQ(store.done(), (std::set<std::pair<std::string, std::string>>{
                              {"s2", "bare"}, {"s5", "oracle"}, {"s9", "oracle"}}));
  EXPECT_EQ(store.done_keys().count({"s5", "oracle", 1}), 1u);

  RunInfo info = store.info();
  EXPECT_EQ(info.name, "demo");
  EXPECT_EQ(info.status, "running");
  EXPECT_FALSE(info.archived);
  EXPECT_EQ(info.kvprime_version, kVersion);
  EXPECT_EQ(info.config, config());
  EXPECT_EQ(info.config_hash.size(), 16u);
  EXPECT_EQ(info.rows, 3);
  EXPECT_EQ(info.created_at.size(), 20u) << info.created_at;  // 2025-01-02T03:04:05Z
  EXPECT_EQ(info.created_at.back(), 'Z');
  EXPECT_TRUE(info.finished_at.empty());
}

TEST(ResultStore, FileIsWalWithFullSyncAndMarked) {
  TempDir tmp;
  const std::string path = tmp.file("r.sqlite");
  { auto store = ResultStore::open(path, "demo", config()); }
  EXPECT_EQ(sql_value(path, "PRAGMA journal_mode"), "wal");
  EXPECT_EQ(sql_value(path, "PRAGMA application_id"), std::to_string(0x6B767072));
  EXPECT_EQ(sql_value(path, "SELECT value FROM kvprime_meta WHERE key = 'schema_version'"), "2");
  EXPECT_EQ(sql_value(path, "SELECT value FROM kvprime_meta WHERE key = 'format'"), "kvprime-results");
}

TEST(ResultStore, ResumeKnowsStoredRowsAndNeverDuplicates) {
  TempDir tmp;
  const std::string path = tmp.file("r.sqlite");
  int64_t run_id;
  {
    auto store = ResultStore::open(path, "demo", config());
    run_id = store.info().run_id;
    EXPECT_EQ(store.put(make_rows(0, 3, "bare")), 3);
    EXPECT_EQ(store.put({}), 0);
  }  // closed, as after the end of a process
  auto store = ResultStore::open(path, "demo", config(), StoreMode::Resume);
  EXPECT_EQ(store.info().run_id, run_id) << "same run resumed";
  EXPECT_EQ(store.done(), (std::set<std::pair<std::string, std::string>>{
                              {"s0", "bare"}, {"s1", "bare"}, {"s2", "bare"}}));
  // Re-putting stored keys (even with other values) adds nothing: the first value wins.
  std::vector<ResultRow> again = make_rows(1, 5, "bare");
  again[0].nll = 99.0;
  again.push_back(make_row(4, "bare"));  // repeated within one put
  again.push_back(make_row(4, "oracle"));
  EXPECT_EQ(store.put(again), 3);        // s3, s4 bare; s4 oracle
  auto rows = store.rows();
  ASSERT_EQ(rows.size(), 6u);
  expect_same_row(rows[1], make_row(1, "bare"));
  std::set<std::tuple<std::string, std::string, int64_t>> keys;
  for (const auto& r : rows) keys.emplace(r.sample_id, r.condition, r.candidate);
  EXPECT_EQ(keys.size(), rows.size()) << "no duplicate keys";
  EXPECT_EQ(store.done_keys(), keys);
}

TEST(ResultStore, CandidatesAreSeparateRows) {
  TempDir tmp;
  auto store = ResultStore::open(tmp.file("r.sqlite"), "rank", config());
  EXPECT_EQ(store.put({make_row(0, "bare"), make_row(0, "bare", 0), make_row(0, "bare", 1)}), 3);
  EXPECT_EQ(store.put({make_row(0, "bare", 1)}), 0);
  EXPECT_EQ(store.done().size(), 1u);
  EXPECT_EQ(store.done_keys().size(), 3u);
  auto rows = store.rows();
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].candidate, -1);
  EXPECT_EQ(rows[2].candidate, 1);
}

TEST(ResultStore, SameConfigInAnotherKeyOrderOrNumberTypeResumes) {
  TempDir tmp;
  const std::string path = tmp.file("r.sqlite");
  { ResultStore::open(path, "demo", json::parse(R"({"b": 1, "a": [1.5, 2]})")).put(make_rows(0, 1, "bare")); }
  auto store = ResultStore::open(path, "demo", json::parse(R"({"a": [1.5, 2], "b": 1})"));
  EXPECT_EQ(store.count(), 1);
  json c;
  c["a"] = {1.5, static_cast<int64_t>(2)};
  c["b"] = static_cast<uint64_t>(1);
  EXPECT_EQ(ResultStore::open(path, "demo", c).count(), 1);
}

TEST(ResultStore, ChangedConfigIsRefusedNamingTheDifference) {
  TempDir tmp;
  const std::string path = tmp.file("r.sqlite");
  { ResultStore::open(path, "demo", config()).put(make_rows(0, 3, "bare")); }
  json changed = config();
  changed["conditions"][1]["prefix"]["kind"] = "reversed";
  expect_error_with([&] { ResultStore::open(path, "demo", changed); },
                    {path, "run 'demo'", "different configuration",
                     "/conditions/1/prefix/kind: stored \"oracle\", now \"reversed\"", "--new-run",
                     "3 stored row(s) are kept", "another name"});
  json added = config();
  added["conditions"].push_back({{"name", "x"}});
  expect_error_with([&] { ResultStore::open(path, "demo", added); },
                    {"/conditions: stored 2 elements, now 3"});
  json removed = config();
  removed.erase("seed");
  expect_error_with([&] { ResultStore::open(path, "demo", removed); }, {"/seed: stored 42, now (absent)"});
  // The refusal changed nothing: the original configuration still resumes its rows.
  EXPECT_EQ(ResultStore::open(path, "demo", config()).count(), 3);
  EXPECT_EQ(ResultStore::list_runs(path).size(), 1u);
}

TEST(ResultStore, NewRunArchivesTheOldRunAndKeepsItsRows) {
  TempDir tmp;
  const std::string path = tmp.file("r.sqlite");
  int64_t old_id;
  {
    auto s = ResultStore::open(path, "demo", config());
    old_id = s.info().run_id;
    s.put(make_rows(0, 3, "bare"));
  }
  json changed = config();
  changed["seed"] = 7;
  int64_t new_id;
  {
    auto s = ResultStore::open(path, "demo", changed, StoreMode::NewRun);
    new_id = s.info().run_id;
    EXPECT_NE(new_id, old_id);
    EXPECT_EQ(s.count(), 0);
    EXPECT_TRUE(s.done().empty());
    EXPECT_EQ(s.put(make_rows(0, 2, "bare")), 2) << "same keys as the archived run: a new run stores them";
  }
  // Resume now continues the new run, with the new configuration.
  EXPECT_EQ(ResultStore::open(path, "demo", changed).info().run_id, new_id);
  expect_error_with([&] { ResultStore::open(path, "demo", config()); }, {"/seed: stored 7, now 42"});

  auto runs = ResultStore::list_runs(path);
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(runs[0].run_id, old_id);
  EXPECT_TRUE(runs[0].archived);
  EXPECT_FALSE(runs[0].archived_at.empty());
  EXPECT_EQ(runs[0].rows, 3);
  EXPECT_EQ(runs[0].config, config());
  EXPECT_FALSE(runs[1].archived);
  EXPECT_EQ(runs[1].rows, 2);
  // The archived rows stay readable by run id.
  auto old = ResultStore::open_readonly(path, "", old_id);
  auto rows = old.rows();
  ASSERT_EQ(rows.size(), 3u);
  expect_same_row(rows[2], make_row(2, "bare"));
  // NewRun on a name that has no run yet simply creates it; a third run archives the second.
  EXPECT_EQ(ResultStore::open(path, "other", config(), StoreMode::NewRun).count(), 0);
  { ResultStore::open(path, "demo", config(), StoreMode::NewRun); }
  runs = ResultStore::list_runs(path);
  ASSERT_EQ(runs.size(), 4u);
  EXPECT_TRUE(runs[1].archived);
  EXPECT_EQ(runs[1].rows, 2);
}

TEST(ResultStore, RunsOfDifferentNamesShareAFile) {
  TempDir tmp;
  const std::string path = tmp.file("r.sqlite");
  auto a = ResultStore::open(path, "a", config());
  auto b = ResultStore::open(path, "b", json{{"other", true}});  // two connections at once
  EXPECT_EQ(a.put(make_rows(0, 2, "bare")), 2);
  EXPECT_EQ(b.put(make_rows(0, 5, "bare")), 5);
  EXPECT_EQ(a.count(), 2);
  EXPECT_EQ(b.count(), 5);
  expect_error_with([&] { ResultStore::open_readonly(path); }, {"several current runs", "a (id", "b (id"});
  EXPECT_EQ(ResultStore::open_readonly(path, "b").count(), 5);
}

TEST(ResultStore, FinishedStatus) {
  TempDir tmp;
  const std::string path = tmp.file("r.sqlite");
  auto s = ResultStore::open(path, "demo", config());
  s.put(make_rows(0, 2, "bare"));
  s.mark_finished();
  RunInfo info = s.info();
  EXPECT_EQ(info.status, "finished");
  EXPECT_FALSE(info.finished_at.empty());
  EXPECT_EQ(s.put(make_rows(0, 2, "bare")), 0);
  EXPECT_EQ(s.info().status, "finished") << "nothing new: still finished";
  EXPECT_EQ(s.put(make_rows(2, 3, "bare")), 1);
  info = s.info();
  EXPECT_EQ(info.status, "running") << "new rows: running again";
  EXPECT_TRUE(info.finished_at.empty());
}

TEST(ResultStore, ReadOnly) {
  TempDir tmp;
  const std::string path = tmp.file("r.sqlite");
  expect_error_with([&] { ResultStore::open_readonly(path); }, {path, "no such file"});
  auto w = ResultStore::open(path, "demo", config());
  w.put(make_rows(0, 2, "bare"));
  auto r = ResultStore::open_readonly(path);  // the only current run
  EXPECT_EQ(r.count(), 2);
  EXPECT_EQ(r.info().name, "demo");
  expect_error_with([&] { r.put(make_rows(5, 6, "bare")); }, {path, "put() on a store opened read-only"});
  expect_error_with([&] { r.mark_finished(); }, {"mark_finished() on a store opened read-only"});
  expect_error_with([&] { ResultStore::open_readonly(path, "nope"); },
                    {"no current run named 'nope'", "runs: demo (id 1)"});
  expect_error_with([&] { ResultStore::open_readonly(path, "", 42); }, {"no run with id 42"});
  w.put(make_rows(2, 4, "bare"));
  EXPECT_EQ(r.count(), 4) << "a reader sees later commits";
}

TEST(ResultStore, BadRowsAreRefusedWholeBatch) {
  TempDir tmp;
  auto s = ResultStore::open(tmp.file("r.sqlite"), "demo", config());
  auto with = [&](const std::function<void(ResultRow&)>& edit, const std::vector<std::string>& parts) {
    std::vector<ResultRow> rows = make_rows(0, 3, "bare");
    edit(rows[2]);
    expect_error_with([&] { s.put(rows); }, parts);
    EXPECT_EQ(s.count(), 0) << "nothing of a refused batch is written";
  };
  with([](ResultRow& r) { r.nll = std::nan(""); },
       {"put(): row 2 (sample 's2', condition 'bare')", "nll is nan", "failures"});
  with([](ResultRow& r) { r.nll = -std::numeric_limits<double>::infinity(); }, {"row 2", "nll is -inf"});
  with([](ResultRow& r) { r.pmi = std::nan(""); }, {"row 2", "pmi is nan"});
  with([](ResultRow& r) { r.pmi = std::numeric_limits<double>::infinity(); }, {"row 2", "pmi is inf"});
  with([](ResultRow& r) { r.baseline_nll = std::nan(""); }, {"row 2", "baseline_nll is nan"});
  with([](ResultRow& r) { r.seconds = std::nan(""); }, {"row 2", "seconds is NaN"});
  with([](ResultRow& r) { r.token_nll.pop_back(); }, {"row 2", "token_nll has 2 values but n_scored is 3"});
  with([](ResultRow& r) { r.condition.clear(); }, {"row 2", "condition is empty"});
  with([](ResultRow& r) { r.sample_id.clear(); }, {"row 2", "sample_id is empty"});
  with([](ResultRow& r) { r.candidate = -2; }, {"row 2", "candidate -2", "candidate is -2"});
  with([](ResultRow& r) { r.doc_tokens = -1; }, {"row 2", "negative count", "doc_tokens -1"});
  EXPECT_EQ(s.put(make_rows(0, 3, "bare")), 3);
}

TEST(ResultStore, FilesThatAreNotStores) {
  TempDir tmp;
  const std::string text = tmp.file("text.sqlite");
  test::write_file(text, std::string(4096, 'x'));
  expect_error_with([&] { ResultStore::open(text, "demo", config()); },
                    {"results store " + text, "not a database", "not an SQLite database"});
  expect_error_with([&] { ResultStore::open_readonly(text); }, {text, "not a database"});

  const std::string foreign = tmp.file("foreign.sqlite");
  sql_exec(foreign, "CREATE TABLE samples (x INTEGER); CREATE TABLE notes (y TEXT);");
  expect_error_with([&] { ResultStore::open(foreign, "demo", config()); },
                    {foreign, "not a kvprime results store", "notes, samples",
                     "will not write into a foreign database"});
  EXPECT_EQ(sql_value(foreign, "SELECT count(*) FROM sqlite_master"), "2") << "left untouched";

  const std::string empty = tmp.file("empty.sqlite");
  test::write_file(empty, "");
  expect_error_with([&] { ResultStore::open_readonly(empty); }, {empty, "empty, not a kvprime results store"});
  EXPECT_EQ(ResultStore::open(empty, "demo", config()).count(), 0) << "an empty file becomes a store";

  expect_error_with([&] { ResultStore::open(tmp.path(), "demo", config()); },
                    {tmp.path(), "is a directory", "results.sqlite"});
  expect_error_with([&] { ResultStore::open(tmp.file("x.sqlite"), "", config()); }, {"empty run name"});
  expect_error_with([&] { ResultStore::open(tmp.file("x.sqlite"), "demo", json{{"t", "\xFF"}}); },
                    {"run 'demo'", "configuration cannot be stored as JSON", "UTF-8"});
}

TEST(ResultStore, NewerOrDamagedSchemaIsRefused) {
  TempDir tmp;
  const std::string path = tmp.file("r.sqlite");
  { ResultStore::open(path, "demo", config()).put(make_rows(0, 1, "bare")); }
  sql_exec(path, "UPDATE kvprime_meta SET value = '3' WHERE key = 'schema_version'");
  expect_error_with([&] { ResultStore::open(path, "demo", config()); },
                    {path, "newer kvprime (schema version 3", "reads up to 2", "upgrade kvprime"});
  expect_error_with([&] { ResultStore::list_runs(path); }, {"newer kvprime"});
  sql_exec(path, "UPDATE kvprime_meta SET value = 'one' WHERE key = 'schema_version'");
  expect_error_with([&] { ResultStore::open_readonly(path); }, {"schema_version is 'one'"});
  sql_exec(path, "UPDATE kvprime_meta SET value = '2' WHERE key = 'schema_version';"
                 "UPDATE kvprime_meta SET value = 'something-else' WHERE key = 'format'");
  expect_error_with([&] { ResultStore::open(path, "demo", config()); },
                    {"format is 'something-else'", "not a kvprime results store"});
  sql_exec(path, "UPDATE kvprime_meta SET value = 'kvprime-results' WHERE key = 'format';"
                 "UPDATE results SET token_nll = x'0102'");
  expect_error_with([&] { ResultStore::open(path, "demo", config()).rows(); },
                    {"row (sample 's0', condition 'bare')", "token_nll has 2 bytes"});
}

TEST(JsonDifference, FirstDifferingPath) {
  EXPECT_EQ(first_json_difference(config(), config()), "");
  EXPECT_EQ(first_json_difference(json::parse("1"), json::parse("1.0")), "") << "numbers by value";
  EXPECT_EQ(first_json_difference({{"a", {{"b", 1}}}}, {{"a", {{"b", 2}}}}), "/a/b: stored 1, now 2");
  EXPECT_EQ(first_json_difference({{"a/b", 1}, {"c~", 2}}, {{"a/b", 1}, {"c~", 3}}), "/c~0: stored 2, now 3");
  EXPECT_EQ(first_json_difference({{"a/b", 1}}, {{"a/b", 2}}), "/a~1b: stored 1, now 2");
  EXPECT_EQ(first_json_difference(json::array({1, 2}), json::array({1, 2, 3})),
            "(the whole configuration): stored 2 elements, now 3");
  EXPECT_EQ(first_json_difference(json{{"x", 1}}, json::array()),
            "(the whole configuration): stored {\"x\":1}, now []");
  EXPECT_EQ(first_json_difference({{"t", std::string(200, 'a')}}, {{"t", "b"}}).size() < 120, true)
      << "long values are shortened";
}

// ---------------------------------------------------------------------------------------------
// Crash safety: a child process writes and is killed with SIGKILL; what it committed must be there.

namespace {

// Forks a child that runs `body(write_fd)` and exits; returns (pid, read end of the pipe).
std::pair<pid_t, int> spawn(const std::function<void(int)>& body) {
  int fds[2];
  EXPECT_EQ(pipe(fds), 0);
  pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    try {
      body(fds[1]);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "child: %s\n", e.what());
      _exit(3);
    }
    _exit(0);
  }
  close(fds[1]);
  return {pid, fds[0]};
}

void report(int fd, int64_t v) {
  ssize_t n = write(fd, &v, sizeof v);
  (void)n;
}

// Reads the next value the child reported; false at end of pipe.
bool next(int fd, int64_t& v) { return read(fd, &v, sizeof v) == static_cast<ssize_t>(sizeof v); }

void kill_and_reap(pid_t pid) {
  kill(pid, SIGKILL);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "the child was killed, not done";
}

void expect_rows_intact(const std::vector<ResultRow>& rows) {
  for (const auto& r : rows) {
    const int64_t i = std::stoll(r.sample_id.substr(1));
    expect_same_row(r, make_row(i, r.condition, r.candidate));
  }
}

}  // namespace

TEST(ResultStoreCrash, SigkillBetweenCommitsLosesNothingCommitted) {
  TempDir tmp;
  const std::string path = tmp.file("r.sqlite");
  constexpr int64_t kBatch = 10;
  auto [pid, fd] = spawn([&](int out) {
    auto s = ResultStore::open(path, "demo", config());
    for (int64_t b = 0;; ++b) {
      s.put(make_rows(b * kBatch, (b + 1) * kBatch, "bare"));
      report(out, (b + 1) * kBatch);  // committed
    }
  });
  int64_t committed = 0, v;
  while (committed < 100 && next(fd, v)) committed = v;
  kill_and_reap(pid);
  close(fd);
  ASSERT_GE(committed, 100);

  auto s = ResultStore::open(path, "demo", config());  // openable, same run
  const int64_t n = s.count();
  EXPECT_GE(n, committed) << "every reported commit survived";
  std::printf("reported committed %ld, found %ld\n", static_cast<long>(committed), static_cast<long>(n));
  EXPECT_EQ(n % kBatch, 0) << "a batch is all or nothing";
  auto rows = s.rows();
  ASSERT_EQ(static_cast<int64_t>(rows.size()), n);
  for (int64_t i = 0; i < n; ++i) EXPECT_EQ(rows[i].sample_index, i) << "no gap";
  expect_rows_intact(rows);
  EXPECT_EQ(sql_value(path, "PRAGMA integrity_check"), "ok");
  // Resuming fills the rest without duplicates.
  EXPECT_EQ(s.put(make_rows(0, n + 25, "bare")), 25);
  EXPECT_EQ(s.count(), n + 25);
}

TEST(ResultStoreCrash, SigkillInsideATransactionRollsItBackWhole) {
  TempDir tmp;
  const std::string path = tmp.file("r.sqlite");
  constexpr int64_t kBig = 20000;
  auto [pid, fd] = spawn([&](int out) {
    auto s = ResultStore::open(path, "demo", config());
    s.put(make_rows(0, 5, "bare"));
    report(out, 5);
    for (int64_t b = 0;; ++b) {
      report(out, -1);  // starting a big put
      s.put(make_rows(5 + b * kBig, 5 + (b + 1) * kBig, "oracle"));
    }
  });
  int64_t v = 0;
  ASSERT_TRUE(next(fd, v));
  ASSERT_EQ(v, 5);
  ASSERT_TRUE(next(fd, v));  // the first big put has begun
  std::this_thread::sleep_for(std::chrono::milliseconds(40));
  kill_and_reap(pid);
  close(fd);

  auto s = ResultStore::open(path, "demo", config());
  const int64_t n = s.count();
  EXPECT_GE(n, 5);
  EXPECT_EQ((n - 5) % kBig, 0) << n << " rows: a transaction in flight is rolled back whole";
  std::printf("rows after SIGKILL during a put of %ld: %ld\n", static_cast<long>(kBig), static_cast<long>(n));
  expect_rows_intact(s.rows());
  EXPECT_EQ(sql_value(path, "PRAGMA integrity_check"), "ok");
  EXPECT_EQ(s.put(make_rows(0, 5, "bare")), 0);
}

TEST(ResultStoreConcurrency, ReadersReadWhileARunWrites) {
  TempDir tmp;
  const std::string path = tmp.file("r.sqlite");
  constexpr int64_t kBatch = 5, kBatches = 60;
  { ResultStore::open(path, "demo", config()); }
  auto early = ResultStore::open_readonly(path, "demo");  // opened before the writer starts
  std::atomic<bool> done{false};
  std::string writer_error;
  std::thread writer([&] {
    try {
      auto s = ResultStore::open(path, "demo", config());
      for (int64_t b = 0; b < kBatches; ++b) s.put(make_rows(b * kBatch, (b + 1) * kBatch, "bare"));
    } catch (const std::exception& e) {
      writer_error = e.what();
    }
    done = true;
  });
  int64_t last = 0, reads = 0;
  while (!done) {
    auto r = ResultStore::open_readonly(path, "demo");
    const int64_t n = static_cast<int64_t>(r.rows().size());
    EXPECT_EQ(n % kBatch, 0) << "readers see whole commits only";
    EXPECT_GE(n, last) << "and never go back";
    const int64_t m = early.count();
    EXPECT_EQ(m % kBatch, 0);
    last = std::max(n, m);
    ++reads;
  }
  writer.join();
  std::printf("%ld reads while writing, last saw %ld rows\n", static_cast<long>(reads), static_cast<long>(last));
  EXPECT_EQ(writer_error, "");
  EXPECT_EQ(early.count(), kBatch * kBatches);
  EXPECT_GT(reads, 0);
}

TEST(ResultStoreConcurrency, ReaderInAnotherProcessWhileWriting) {
  TempDir tmp;
  const std::string path = tmp.file("r.sqlite");
  { ResultStore::open(path, "demo", config()); }
  // The child reads in a loop while this process writes; it reports each count it saw.
  auto [pid, fd] = spawn([&](int out) {
    for (int k = 0; k < 2000; ++k) {
      auto r = ResultStore::open_readonly(path, "demo");
      const int64_t n = r.count();
      report(out, n);
      if (n >= 200) return;
    }
  });
  {
    auto s = ResultStore::open(path, "demo", config());
    for (int64_t b = 0; b < 40; ++b) s.put(make_rows(b * 5, (b + 1) * 5, "bare"));
  }
  int64_t v, last = 0, reads = 0;
  while (next(fd, v)) {
    EXPECT_EQ(v % 5, 0);
    EXPECT_GE(v, last);
    last = v;
    ++reads;
  }
  close(fd);
  std::printf("%ld reads in another process, last saw %ld rows\n", static_cast<long>(reads), static_cast<long>(last));
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "the reader never failed";
  EXPECT_GT(reads, 0);
}

TEST(ResultStore, FailuresAreKeptApartAndCountAsDone) {
  TempDir tmp;
  const std::string path = tmp.file("r.sqlite");
  auto s = ResultStore::open(path, "demo", config());
  FailureRow f;
  f.sample_id = "s1";
  f.sample_index = 1;
  f.condition = "oracle";
  f.what = "cache";
  f.detail = "NaN/inf in the K/V of a valid slot";
  EXPECT_EQ(s.put(make_rows(0, 1, "oracle"), {f}), 2);
  EXPECT_EQ(s.put({}, {f}), 0) << "a stored failure is not stored twice";
  EXPECT_EQ(s.count(), 1) << "a failure is not a result";
  ASSERT_EQ(s.failures().size(), 1u);
  EXPECT_EQ(s.failures()[0].what, "cache");
  EXPECT_EQ(s.failures()[0].detail, f.detail);
  EXPECT_EQ(s.failures()[0].sample_index, 1);
  EXPECT_EQ(s.info().failures, 1);
  EXPECT_EQ(s.done().count({"s1", "oracle"}), 1u) << "a resume does not recompute a failure";
  EXPECT_EQ(ResultStore::open_readonly(path).failures().size(), 1u);

  FailureRow both = f;
  both.sample_id = "s0";
  expect_error_with([&] { s.put(make_rows(0, 1, "bare"), {[&] { FailureRow g = both; g.condition = "bare"; return g; }()}); },
                    {"(sample 's0', condition 'bare')", "both as a result and as a failure"});
  FailureRow no_what = f;
  no_what.sample_id = "s7";
  no_what.what.clear();
  expect_error_with([&] { s.put({}, {no_what}); }, {"failure 0", "what is empty"});
  EXPECT_EQ(s.failures().size(), 1u) << "nothing of a refused batch is written";
}

TEST(ResultStore, Version1FileIsReadAndMigrated) {
  TempDir tmp;
  const std::string path = tmp.file("r.sqlite");
  { ResultStore::open(path, "demo", config()).put(make_rows(0, 2, "bare")); }
  // What kvprime 0.1 (schema 1) wrote: no failures table.
  sql_exec(path, "DROP TABLE failures; UPDATE kvprime_meta SET value = '1' WHERE key = 'schema_version'");
  {
    auto r = ResultStore::open_readonly(path);  // read as it is, without writing
    EXPECT_EQ(r.count(), 2);
    EXPECT_TRUE(r.failures().empty());
    EXPECT_EQ(r.info().failures, 0);
    EXPECT_EQ(r.done().size(), 2u);
  }
  EXPECT_EQ(sql_value(path, "SELECT value FROM kvprime_meta WHERE key = 'schema_version'"), "1");
  auto w = ResultStore::open(path, "demo", config());  // writing migrates
  EXPECT_EQ(sql_value(path, "SELECT value FROM kvprime_meta WHERE key = 'schema_version'"), "2");
  FailureRow f;
  f.sample_id = "s5";
  f.condition = "bare";
  f.what = "nll";
  EXPECT_EQ(w.put({}, {f}), 1);
  EXPECT_EQ(w.count(), 2) << "rows of the old schema kept";
}
