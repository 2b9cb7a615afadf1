// RAII wrapper over SQLite 3: connections, prepared statements, transactions, BLOB helpers.
#include "saes/io/sqlite.h"

#include <sqlite3.h>

#include <cstring>
#include <utility>

#include "saes/core/error.h"

namespace saes::io {
namespace {

std::string message(sqlite3* db) { return db != nullptr ? sqlite3_errmsg(db) : "out of memory"; }

}  // namespace

SqliteDatabase::SqliteDatabase(const std::filesystem::path& path, SqliteMode mode) : path_(path) {
  int flags = SQLITE_OPEN_NOMUTEX;
  switch (mode) {
    case SqliteMode::kReadOnly:
      flags |= SQLITE_OPEN_READONLY;
      break;
    case SqliteMode::kReadWrite:
      flags |= SQLITE_OPEN_READWRITE;
      break;
    case SqliteMode::kCreate:
      flags |= SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
      break;
  }
  SAES_CHECK(mode == SqliteMode::kCreate || std::filesystem::is_regular_file(path), IoError,
             "{}: no such database file", path.string());
  const int rc = sqlite3_open_v2(path.c_str(), &db_, flags, nullptr);
  if (rc != SQLITE_OK) {
    const std::string what = message(db_);
    sqlite3_close(db_);
    db_ = nullptr;
    SAES_THROW(IoError, "{}: cannot open database: {}", path.string(), what);
  }
}

SqliteDatabase::~SqliteDatabase() { sqlite3_close(db_); }

SqliteDatabase::SqliteDatabase(SqliteDatabase&& other) noexcept
    : path_(std::move(other.path_)), db_(std::exchange(other.db_, nullptr)) {}

void SqliteDatabase::exec(std::string_view sql) {
  char* error = nullptr;
  const std::string text(sql);
  if (sqlite3_exec(db_, text.c_str(), nullptr, nullptr, &error) != SQLITE_OK) {
    const std::string what = error != nullptr ? error : message(db_);
    sqlite3_free(error);
    SAES_THROW(IoError, "{}: {}", path_.string(), what);
  }
}

SqliteStatement SqliteDatabase::prepare(std::string_view sql) { return {*this, sql}; }

SqliteStatement::SqliteStatement(SqliteDatabase& db, std::string_view sql) : db_(&db) {
  const int rc = sqlite3_prepare_v2(db.handle(), sql.data(), static_cast<int>(sql.size()), &stmt_,
                                    nullptr);
  SAES_CHECK(rc == SQLITE_OK, IoError, "{}: cannot prepare \"{}\": {}", db.path().string(), sql,
             message(db.handle()));
}

SqliteStatement::~SqliteStatement() { sqlite3_finalize(stmt_); }

SqliteStatement::SqliteStatement(SqliteStatement&& other) noexcept
    : db_(other.db_), stmt_(std::exchange(other.stmt_, nullptr)) {}

#define SAES_SQLITE_BIND(call)                                                              \
  SAES_CHECK((call) == SQLITE_OK, IoError, "{}: bind {} failed: {}", db_->path().string(), \
             index, message(db_->handle()));                                               \
  return *this

SqliteStatement& SqliteStatement::bind(int index, std::int64_t value) {
  SAES_SQLITE_BIND(sqlite3_bind_int64(stmt_, index, value));
}
SqliteStatement& SqliteStatement::bind(int index, double value) {
  SAES_SQLITE_BIND(sqlite3_bind_double(stmt_, index, value));
}
SqliteStatement& SqliteStatement::bind(int index, std::string_view text) {
  SAES_SQLITE_BIND(sqlite3_bind_text64(stmt_, index, text.data(), text.size(), SQLITE_TRANSIENT,
                                       SQLITE_UTF8));
}
SqliteStatement& SqliteStatement::bind_blob(int index, std::span<const std::byte> bytes) {
  const void* data = bytes.empty() ? static_cast<const void*>("") : bytes.data();
  SAES_SQLITE_BIND(sqlite3_bind_blob64(stmt_, index, data, bytes.size(), SQLITE_TRANSIENT));
}
SqliteStatement& SqliteStatement::bind_null(int index) {
  SAES_SQLITE_BIND(sqlite3_bind_null(stmt_, index));
}
#undef SAES_SQLITE_BIND

bool SqliteStatement::step() {
  const int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  SAES_CHECK(rc == SQLITE_DONE, IoError, "{}: {}", db_->path().string(), message(db_->handle()));
  return false;
}

void SqliteStatement::run() {
  SAES_CHECK(!step(), IoError, "{}: statement returned rows where none were expected",
             db_->path().string());
  reset();
}

void SqliteStatement::reset() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

bool SqliteStatement::is_null(int column) const {
  return sqlite3_column_type(stmt_, column) == SQLITE_NULL;
}
std::int64_t SqliteStatement::column_int(int column) const {
  return sqlite3_column_int64(stmt_, column);
}
double SqliteStatement::column_double(int column) const {
  return sqlite3_column_double(stmt_, column);
}
std::string SqliteStatement::column_text(int column) const {
  const auto* text = sqlite3_column_text(stmt_, column);
  const int n = sqlite3_column_bytes(stmt_, column);
  return text != nullptr ? std::string(reinterpret_cast<const char*>(text), static_cast<std::size_t>(n))
                         : std::string();
}
std::vector<std::byte> SqliteStatement::column_blob(int column) const {
  const void* data = sqlite3_column_blob(stmt_, column);
  const int n = sqlite3_column_bytes(stmt_, column);
  std::vector<std::byte> out(static_cast<std::size_t>(n));
  if (n > 0) std::memcpy(out.data(), data, out.size());
  return out;
}

SqliteTransaction::SqliteTransaction(SqliteDatabase& db) : db_(db) { db_.exec("BEGIN"); }

SqliteTransaction::~SqliteTransaction() {
  if (!done_) sqlite3_exec(db_.handle(), "ROLLBACK", nullptr, nullptr, nullptr);
}

void SqliteTransaction::commit() {
  db_.exec("COMMIT");
  done_ = true;
}

template <class T>
std::vector<T> from_blob(const std::vector<std::byte>& bytes) {
  SAES_CHECK(bytes.size() % sizeof(T) == 0, DataError,
             "database blob of {} bytes is not a whole number of {}-byte values", bytes.size(),
             sizeof(T));
  std::vector<T> out(bytes.size() / sizeof(T));
  if (!out.empty()) std::memcpy(out.data(), bytes.data(), bytes.size());
  return out;
}

template std::vector<std::int32_t> from_blob(const std::vector<std::byte>&);
template std::vector<std::int64_t> from_blob(const std::vector<std::byte>&);
template std::vector<float> from_blob(const std::vector<std::byte>&);
template std::vector<double> from_blob(const std::vector<std::byte>&);

}  // namespace saes::io
