#include "kvprime/experiment/store.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <set>

#include "io/sqlite.h"
#include "kvprime/core/error.h"
#include "kvprime/core/hash.h"
#include "kvprime/core/version.h"

namespace kvprime {

namespace {

using json = nlohmann::json;

constexpr const char* kFormat = "kvprime-results";
constexpr int64_t kApplicationId = 0x6B767072;  // "kvpr": `file` and sqlite3 show it
constexpr int kBusyTimeoutMs = 30000;
constexpr const char* kNow = "strftime('%Y-%m-%dT%H:%M:%SZ', 'now')";

// Schema version 2 (kSchema + kFailuresTable). A change to it means kSchemaVersion + 1 and a
// migration from every older one (in check_or_init below).
constexpr const char* kSchema = R"sql(
CREATE TABLE kvprime_meta (           -- what this file is: format, schema_version, created_by
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
CREATE TABLE runs (
  run_id          INTEGER PRIMARY KEY,
  name            TEXT NOT NULL,
  status          TEXT NOT NULL CHECK (status IN ('running', 'finished')),
  created_at      TEXT NOT NULL,      -- ISO 8601 UTC
  finished_at     TEXT,
  archived_at     TEXT,               -- set when a new run of the same name replaced it
  kvprime_version TEXT NOT NULL,
  config_json     TEXT NOT NULL,      -- canonical JSON (sorted keys)
  config_hash     TEXT NOT NULL       -- fnv1a64 of config_json, 16 hex digits
);
CREATE UNIQUE INDEX runs_current_name ON runs (name) WHERE archived_at IS NULL;
CREATE TABLE results (
  run_id        INTEGER NOT NULL REFERENCES runs (run_id),
  sample_id     TEXT NOT NULL,
  condition     TEXT NOT NULL,
  candidate     INTEGER NOT NULL,     -- -1: the sample's passage; k >= 0: k-th irrelevant passage
  sample_index  INTEGER NOT NULL,
  nll           REAL NOT NULL,
  n_scored      INTEGER NOT NULL,
  token_nll     BLOB NOT NULL,        -- float64 little-endian, 0 or n_scored values
  pmi           REAL,
  baseline_nll  REAL,
  prefix_tokens INTEGER NOT NULL,
  doc_tokens    INTEGER NOT NULL,
  cache_len     INTEGER NOT NULL,
  prefix_text   TEXT NOT NULL,
  seconds       REAL NOT NULL,
  extra         TEXT,                 -- JSON; NULL for none
  stored_at     TEXT NOT NULL,
  PRIMARY KEY (run_id, sample_id, condition, candidate)
);
)sql";

// Version 2: scores that came out NaN/inf are kept here, not in results (never averaged in).
constexpr const char* kFailuresTable = R"sql(
CREATE TABLE failures (
  run_id        INTEGER NOT NULL REFERENCES runs (run_id),
  sample_id     TEXT NOT NULL,
  condition     TEXT NOT NULL,
  candidate     INTEGER NOT NULL,
  sample_index  INTEGER NOT NULL,
  what          TEXT NOT NULL,        -- cache, logits, nll, baseline_nll
  detail        TEXT NOT NULL,
  stored_at     TEXT NOT NULL,
  PRIMARY KEY (run_id, sample_id, condition, candidate)
);
)sql";

std::string label_of(const std::string& path) { return "results store " + path; }

std::string short_dump(const json& v) {
  std::string s = v.dump(-1, ' ', false, json::error_handler_t::replace);
  return s.size() > 80 ? s.substr(0, 77) + "..." : s;
}

std::string pointer_token(const std::string& key) {
  std::string out;
  for (char c : key) {
    if (c == '~') out += "~0";
    else if (c == '/') out += "~1";
    else out += c;
  }
  return out;
}

bool json_diff(const json& a, const json& b, const std::string& path, std::string& out) {
  if (a == b) return false;
  const std::string where = path.empty() ? "(the whole configuration)" : path;
  if (a.is_object() && b.is_object()) {
    std::set<std::string> keys;
    for (auto it = a.begin(); it != a.end(); ++it) keys.insert(it.key());
    for (auto it = b.begin(); it != b.end(); ++it) keys.insert(it.key());
    for (const auto& k : keys) {
      const std::string p = path + "/" + pointer_token(k);
      auto ia = a.find(k), ib = b.find(k);
      if (ia == a.end()) { out = p + ": stored (absent), now " + short_dump(*ib); return true; }
      if (ib == b.end()) { out = p + ": stored " + short_dump(*ia) + ", now (absent)"; return true; }
      if (json_diff(*ia, *ib, p, out)) return true;
    }
  } else if (a.is_array() && b.is_array()) {
    const size_t n = std::min(a.size(), b.size());
    for (size_t i = 0; i < n; ++i)
      if (json_diff(a[i], b[i], path + "/" + std::to_string(i), out)) return true;
    out = where + ": stored " + std::to_string(a.size()) + " elements, now " + std::to_string(b.size());
    return true;
  }
  out = where + ": stored " + short_dump(a) + ", now " + short_dump(b);
  return true;
}

// token_nll <-> BLOB of float64 little-endian (exact, NaN and infinities included).
std::vector<uint8_t> encode_doubles(const std::vector<double>& v) {
  std::vector<uint8_t> out(v.size() * 8);
  for (size_t i = 0; i < v.size(); ++i) {
    uint64_t bits;
    std::memcpy(&bits, &v[i], 8);
    for (int b = 0; b < 8; ++b) out[i * 8 + b] = static_cast<uint8_t>(bits >> (8 * b));
  }
  return out;
}

std::vector<double> decode_doubles(const std::vector<uint8_t>& bytes, const std::string& label,
                                   const std::string& key) {
  KVP_CHECK(bytes.size() % 8 == 0, label, ": row ", key, ": token_nll has ", bytes.size(),
            " bytes, not a multiple of 8 (float64); the file was edited or damaged");
  std::vector<double> out(bytes.size() / 8);
  for (size_t i = 0; i < out.size(); ++i) {
    uint64_t bits = 0;
    for (int b = 0; b < 8; ++b) bits |= static_cast<uint64_t>(bytes[i * 8 + b]) << (8 * b);
    std::memcpy(&out[i], &bits, 8);
  }
  return out;
}

std::vector<std::string> table_names(const sql::Db& db) {
  sql::Stmt st(db, "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name",
               "reading the list of tables");
  std::vector<std::string> out;
  while (st.step()) out.push_back(st.col_text(0));
  return out;
}

// Checks that `db` is a kvprime results store of a schema this build reads; creates the schema in
// an empty database when `writable`, and migrates an older schema when `writable`. Returns the
// schema version the file has now (an older one only when read-only).
int check_or_init(const sql::Db& db, bool writable) {
  const std::string& label = db.label();
  std::vector<std::string> tables = table_names(db);  // the first read: a non-database fails here
  if (tables.empty()) {
    KVP_CHECK(writable, label, ": the file is empty, not a kvprime results store; pass the store a "
              "run wrote (e.g. out/<name>/results.sqlite)");
    // WAL first (it cannot change inside a transaction), then the schema in one transaction.
    db.exec("PRAGMA journal_mode = WAL", "switching to WAL");
    sql::Transaction t(db);
    if (table_names(db).empty()) {  // another process may have created it meanwhile
      db.exec(kSchema, "creating the schema");
      db.exec(kFailuresTable, "creating the failures table");
      sql::Stmt ins(db, "INSERT INTO kvprime_meta (key, value) VALUES (?, ?)");
      const std::pair<const char*, std::string> meta[] = {
          {"format", kFormat}, {"schema_version", std::to_string(ResultStore::kSchemaVersion)},
          {"created_by", std::string("kvprime ") + kVersion}};
      for (const auto& [k, v] : meta) {
        ins.bind(1, std::string(k)).bind(2, v);
        ins.step();
        ins.reset();
      }
      db.exec("PRAGMA application_id = " + std::to_string(kApplicationId), "setting application_id");
    }
    t.commit();
    tables = table_names(db);
  }
  bool has_meta = false;
  for (const auto& t : tables) has_meta |= t == "kvprime_meta";
  if (!has_meta) {
    std::string list;
    for (size_t i = 0; i < tables.size() && i < 5; ++i) list += (i ? ", " : "") + tables[i];
    if (tables.size() > 5) list += ", ...";
    KVP_FAIL(label, ": an SQLite database but not a kvprime results store (tables: ", list,
             "; no kvprime_meta); pass another path — kvprime will not write into a foreign database");
  }
  std::string format, version;
  {
    sql::Stmt st(db, "SELECT key, value FROM kvprime_meta WHERE key IN ('format', 'schema_version')");
    while (st.step()) (st.col_text(0) == "format" ? format : version) = st.col_text(1);
  }
  KVP_CHECK(format == kFormat, label, ": kvprime_meta.format is '", format, "', expected '", kFormat,
            "'; this is not a kvprime results store: pass another path");
  int64_t v = -1;
  try {
    size_t used = 0;
    v = std::stoll(version, &used);
    if (used != version.size()) v = -1;
  } catch (const std::exception&) {
  }
  KVP_CHECK(v >= 1, label, ": kvprime_meta.schema_version is '", version,
            "', not a positive integer; the file was edited or damaged");
  KVP_CHECK(v <= ResultStore::kSchemaVersion, label, ": written by a newer kvprime (schema version ", v,
            ", this kvprime ", kVersion, " reads up to ", ResultStore::kSchemaVersion,
            "); upgrade kvprime to read or extend it");
  if (v == 1 && writable) {
    // 1 -> 2: the failures table. Another process may migrate at the same time: re-check inside
    // the transaction.
    sql::Transaction t(db);
    bool has = false;
    for (const auto& name : table_names(db)) has |= name == "failures";
    if (!has) db.exec(kFailuresTable, "migrating schema 1 -> 2 (creating the failures table)");
    db.exec("UPDATE kvprime_meta SET value = '2' WHERE key = 'schema_version'",
            "migrating schema 1 -> 2 (schema_version)");
    t.commit();
    v = 2;
  }
  KVP_CHECK(v == ResultStore::kSchemaVersion || !writable, label, ": schema version ", v,
            " has no migration to version ", ResultStore::kSchemaVersion, "; start a new store");
  if (writable) {
    sql::Stmt st(db, "PRAGMA journal_mode = WAL");
    std::string mode = st.step() ? st.col_text(0) : std::string();
    KVP_CHECK(mode == "wal", label, ": cannot use write-ahead logging (journal_mode is '", mode,
              "'); this file system does not support it (network file system?): put the store on a "
              "local disk");
  }
  return static_cast<int>(v);
}

const char* kRowColumns =
    "sample_id, condition, candidate, sample_index, nll, n_scored, token_nll, pmi, baseline_nll, "
    "prefix_tokens, doc_tokens, cache_len, prefix_text, seconds, extra";

std::string row_key(const std::string& sample_id, const std::string& condition, int64_t candidate) {
  std::string k = "(sample '" + sample_id + "', condition '" + condition + "'";
  if (candidate != ResultRow::kPlain) k += ", candidate " + std::to_string(candidate);
  return k + ")";
}

void check_row(const ResultRow& r, size_t i, const std::string& label) {
  const std::string where = label + ": put(): row " + std::to_string(i) + " " +
                            row_key(r.sample_id, r.condition, r.candidate);
  KVP_CHECK(!r.sample_id.empty(), where, ": sample_id is empty");
  KVP_CHECK(!r.condition.empty(), where, ": condition is empty");
  KVP_CHECK(r.candidate >= ResultRow::kPlain, where, ": candidate is ", r.candidate,
            "; expected -1 (the sample's passage) or an irrelevant passage's index >= 0");
  KVP_CHECK(std::isfinite(r.nll), where, ": nll is ", r.nll, "; a result is a finite number (a NaN "
            "or an infinite score goes into put()'s failures, so that it is reported and never "
            "averaged in)");
  KVP_CHECK(!r.pmi || std::isfinite(*r.pmi), where, ": pmi is ", r.pmi.value_or(0),
            "; leave it empty when there is none, store a failure when it broke");
  KVP_CHECK(!r.baseline_nll || std::isfinite(*r.baseline_nll), where, ": baseline_nll is ",
            r.baseline_nll.value_or(0), "; leave it empty when there is none, store a failure when it broke");
  KVP_CHECK(!std::isnan(r.seconds), where, ": seconds is NaN");
  KVP_CHECK(r.n_scored >= 0 && r.prefix_tokens >= 0 && r.doc_tokens >= 0 && r.cache_len >= 0 &&
                r.sample_index >= 0,
            where, ": negative count (sample_index ", r.sample_index, ", n_scored ", r.n_scored,
            ", prefix_tokens ", r.prefix_tokens, ", doc_tokens ", r.doc_tokens, ", cache_len ",
            r.cache_len, ")");
  KVP_CHECK(r.token_nll.empty() || static_cast<int64_t>(r.token_nll.size()) == r.n_scored, where,
            ": token_nll has ", r.token_nll.size(), " values but n_scored is ", r.n_scored,
            "; give one NLL per scored token, or none");
}

void check_failure(const FailureRow& f, size_t i, const std::string& label) {
  const std::string where = label + ": put(): failure " + std::to_string(i) + " " +
                            row_key(f.sample_id, f.condition, f.candidate);
  KVP_CHECK(!f.sample_id.empty(), where, ": sample_id is empty");
  KVP_CHECK(!f.condition.empty(), where, ": condition is empty");
  KVP_CHECK(f.candidate >= ResultRow::kPlain, where, ": candidate is ", f.candidate,
            "; expected -1 (the sample's passage) or an irrelevant passage's index >= 0");
  KVP_CHECK(f.sample_index >= 0, where, ": negative sample_index ", f.sample_index);
  KVP_CHECK(!f.what.empty(), where, ": what is empty; say what was not finite (cache, logits, nll)");
}

RunInfo read_run(sql::Stmt& st) {
  // Columns: run_id, name, status, created_at, finished_at, archived_at, kvprime_version,
  //          config_json, config_hash, rows, failures
  RunInfo r;
  r.run_id = st.col_int(0);
  r.name = st.col_text(1);
  r.status = st.col_text(2);
  r.created_at = st.col_text(3);
  r.finished_at = st.col_text(4);
  r.archived_at = st.col_text(5);
  r.archived = !st.is_null(5);
  r.kvprime_version = st.col_text(6);
  r.config = json::parse(st.col_text(7), nullptr, /*allow_exceptions=*/false);
  r.config_hash = st.col_text(8);
  r.rows = st.col_int(9);
  r.failures = st.col_int(10);
  return r;
}

// The runs query; a version-1 file read without migrating has no failures table.
std::string run_select(int schema_version) {
  return std::string(
             "SELECT r.run_id, r.name, r.status, r.created_at, r.finished_at, r.archived_at, "
             "r.kvprime_version, r.config_json, r.config_hash, "
             "(SELECT count(*) FROM results x WHERE x.run_id = r.run_id), ") +
         (schema_version >= 2 ? "(SELECT count(*) FROM failures f WHERE f.run_id = r.run_id)" : "0") +
         " FROM runs r ";
}

}  // namespace

