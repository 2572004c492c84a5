#pragma once
// SQLite plumbing of sqlite_store (internal to store/): error mapping, one connection with its
// prepared-statement cache, statements, and read/write transactions.

#include "core/error.h"
#include "store/sqlite_store.h"

#include <fmt/format.h>
#include <sqlite3.h>

#include <cstring>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>

namespace acg2vec::store {

[[noreturn]] inline void raise(sqlite3* db, int rc, std::string_view what) {
  const char* message = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  switch (rc & 0xFF) {
    case SQLITE_FULL:
      fail(errc::unavailable, "disk full while {}: {}", what, message);
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      fail(errc::unavailable, "database is busy while {}: {}", what, message);
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      fail(errc::internal, "database is corrupt ({}): {}", what, message);
    case SQLITE_CONSTRAINT:
      fail(errc::conflict, "constraint violated while {}: {}", what, message);
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
    case SQLITE_PERM:
      fail(errc::unavailable, "database I/O error while {}: {}", what, message);
    default:
      fail(errc::internal, "SQLite error while {}: {}", what, message);
  }
}

// One sqlite3 handle plus its cache of prepared statements. Not thread-safe; the store
// hands each connection to one thread at a time.
class sqlite_connection {
 public:
  sqlite_connection(const std::filesystem::path& file, bool writer, const sqlite_options& options) {
    const int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (writer ? SQLITE_OPEN_CREATE : 0);
    const int rc = sqlite3_open_v2(file.c_str(), &db_, flags, nullptr);
    if (rc != SQLITE_OK) {
      const std::string message = db_ != nullptr ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
      sqlite3_close(db_);
      db_ = nullptr;
      fail(errc::unavailable, "cannot open database {}: {}", file.string(), message);
    }
    sqlite3_extended_result_codes(db_, 1);
    sqlite3_busy_timeout(db_, options.busy_timeout_ms);
    try {
      if (writer) {
        // WAL lets readers keep reading while the single writer commits.
        if (query_text("PRAGMA journal_mode=WAL") != "wal")
          fail(errc::unavailable, "database {} cannot be switched to WAL mode", file.string());
        exec(options.full_sync ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL");
        if (options.max_pages > 0) exec(fmt::format("PRAGMA max_page_count = {}", options.max_pages).c_str());
      } else {
        exec("PRAGMA query_only=1");
      }
    } catch (...) {
      close();
      throw;
    }
  }
  ~sqlite_connection() { close(); }
  sqlite_connection(const sqlite_connection&) = delete;
  sqlite_connection& operator=(const sqlite_connection&) = delete;

  sqlite3* db() const noexcept { return db_; }

  void exec(const char* sql) {
    char* message = nullptr;
    const int rc = sqlite3_exec(db_, sql, nullptr, nullptr, &message);
    if (rc != SQLITE_OK) {
      const std::string text = message != nullptr ? message : sqlite3_errstr(rc);
      sqlite3_free(message);
      raise(db_, rc, fmt::format("running '{}' ({})", std::string_view(sql).substr(0, 40), text));
    }
  }

  std::string query_text(const char* sql);

  // Cached statements are reset by the statement wrapper; dynamic ones are finalized by it.
  sqlite3_stmt* prepare(const std::string& sql, bool cached) {
    if (cached) {
      if (auto it = cache_.find(sql); it != cache_.end()) return it->second;
    }
    sqlite3_stmt* stmt = nullptr;
    const int rc = sqlite3_prepare_v2(db_, sql.c_str(), static_cast<int>(sql.size()), &stmt, nullptr);
    if (rc != SQLITE_OK) raise(db_, rc, "preparing a statement");
    if (cached) cache_.emplace(sql, stmt);
    return stmt;
  }

 private:
  void close() noexcept {
    for (auto& [sql, stmt] : cache_) sqlite3_finalize(stmt);
    cache_.clear();
    sqlite3_close(db_);
    db_ = nullptr;
  }

  sqlite3* db_ = nullptr;
  std::unordered_map<std::string, sqlite3_stmt*> cache_;
};

class statement {
 public:
  statement(sqlite_connection& c, const std::string& sql, bool cached = true)
      : c_(c), s_(c.prepare(sql, cached)), cached_(cached) {}
  ~statement() {
    if (cached_) {
      sqlite3_reset(s_);
      sqlite3_clear_bindings(s_);
    } else {
      sqlite3_finalize(s_);
    }
  }
  statement(const statement&) = delete;
  statement& operator=(const statement&) = delete;

  statement& bind(int i, std::string_view v) {
    check(sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT));
    return *this;
  }
  statement& bind(int i, std::int64_t v) {
    check(sqlite3_bind_int64(s_, i, v));
    return *this;
  }
  statement& bind(int i, double v) {
    check(sqlite3_bind_double(s_, i, v));
    return *this;
  }
  statement& bind_blob(int i, const void* data, std::size_t bytes) {
    check(sqlite3_bind_blob(s_, i, data, static_cast<int>(bytes), SQLITE_TRANSIENT));
    return *this;
  }

  /// true while there is a row.
  bool step() {
    const int rc = sqlite3_step(s_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    raise(c_.db(), rc, "executing a statement");
  }
  void run() {
    while (step()) {
    }
  }

  std::string text(int i) const {
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s_, i));
    return p != nullptr ? std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(s_, i)))
                        : std::string();
  }
  std::int64_t int64(int i) const { return sqlite3_column_int64(s_, i); }
  double real(int i) const { return sqlite3_column_double(s_, i); }
  std::span<const std::byte> blob(int i) const {
    const auto* p = static_cast<const std::byte*>(sqlite3_column_blob(s_, i));
    return {p, p != nullptr ? static_cast<std::size_t>(sqlite3_column_bytes(s_, i)) : 0};
  }

 private:
  void check(int rc) {
    if (rc != SQLITE_OK) raise(c_.db(), rc, "binding a parameter");
  }
  sqlite_connection& c_;
  sqlite3_stmt* s_;
  bool cached_;
};

// Read transaction: a consistent snapshot across the several queries that assemble an item.
class read_transaction {
 public:
  explicit read_transaction(sqlite_connection& c) : c_(c) { c_.exec("BEGIN"); }
  ~read_transaction() { sqlite3_exec(c_.db(), "COMMIT", nullptr, nullptr, nullptr); }
  read_transaction(const read_transaction&) = delete;
  read_transaction& operator=(const read_transaction&) = delete;

 private:
  sqlite_connection& c_;
};

// Write transaction that rolls back unless committed.
class write_transaction {
 public:
  explicit write_transaction(sqlite_connection& c) : c_(c) { c_.exec("BEGIN IMMEDIATE"); }
  ~write_transaction() {
    // A failed COMMIT (e.g. disk full) may already have rolled back on its own.
    if (!committed_ && sqlite3_get_autocommit(c_.db()) == 0)
      sqlite3_exec(c_.db(), "ROLLBACK", nullptr, nullptr, nullptr);
  }
  write_transaction(const write_transaction&) = delete;
  write_transaction& operator=(const write_transaction&) = delete;
  void commit() {
    c_.exec("COMMIT");
    committed_ = true;
  }

 private:
  sqlite_connection& c_;
  bool committed_ = false;
};

inline std::string sqlite_connection::query_text(const char* sql) {
  statement s(*this, sql, false);
  return s.step() ? s.text(0) : std::string();
}

}  // namespace acg2vec::store
