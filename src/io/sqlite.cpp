#include "io/sqlite.h"

#include <sqlite3.h>

#include <cstring>

#include "kvprime/core/error.h"

namespace kvprime::sql {

namespace {

const char* hint(int rc) {
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return "; another process kept the file locked past the busy timeout (another kvprime run on "
             "the same store?): wait for it or use another output directory";
    case SQLITE_NOTADB:
      return "; the file is not an SQLite database: pass the path of a kvprime results store or a "
             "new file name";
    case SQLITE_CORRUPT:
      return "; the database file is damaged: keep it for inspection and start a new store";
    case SQLITE_FULL:
      return "; the disk is full: free space and re-run (rows already committed are kept)";
    case SQLITE_READONLY:
      return "; the file or its directory is not writable: fix the permissions or use another path";
    case SQLITE_CANTOPEN:
      return "; check that the directory exists and is writable";
    case SQLITE_IOERR:
      return "; an I/O error (disk, network file system?)";
    default:
      return "";
  }
}

}  // namespace

Db Db::open(const std::string& path, const std::string& label, bool read_only) {
  sqlite3* db = nullptr;
  const int flags = read_only ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  int rc = sqlite3_open_v2(path.c_str(), &db, flags | SQLITE_OPEN_NOMUTEX, nullptr);
  Db out(db, path, label);  // owns db even when opening failed (sqlite3_open_v2 may allocate it)
  if (rc != SQLITE_OK) {
    if (!db) KVP_FAIL(label, ": cannot open: out of memory");
    out.fail(rc, read_only ? "opening (read-only)" : "opening");
  }
  sqlite3_extended_result_codes(db, 1);
  return out;
}

Db::Db(Db&& o) noexcept : db_(o.db_), path_(std::move(o.path_)), label_(std::move(o.label_)) {
  o.db_ = nullptr;
}

Db& Db::operator=(Db&& o) noexcept {
  if (this != &o) {
    if (db_) sqlite3_close_v2(db_);
    db_ = o.db_;
    o.db_ = nullptr;
    path_ = std::move(o.path_);
    label_ = std::move(o.label_);
  }
  return *this;
}

Db::~Db() {
  if (db_) sqlite3_close_v2(db_);
}

void Db::fail(int rc, const std::string& doing) const {
  const char* msg = db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
  KVP_FAIL(label_, ": ", doing, " failed: ", msg, " (SQLite code ", rc, ")", hint(rc));
}

void Db::check(int rc, const std::string& doing) const {
  if (rc != SQLITE_OK && rc != SQLITE_ROW && rc != SQLITE_DONE) fail(rc, doing);
}

void Db::exec(const std::string& sql, const char* doing) const {
  char* err = nullptr;
  int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err);
  if (rc != SQLITE_OK) {
    std::string msg = err ? err : sqlite3_errstr(rc);
    sqlite3_free(err);
    KVP_FAIL(label_, ": ", doing, " failed: ", msg, " (SQLite code ", rc, ")", hint(rc));
  }
}

int64_t Db::changes() const { return sqlite3_changes(db_); }

void Db::busy_timeout(int ms) const { check(sqlite3_busy_timeout(db_, ms), "setting the busy timeout"); }

Stmt::Stmt(const Db& db, const std::string& sql, const std::string& doing) : db_(&db), doing_(doing) {
  if (doing_.empty()) doing_ = "running \"" + sql.substr(0, 60) + (sql.size() > 60 ? "...\"" : "\"");
  int rc = sqlite3_prepare_v2(db.get(), sql.c_str(), static_cast<int>(sql.size()) + 1, &st_, nullptr);
  if (rc != SQLITE_OK) {
    sqlite3_finalize(st_);
    st_ = nullptr;
    db.fail(rc, doing_);
  }
}

Stmt::~Stmt() {
  if (st_) sqlite3_finalize(st_);
}

Stmt& Stmt::bind(int i, int64_t v) {
  db_->check(sqlite3_bind_int64(st_, i, v), "binding a parameter");
  return *this;
}
Stmt& Stmt::bind(int i, double v) {
  db_->check(sqlite3_bind_double(st_, i, v), "binding a parameter");
  return *this;
}
Stmt& Stmt::bind(int i, const std::string& v) {
  db_->check(sqlite3_bind_text(st_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT),
             "binding a parameter");
  return *this;
}
Stmt& Stmt::bind_null(int i) {
  db_->check(sqlite3_bind_null(st_, i), "binding a parameter");
  return *this;
}
Stmt& Stmt::bind_blob(int i, const void* data, size_t bytes) {
  // A zero-length blob binds as an empty blob (not NULL) even when data is nullptr.
  static const char kEmpty = 0;
  db_->check(sqlite3_bind_blob64(st_, i, bytes ? data : &kEmpty, bytes, SQLITE_TRANSIENT),
             "binding a parameter");
  return *this;
}

bool Stmt::step() {
  int rc = sqlite3_step(st_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  db_->fail(rc, doing_);
}

void Stmt::reset() {
  sqlite3_reset(st_);  // its code repeats the last step's, which step() already reported
  sqlite3_clear_bindings(st_);
}

bool Stmt::is_null(int c) const { return sqlite3_column_type(st_, c) == SQLITE_NULL; }
int64_t Stmt::col_int(int c) const { return sqlite3_column_int64(st_, c); }
double Stmt::col_double(int c) const { return sqlite3_column_double(st_, c); }
std::string Stmt::col_text(int c) const {
  const auto* p = sqlite3_column_text(st_, c);
  return p ? std::string(reinterpret_cast<const char*>(p), static_cast<size_t>(sqlite3_column_bytes(st_, c)))
           : std::string();
}
std::vector<uint8_t> Stmt::col_blob(int c) const {
  const void* p = sqlite3_column_blob(st_, c);
  const int n = sqlite3_column_bytes(st_, c);
  std::vector<uint8_t> out(static_cast<size_t>(n));
  if (n > 0) std::memcpy(out.data(), p, static_cast<size_t>(n));
  return out;
}

Transaction::Transaction(const Db& db) : db_(db) {
  db_.exec("BEGIN IMMEDIATE", "starting a write transaction");
  open_ = true;
}

Transaction::~Transaction() {
  if (open_) sqlite3_exec(db_.get(), "ROLLBACK", nullptr, nullptr, nullptr);
}

void Transaction::commit() {
  db_.exec("COMMIT", "committing");
  open_ = false;
}

}  // namespace kvprime::sql