std::string first_json_difference(const json& stored, const json& now) {
  std::string out;
  json_diff(stored, now, "", out);
  return out;
}

struct ResultStore::Impl {
  sql::Db db;
  int64_t run_id = 0;
  bool read_only = false;
  int schema_version = ResultStore::kSchemaVersion;

  void require_writable(const char* what) const {
    KVP_CHECK(!read_only, db.label(), ": ", what, "() on a store opened read-only (open_readonly); "
              "open it with ResultStore::open to write");
  }
};

ResultStore::ResultStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ResultStore::ResultStore(ResultStore&&) noexcept = default;
ResultStore& ResultStore::operator=(ResultStore&&) noexcept = default;
ResultStore::~ResultStore() = default;

ResultStore ResultStore::open(const std::string& path, const std::string& run_name,
                              const json& config, StoreMode mode) {
  const std::string label = label_of(path);
  KVP_CHECK(!path.empty(), "results store: empty path; give a file name such as out/demo/results.sqlite");
  KVP_CHECK(!run_name.empty(), label, ": empty run name; give the experiment a name");
  KVP_CHECK(!config.is_discarded(), label, ": run '", run_name, "': the configuration is not valid JSON");
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(parent, ec);
    KVP_CHECK(!ec, label, ": cannot create the directory ", parent.string(), ": ", ec.message());
  }
  KVP_CHECK(!std::filesystem::is_directory(path), label, ": is a directory; give a file name inside "
            "it, e.g. ", (std::filesystem::path(path) / "results.sqlite").string());

  auto impl = std::make_unique<Impl>(Impl{sql::Db::open(path, label, false), 0, false});
  const sql::Db& db = impl->db;
  db.busy_timeout(kBusyTimeoutMs);
  impl->schema_version = check_or_init(db, /*writable=*/true);
  const std::string select_runs = run_select(impl->schema_version);
  db.exec("PRAGMA synchronous = FULL", "setting synchronous = FULL");
  db.exec("PRAGMA foreign_keys = ON", "enabling foreign keys");

  // Canonical form: what the file will hold, so that comparisons see the same types and NaN -> null.
  std::string config_text;
  try {
    config_text = config.dump(-1, ' ', false, json::error_handler_t::strict);
  } catch (const json::exception& e) {
    KVP_FAIL(label, ": run '", run_name, "': the configuration cannot be stored as JSON: ", e.what());
  }
  const json canonical = json::parse(config_text);

  sql::Transaction t(db);
  std::optional<RunInfo> current;
  {
    sql::Stmt st(db, select_runs + "WHERE r.name = ? AND r.archived_at IS NULL");
    st.bind(1, run_name);
    if (st.step()) current = read_run(st);
  }
  if (current && mode == StoreMode::Resume) {
    KVP_CHECK(!current->config.is_discarded(), label, ": run '", run_name,
              "': the stored configuration is not valid JSON; the file was edited or damaged");
    const std::string diff = first_json_difference(current->config, canonical);
    KVP_CHECK(diff.empty(), label, ": run '", run_name, "' was started (", current->created_at,
              ") with a different configuration; first difference at ", diff,
              ". Resuming would mix results of two configurations: pass --new-run to start over "
              "(the ", current->rows, " stored row(s) are kept, archived) or give the experiment "
              "another name");
    impl->run_id = current->run_id;
  } else {
    if (current) {  // NewRun: archive, never delete
      sql::Stmt up(db, std::string("UPDATE runs SET archived_at = ") + kNow + " WHERE run_id = ?");
      up.bind(1, current->run_id);
      up.step();
    }
    sql::Stmt ins(db, std::string("INSERT INTO runs (name, status, created_at, kvprime_version, "
                                  "config_json, config_hash) VALUES (?, 'running', ") +
                          kNow + ", ?, ?, ?)");
    ins.bind(1, run_name).bind(2, std::string(kVersion)).bind(3, config_text)
        .bind(4, hex64(fnv1a64(config_text)));
    ins.step();
    sql::Stmt last(db, "SELECT last_insert_rowid()");
    last.step();
    impl->run_id = last.col_int(0);
  }
  t.commit();
  return ResultStore(std::move(impl));
}

