// TempDir: a fresh directory under $TMPDIR removed (recursively) when the object dies.
#pragma once

#include <filesystem>
#include <string>

namespace saes::testing {

class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

/// Directory of the shared test assets ($SAES_TEST_ASSETS), or empty when unset.
std::filesystem::path test_assets_dir();

}  // namespace saes::testing

/// Skips the current Catch2 test (with a clear message) when $SAES_TEST_ASSETS is unset.
#define SAES_REQUIRE_ASSETS()                                                          \
  do {                                                                                 \
    if (::saes::testing::test_assets_dir().empty()) {                                  \
      WARN("SKIPPED: set SAES_TEST_ASSETS to the shared assets folder to run this test"); \
      return;                                                                          \
    }                                                                                  \
  } while (0)
