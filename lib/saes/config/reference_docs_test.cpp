// docs/config.md stays equal to the generated reference, and every example in configs/ loads.
#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "saes/config/config_loader.h"
#include "saes/io/atomic_file.h"

namespace saes::config {

TEST_CASE("docs/config.md is the generated config reference", "[config]") {
  const std::filesystem::path path = std::filesystem::path(SAES_SOURCE_DIR) / "docs" / "config.md";
  const std::string generated = config_reference_markdown();
  if (const char* update = std::getenv("SAES_UPDATE_DOCS");
      update != nullptr && std::string(update) == "1") {
    io::write_file_atomic(path, generated);
  }
  INFO("docs/config.md is stale: run SAES_UPDATE_DOCS=1 ./build/tests/saes_tests \"[config]\"");
  CHECK(io::read_file(path) == generated);
}

TEST_CASE("every example config in configs/ loads and validates", "[config]") {
  const std::filesystem::path dir = std::filesystem::path(SAES_SOURCE_DIR) / "configs";
  int loaded = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    const std::filesystem::path& path = entry.path();
    if (path.extension() != ".yaml") continue;
    const std::string name = path.filename().string();
    INFO(name);
    if (name.starts_with("generate-")) {
      CHECK_NOTHROW(load_generate_settings(path));
    } else if (name.starts_with("train-")) {
      CHECK_NOTHROW(load_train_settings(path));
    } else if (name.starts_with("analyze-")) {
      CHECK_NOTHROW(load_analyze_settings(path));
    } else if (name.starts_with("convert-")) {
      CHECK_NOTHROW(load_convert_settings(path));
    } else if (name.starts_with("attribute-")) {
      CHECK_NOTHROW(load_attribute_settings(path));
    } else {
      FAIL("configs/*.yaml must start with generate-, train-, analyze-, convert- or attribute-");
    }
    ++loaded;
  }
  CHECK(loaded >= 2);
}

}  // namespace saes::config
