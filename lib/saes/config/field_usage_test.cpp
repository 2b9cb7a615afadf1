// No silent config keys (#20): every key of docs/config.md (generated from the visit_fields lists
// and kept in sync by the [config] docs test) must be read somewhere in lib/ or apps/ as a member
// (`.key` or `->key`) outside the tests — a key that nothing reads trains a different model than
// its user asked for without a word. The few keys that are accepted for compatibility because
// every value means the same thing here are listed with the reason.
#include <filesystem>
#include <map>
#include <regex>
#include <set>
#include <string>

#include <catch2/catch.hpp>

#include "saes/io/atomic_file.h"

namespace fs = std::filesystem;

namespace {

/// Identifiers that follow `.` or `->` anywhere in `text`.
void collect_members(const std::string& text, std::set<std::string>& out) {
  const auto is_id = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  };
  for (std::size_t i = 0; i + 1 < text.size(); ++i) {
    std::size_t start = 0;
    if (text[i] == '.') {
      start = i + 1;
    } else if (text[i] == '-' && text[i + 1] == '>') {
      start = i + 2;
    } else {
      continue;
    }
    std::size_t end = start;
    while (end < text.size() && is_id(text[end])) ++end;
    if (end > start) out.insert(text.substr(start, end - start));
    i = end > i ? end - 1 : i;
  }
}

}  // namespace

TEST_CASE("every config key is read by the code (no silent no-op keys)", "[config]") {
  const fs::path root(SAES_SOURCE_DIR);
  const std::string docs = saes::io::read_file(root / "docs" / "config.md");
  std::set<std::string> keys;
  const std::regex row(R"((?:^|\n)\| `([A-Za-z_][A-Za-z_0-9]*)` \|)");  // a row's first column
  for (auto it = std::sregex_iterator(docs.begin(), docs.end(), row); it != std::sregex_iterator();
       ++it) {
    keys.insert((*it)[1].str());
  }
  REQUIRE(keys.size() > 150);  // the table was found
  std::set<std::string> members;
  for (const char* dir : {"lib", "apps"}) {
    for (const auto& entry : fs::recursive_directory_iterator(root / dir)) {
      const fs::path& p = entry.path();
      const std::string name = p.filename().string();
      if (!entry.is_regular_file() || (p.extension() != ".cpp" && p.extension() != ".h")) continue;
      if (name.size() > 9 && name.substr(name.size() - 9) == "_test.cpp") continue;
      collect_members(saes::io::read_file(p), members);
    }
  }
  // Accepted for compatibility with the original's configs; every value behaves the same here.
  const std::map<std::string, std::string> same_either_way = {
      {"local_files_only", "saes never downloads: both values read local files only"},
      {"optimizer_foreach", "one fused Adam loop: the same update for both values"},
  };
  for (const std::string& key : keys) {
    if (same_either_way.count(key) != 0) continue;
    INFO("config key `" << key << "` (docs/config.md) is read by no code in lib/ or apps/: "
                           "implement it, refuse it (exit 5), or remove it");
    CHECK(members.count(key) == 1);
  }
}