ResultStore ResultStore::open_readonly(const std::string& path, const std::string& run_name,
                                       int64_t run_id) {
  const std::string label = label_of(path);
  KVP_CHECK(std::filesystem::is_regular_file(path), label, ": no such file; pass the results.sqlite "
            "that `kvprime run` wrote (in the experiment's out directory)");
  auto impl = std::make_unique<Impl>(Impl{sql::Db::open(path, label, true), 0, true});
  const sql::Db& db = impl->db;
  db.busy_timeout(kBusyTimeoutMs);
  impl->schema_version = check_or_init(db, /*writable=*/false);
  const std::string select_runs = run_select(impl->schema_version);

  std::vector<RunInfo> found;
  {
    std::string where;
    if (run_id >= 0) where = "WHERE r.run_id = ?";
    else if (!run_name.empty()) where = "WHERE r.name = ? AND r.archived_at IS NULL";
    else where = "WHERE r.archived_at IS NULL";
    sql::Stmt st(db, select_runs + where + " ORDER BY r.run_id");
    if (run_id >= 0) st.bind(1, run_id);
    else if (!run_name.empty()) st.bind(1, run_name);
    while (st.step()) found.push_back(read_run(st));
  }
  if (found.size() != 1) {
    std::string names;
    for (const auto& r : list_runs(path))
      names += (names.empty() ? "" : ", ") + r.name + " (id " + std::to_string(r.run_id) +
               (r.archived ? ", archived" : "") + ")";
    if (names.empty()) names = "none";
    if (run_id >= 0) KVP_FAIL(label, ": no run with id ", run_id, "; runs: ", names);
    if (!run_name.empty()) KVP_FAIL(label, ": no current run named '", run_name, "'; runs: ", names);
    KVP_FAIL(label, ": ", found.empty() ? "no runs" : "several current runs",
             "; name the run to read (runs: ", names, ")");
  }
  impl->run_id = found[0].run_id;
  return ResultStore(std::move(impl));
}

