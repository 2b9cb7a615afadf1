// TempDir implementation.
#include "support/temp_dir.h"

#include "saes/io/atomic_file.h"

#include <unistd.h>

#include <cstdlib>
#include <stdexcept>

namespace saes::testing {

TempDir::TempDir() {
  std::string pattern = (std::filesystem::temp_directory_path() / "saes-test-XXXXXX").string();
  if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = pattern;
}

TempDir::~TempDir() {
  std::error_code ec;
  saes::io::remove_tree(path_, ec);
}

std::filesystem::path test_assets_dir() {
  const char* env = std::getenv("SAES_TEST_ASSETS");
  if (env == nullptr || *env == '\0') return {};
  return std::filesystem::absolute(env);
}

}  // namespace saes::testing
