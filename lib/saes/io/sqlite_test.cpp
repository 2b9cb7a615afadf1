// SQLite wrapper: typed round trips, blobs, transactions that roll back, one-line errors.
#include <catch2/catch.hpp>

#include <string>

#include "saes/core/error.h"
#include "saes/io/sqlite.h"
#include "support/temp_dir.h"

using saes::io::SqliteDatabase;
using saes::io::SqliteMode;

TEST_CASE("sqlite stores typed values and blobs and reads them back", "[io][sqlite]") {
  saes::testing::TempDir dir;
  SqliteDatabase db(dir.path() / "a.sqlite", SqliteMode::kCreate);
  db.exec("CREATE TABLE t (i INTEGER, d REAL, s TEXT, b BLOB, n INTEGER)");
  const std::vector<float> blob = {1.5F, -2.0F, 3.25F};
  db.prepare("INSERT INTO t VALUES (?, ?, ?, ?, ?)")
      .bind(1, std::int64_t{-7})
      .bind(2, 0.125)
      .bind(3, "héllo")
      .bind_blob(4, saes::io::as_blob(blob))
      .bind_null(5)
      .run();
  auto st = db.prepare("SELECT i, d, s, b, n FROM t");
  REQUIRE(st.step());
  CHECK(st.column_int(0) == -7);
  CHECK(st.column_double(1) == 0.125);
  CHECK(st.column_text(2) == "héllo");
  CHECK(saes::io::from_blob<float>(st.column_blob(3)) == blob);
  CHECK(st.is_null(4));
  CHECK_FALSE(st.step());
}

TEST_CASE("sqlite transaction rolls back unless committed", "[io][sqlite]") {
  saes::testing::TempDir dir;
  SqliteDatabase db(dir.path() / "a.sqlite", SqliteMode::kCreate);
  db.exec("CREATE TABLE t (i INTEGER)");
  {
    saes::io::SqliteTransaction tx(db);
    db.exec("INSERT INTO t VALUES (1)");
  }
  {
    saes::io::SqliteTransaction tx(db);
    db.exec("INSERT INTO t VALUES (2)");
    tx.commit();
  }
  auto st = db.prepare("SELECT group_concat(i) FROM t");
  REQUIRE(st.step());
  CHECK(st.column_text(0) == "2");
}

TEST_CASE("sqlite errors are one-line IoErrors naming the file", "[io][sqlite]") {
  saes::testing::TempDir dir;
  const auto missing = dir.path() / "none.sqlite";
  try {
    SqliteDatabase db(missing, SqliteMode::kReadOnly);
    FAIL("expected an IoError");
  } catch (const saes::IoError& e) {
    const std::string what = e.what();
    CHECK(what.find("none.sqlite") != std::string::npos);
    CHECK(what.find('\n') == std::string::npos);
  }
  SqliteDatabase db(dir.path() / "b.sqlite", SqliteMode::kCreate);
  CHECK_THROWS_AS(db.prepare("SELEC nonsense"), saes::IoError);
  CHECK_THROWS_AS(saes::io::from_blob<float>(std::vector<std::byte>(3)), saes::DataError);
}