std::vector<RunInfo> ResultStore::list_runs(const std::string& path) {
  const std::string label = label_of(path);
  KVP_CHECK(std::filesystem::is_regular_file(path), label, ": no such file");
  sql::Db db = sql::Db::open(path, label, true);
  db.busy_timeout(kBusyTimeoutMs);
  sql::Stmt st(db, run_select(check_or_init(db, false)) + "ORDER BY r.run_id");
  std::vector<RunInfo> out;
  while (st.step()) out.push_back(read_run(st));
  return out;
}

const std::string& ResultStore::path() const { return impl_->db.path(); }

RunInfo ResultStore::info() const {
  sql::Stmt st(impl_->db, run_select(impl_->schema_version) + "WHERE r.run_id = ?");
  st.bind(1, impl_->run_id);
  KVP_CHECK(st.step(), impl_->db.label(), ": run ", impl_->run_id, " vanished from the file");
  return read_run(st);
}

std::set<std::pair<std::string, std::string>> ResultStore::done() const {
  std::set<std::pair<std::string, std::string>> out;
  for (const auto& [sample, condition, candidate] : done_keys()) out.emplace(sample, condition);
  return out;
}

std::set<std::tuple<std::string, std::string, int64_t>> ResultStore::done_keys() const {
  std::set<std::tuple<std::string, std::string, int64_t>> out;
  for (const char* table : {"results", "failures"}) {
    if (impl_->schema_version < 2 && std::string(table) == "failures") continue;
    sql::Stmt st(impl_->db, std::string("SELECT sample_id, condition, candidate FROM ") + table +
                                " WHERE run_id = ?");
    st.bind(1, impl_->run_id);
    while (st.step()) out.emplace(st.col_text(0), st.col_text(1), st.col_int(2));
  }
  return out;
}

