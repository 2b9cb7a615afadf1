// RAII wrapper over SQLite 3 (the embedded results database of saes-analyze, docs/analysis-db.md):
// Database (open read-only or read-write), prepared Statement (bind, step, columns), Transaction.
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

struct sqlite3;
struct sqlite3_stmt;

namespace saes::io {

enum class SqliteMode { kReadOnly, kReadWrite, kCreate };

class SqliteStatement;

/// One open database connection. Errors are IoError naming the file and SQLite's message.
class SqliteDatabase {
 public:
  /// kReadOnly/kReadWrite need an existing file; kCreate creates it when absent.
  SqliteDatabase(const std::filesystem::path& path, SqliteMode mode);
  ~SqliteDatabase();
  SqliteDatabase(const SqliteDatabase&) = delete;
  SqliteDatabase& operator=(const SqliteDatabase&) = delete;
  SqliteDatabase(SqliteDatabase&& other) noexcept;
  SqliteDatabase& operator=(SqliteDatabase&&) = delete;

  /// Runs one or more statements without results (schema, pragmas).
  void exec(std::string_view sql);
  /// Compiles one statement.
  SqliteStatement prepare(std::string_view sql);
  const std::filesystem::path& path() const { return path_; }
  sqlite3* handle() const { return db_; }

 private:
  std::filesystem::path path_;
  sqlite3* db_ = nullptr;
};

/// A prepared statement; bind indices start at 1, column indices at 0.
class SqliteStatement {
 public:
  SqliteStatement(SqliteDatabase& db, std::string_view sql);
  ~SqliteStatement();
  SqliteStatement(const SqliteStatement&) = delete;
  SqliteStatement& operator=(const SqliteStatement&) = delete;
  SqliteStatement(SqliteStatement&& other) noexcept;
  SqliteStatement& operator=(SqliteStatement&&) = delete;

  SqliteStatement& bind(int index, std::int64_t value);
  SqliteStatement& bind(int index, double value);
  SqliteStatement& bind(int index, std::string_view text);
  SqliteStatement& bind_blob(int index, std::span<const std::byte> bytes);
  SqliteStatement& bind_null(int index);
  /// Advances; true while a row is available, false when done. Throws IoError on failure.
  bool step();
  /// step() expecting no row (INSERT/UPDATE), then reset() for reuse.
  void run();
  /// Resets the statement and clears bindings.
  void reset();

  bool is_null(int column) const;
  std::int64_t column_int(int column) const;
  double column_double(int column) const;
  std::string column_text(int column) const;
  std::vector<std::byte> column_blob(int column) const;

 private:
  SqliteDatabase* db_;
  sqlite3_stmt* stmt_ = nullptr;
};

/// BEGIN on construction, ROLLBACK on destruction unless commit() was called.
class SqliteTransaction {
 public:
  explicit SqliteTransaction(SqliteDatabase& db);
  ~SqliteTransaction();
  SqliteTransaction(const SqliteTransaction&) = delete;
  SqliteTransaction& operator=(const SqliteTransaction&) = delete;
  void commit();

 private:
  SqliteDatabase& db_;
  bool done_ = false;
};

/// Byte views of trivially copyable vectors (BLOB columns).
template <class T>
std::span<const std::byte> as_blob(const std::vector<T>& v) {
  return std::as_bytes(std::span<const T>(v));
}
/// Decodes a BLOB written by as_blob; throws DataError when the size is not a multiple of T.
template <class T>
std::vector<T> from_blob(const std::vector<std::byte>& bytes);

}  // namespace saes::io
