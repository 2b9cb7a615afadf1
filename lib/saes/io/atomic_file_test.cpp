// remove_tree (our replacement for std::filesystem::remove_all) and atomic writes.
#include "saes/io/atomic_file.h"

#include <filesystem>
#include <fstream>

#include <catch2/catch.hpp>

#include "support/temp_dir.h"

namespace fs = std::filesystem;

TEST_CASE("remove_tree removes nested folders and files but does not follow links", "[io]") {
  saes::testing::TempDir dir;
  const fs::path keep = dir / "keep";
  fs::create_directories(keep);
  std::ofstream(keep / "precious.txt") << "must survive";
  const fs::path tree = dir / "tree";
  fs::create_directories(tree / "a" / "b" / "c");
  std::ofstream(tree / "top.txt") << "x";
  std::ofstream(tree / "a" / "b" / "c" / "deep.bin") << "y";
  fs::create_directory_symlink(keep, tree / "a" / "link-to-keep");
  std::error_code ec;
  CHECK(saes::io::remove_tree(tree, ec));
  CHECK_FALSE(ec);
  CHECK_FALSE(fs::exists(tree));
  CHECK(fs::exists(keep / "precious.txt"));  // the link was removed, not followed

  CHECK(saes::io::remove_tree(dir / "missing", ec));  // a missing path is not an error
  CHECK_FALSE(ec);
  std::ofstream(dir / "file.txt") << "z";
  CHECK(saes::io::remove_tree(dir / "file.txt", ec));
  CHECK_FALSE(fs::exists(dir / "file.txt"));
}

TEST_CASE("remove_tree reports a folder it cannot empty", "[io]") {
  saes::testing::TempDir dir;
  // A path under a regular file cannot be inspected: lstat fails with ENOTDIR.
  std::ofstream(dir / "plain") << "x";
  std::error_code ec;
  CHECK_FALSE(saes::io::remove_tree(dir / "plain" / "child", ec));
  CHECK(ec);
}

TEST_CASE("write_file_atomic replaces the whole file and leaves no temp file", "[io]") {
  saes::testing::TempDir dir;
  const fs::path target = dir / "sub" / "out.txt";
  saes::io::write_file_atomic(target, "first");
  saes::io::write_file_atomic(target, "second, longer");
  CHECK(saes::io::read_file(target) == "second, longer");
  for (const auto& entry : fs::directory_iterator(dir / "sub")) {
    CHECK(entry.path().filename() == "out.txt");
  }
}