int64_t ResultStore::put(const std::vector<ResultRow>& rows, const std::vector<FailureRow>& failures) {
  impl_->require_writable("put");
  const sql::Db& db = impl_->db;
  for (size_t i = 0; i < rows.size(); ++i) check_row(rows[i], i, db.label());
  for (size_t i = 0; i < failures.size(); ++i) check_failure(failures[i], i, db.label());
  {
    std::set<std::tuple<std::string, std::string, int64_t>> keys;
    for (const auto& r : rows) keys.emplace(r.sample_id, r.condition, r.candidate);
    for (const auto& f : failures)
      KVP_CHECK(!keys.count({f.sample_id, f.condition, f.candidate}), db.label(), ": put(): ",
                row_key(f.sample_id, f.condition, f.candidate),
                " is given both as a result and as a failure; it is one or the other");
  }
  if (rows.empty() && failures.empty()) return 0;

  sql::Transaction t(db);
  sql::Stmt ins(db, std::string("INSERT INTO results (run_id, ") + kRowColumns +
                        ", stored_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, " + kNow +
                        ") ON CONFLICT (run_id, sample_id, condition, candidate) DO NOTHING");
  int64_t added = 0;
  for (const auto& r : rows) {
    const std::vector<uint8_t> blob = encode_doubles(r.token_nll);
    ins.bind(1, impl_->run_id).bind(2, r.sample_id).bind(3, r.condition).bind(4, r.candidate)
        .bind(5, r.sample_index).bind(6, r.nll).bind(7, r.n_scored).bind_blob(8, blob.data(), blob.size());
    if (r.pmi) ins.bind(9, *r.pmi); else ins.bind_null(9);
    if (r.baseline_nll) ins.bind(10, *r.baseline_nll); else ins.bind_null(10);
    ins.bind(11, r.prefix_tokens).bind(12, r.doc_tokens).bind(13, r.cache_len)
        .bind(14, r.prefix_text).bind(15, r.seconds);
    if (r.extra.is_null()) ins.bind_null(16);
    else ins.bind(16, r.extra.dump(-1, ' ', false, json::error_handler_t::replace));
    ins.step();
    added += db.changes();
    ins.reset();
  }
  if (!failures.empty()) {
    sql::Stmt fin(db, std::string("INSERT INTO failures (run_id, sample_id, condition, candidate, "
                                  "sample_index, what, detail, stored_at) VALUES (?, ?, ?, ?, ?, ?, ?, ") +
                          kNow + ") ON CONFLICT (run_id, sample_id, condition, candidate) DO NOTHING");
    for (const auto& f : failures) {
      fin.bind(1, impl_->run_id).bind(2, f.sample_id).bind(3, f.condition).bind(4, f.candidate)
          .bind(5, f.sample_index).bind(6, f.what).bind(7, f.detail);
      fin.step();
      added += db.changes();
      fin.reset();
    }
  }
  if (added > 0) {
    sql::Stmt up(db, "UPDATE runs SET status = 'running', finished_at = NULL "
                     "WHERE run_id = ? AND status = 'finished'");
    up.bind(1, impl_->run_id);
    up.step();
  }
  t.commit();
  return added;
}

