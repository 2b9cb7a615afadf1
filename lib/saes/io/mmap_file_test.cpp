// Tests of MmapFile: contents, empty files, errors, private (copy-on-write) writes, moves.
#include "saes/io/mmap_file.h"

#include <catch2/catch.hpp>
#include <cstring>
#include <fstream>

#include "saes/core/error.h"
#include "saes/io/atomic_file.h"
#include "support/temp_dir.h"

namespace saes::io {
namespace {

using Catch::Matchers::Contains;

TEST_CASE("MmapFile maps the file contents and keeps writes private", "[io]") {
  testing::TempDir dir;
  write_file_atomic(dir / "f.bin", "hello mmap");
  auto file = MmapFile::open(dir / "f.bin");
  REQUIRE(file.size() == 10);
  CHECK(std::memcmp(file.data(), "hello mmap", 10) == 0);
  CHECK(reinterpret_cast<std::uintptr_t>(file.data()) % 4096 == 0);
  file.data()[0] = std::byte{'J'};
  CHECK(read_file(dir / "f.bin") == "hello mmap");

  MmapFile moved = std::move(file);
  CHECK(moved.size() == 10);
  CHECK(moved.data()[0] == std::byte{'J'});
  CHECK(file.data() == nullptr);  // NOLINT(bugprone-use-after-move): moved-from state is specified
}

TEST_CASE("MmapFile maps an empty file to no data", "[io]") {
  testing::TempDir dir;
  write_file_atomic(dir / "empty.bin", "");
  auto file = MmapFile::open(dir / "empty.bin");
  CHECK(file.size() == 0);
  CHECK(file.data() == nullptr);
}

TEST_CASE("MmapFile reports missing files and folders as IoError naming the path", "[io]") {
  testing::TempDir dir;
  CHECK_THROWS_AS(MmapFile::open(dir / "nope.bin"), IoError);
  CHECK_THROWS_WITH(MmapFile::open(dir / "nope.bin"), Contains("nope.bin"));
  CHECK_THROWS_WITH(MmapFile::open(dir.path()), Contains("not a regular file"));
}

}  // namespace
}  // namespace saes::io
