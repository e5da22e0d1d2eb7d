// Small RAII wrappers over the SQLite C API (internal): a connection, a prepared statement, a
// write transaction. Every SQLite failure becomes a kvprime::Error that names the database file,
// what was being done, SQLite's own message and code, and a hint for the common causes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

struct sqlite3;
struct sqlite3_stmt;

namespace kvprime::sql {

class Db {
 public:
  // `label` starts every error message, e.g. "results store out/demo/results.sqlite".
  static Db open(const std::string& path, const std::string& label, bool read_only);

  Db(Db&& o) noexcept;
  Db& operator=(Db&& o) noexcept;
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;
  ~Db();

  sqlite3* get() const { return db_; }
  const std::string& path() const { return path_; }
  const std::string& label() const { return label_; }

  void exec(const std::string& sql, const char* doing) const;
  int64_t changes() const;  // rows changed by the last INSERT/UPDATE/DELETE
  void busy_timeout(int ms) const;
  // Throws for a result code `rc` of SQLite (not OK/ROW/DONE) while `doing`.
  [[noreturn]] void fail(int rc, const std::string& doing) const;
  void check(int rc, const std::string& doing) const;

 private:
  Db(sqlite3* db, std::string path, std::string label)
      : db_(db), path_(std::move(path)), label_(std::move(label)) {}
  sqlite3* db_ = nullptr;
  std::string path_, label_;
};

class Stmt {
 public:
  // `doing` names the statement in errors (default: its SQL text).
  Stmt(const Db& db, const std::string& sql, const std::string& doing = "");
  Stmt(Stmt&& o) noexcept : db_(o.db_), st_(o.st_), doing_(std::move(o.doing_)) { o.st_ = nullptr; }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  ~Stmt();

  // Parameters are 1-based, as in SQLite.
  Stmt& bind(int i, int64_t v);
  Stmt& bind(int i, double v);
  Stmt& bind(int i, const std::string& v);
  Stmt& bind_null(int i);
  Stmt& bind_blob(int i, const void* data, size_t bytes);

  bool step();   // true: a row is available; false: done
  void reset();  // ready to bind and step again (bindings cleared)

  // Columns are 0-based, as in SQLite.
  bool is_null(int c) const;
  int64_t col_int(int c) const;
  double col_double(int c) const;
  std::string col_text(int c) const;
  std::vector<uint8_t> col_blob(int c) const;

 private:
  const Db* db_;
  sqlite3_stmt* st_ = nullptr;
  std::string doing_;
};

// BEGIN IMMEDIATE (takes the write lock now, waiting up to the busy timeout); rolled back by the
// destructor unless commit() was called.
class Transaction {
 public:
  explicit Transaction(const Db& db);
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  ~Transaction();
  void commit();

 private:
  const Db& db_;
  bool open_ = false;
};

}  // namespace kvprime::sql