std::vector<ResultRow> ResultStore::rows() const {
  const sql::Db& db = impl_->db;
  sql::Stmt st(db, std::string("SELECT ") + kRowColumns +
                       " FROM results WHERE run_id = ? ORDER BY sample_index, condition, candidate");
  st.bind(1, impl_->run_id);
  std::vector<ResultRow> out;
  while (st.step()) {
    ResultRow r;
    r.sample_id = st.col_text(0);
    r.condition = st.col_text(1);
    r.candidate = st.col_int(2);
    r.sample_index = st.col_int(3);
    r.nll = st.col_double(4);
    r.n_scored = st.col_int(5);
    r.token_nll = decode_doubles(st.col_blob(6), db.label(), row_key(r.sample_id, r.condition, r.candidate));
    if (!st.is_null(7)) r.pmi = st.col_double(7);
    if (!st.is_null(8)) r.baseline_nll = st.col_double(8);
    r.prefix_tokens = st.col_int(9);
    r.doc_tokens = st.col_int(10);
    r.cache_len = st.col_int(11);
    r.prefix_text = st.col_text(12);
    r.seconds = st.col_double(13);
    if (!st.is_null(14)) {
      r.extra = json::parse(st.col_text(14), nullptr, false);
      KVP_CHECK(!r.extra.is_discarded(), db.label(), ": row ",
                row_key(r.sample_id, r.condition, r.candidate),
                ": column extra is not valid JSON; the file was edited or damaged");
    }
    out.push_back(std::move(r));
  }
  return out;
}

int64_t ResultStore::count() const {
  sql::Stmt st(impl_->db, "SELECT count(*) FROM results WHERE run_id = ?");
  st.bind(1, impl_->run_id);
  st.step();
  return st.col_int(0);
}

std::vector<FailureRow> ResultStore::failures() const {
  std::vector<FailureRow> out;
  if (impl_->schema_version < 2) return out;
  sql::Stmt st(impl_->db, "SELECT sample_id, sample_index, condition, candidate, what, detail FROM "
                          "failures WHERE run_id = ? ORDER BY sample_index, condition, candidate");
  st.bind(1, impl_->run_id);
  while (st.step()) {
    FailureRow f;
    f.sample_id = st.col_text(0);
    f.sample_index = st.col_int(1);
    f.condition = st.col_text(2);
    f.candidate = st.col_int(3);
    f.what = st.col_text(4);
    f.detail = st.col_text(5);
    out.push_back(std::move(f));
  }
  return out;
}

void ResultStore::mark_finished() {
  impl_->require_writable("mark_finished");
  sql::Stmt st(impl_->db, std::string("UPDATE runs SET status = 'finished', finished_at = ") + kNow +
                              " WHERE run_id = ?");
  st.bind(1, impl_->run_id);
  st.step();
}

}  // namespace kvprime
