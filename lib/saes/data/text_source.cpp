// TextSource: path/glob resolution, line-by-line reading of text and JSONL files, round-robin rank
// slicing. The only nlohmann/json user in data/: this TU includes no torch header, so the parser's
// cost stays small.
#include "saes/data/text_source.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>
#include <utility>

#include <glob.h>
#include <nlohmann/json.hpp>

#include "saes/core/error.h"

namespace saes::data {
namespace {

/// Owns a glob_t so globfree runs on every path out.
class GlobResult {
 public:
  GlobResult() = default;
  ~GlobResult() { ::globfree(&result_); }
  GlobResult(const GlobResult&) = delete;
  GlobResult& operator=(const GlobResult&) = delete;
  glob_t* get() { return &result_; }

 private:
  glob_t result_{};
};

std::vector<std::string> expand_pattern(const std::string& pattern) {
  GlobResult result;
  const int rc = ::glob(pattern.c_str(), GLOB_MARK, nullptr, result.get());
  SAES_CHECK(rc != GLOB_NOMATCH, DataError, "paths: no file matches '{}'", pattern);
  SAES_CHECK(rc == 0, DataError, "paths: cannot expand '{}' (glob error {})", pattern, rc);
  std::vector<std::string> matches(result.get()->gl_pathv,
                                   result.get()->gl_pathv + result.get()->gl_pathc);
  // glob(3) sorts by the locale's collation; bytewise order is the same on every machine.
  std::sort(matches.begin(), matches.end());
  for (const std::string& match : matches) {
    SAES_CHECK(match.empty() || match.back() != '/', DataError,
               "paths: '{}' matches directory '{}'; name files or a pattern such as '{}*.txt'",
               pattern, match, match);
  }
  return matches;
}

bool is_blank(const std::string& line) {
  return line.find_first_not_of(" \t\v\f") == std::string::npos;
}

std::string parse_jsonl_text(const std::string& line, const std::string& field,
                             const std::string& file, int64_t line_number) {
  nlohmann::json record;
  try {
    record = nlohmann::json::parse(line);
  } catch (const nlohmann::json::exception& e) {
    SAES_THROW(DataError, "{}:{}: invalid JSON: {}", file, line_number, e.what());
  }
  SAES_CHECK(record.is_object(), DataError, "{}:{}: expected a JSON object, got {}", file,
             line_number, record.type_name());
  const auto it = record.find(field);
  SAES_CHECK(it != record.end(), DataError, "{}:{}: text field \"{}\" is missing", file,
             line_number, field);
  SAES_CHECK(it->is_string(), DataError, "{}:{}: text field \"{}\" is a {}, expected a string",
             file, line_number, field, it->type_name());
  return it->get<std::string>();
}

}  // namespace

std::optional<TextFormat> try_parse_text_format(std::string_view name) {
  if (name == "text") return TextFormat::kText;
  if (name == "jsonl") return TextFormat::kJsonl;
  return std::nullopt;
}

std::string_view text_format_name(TextFormat format) {
  return format == TextFormat::kJsonl ? "jsonl" : "text";
}

std::vector<std::string> resolve_text_paths(const std::vector<std::string>& patterns) {
  SAES_CHECK(!patterns.empty(), ConfigError, "paths: expected at least one file or glob pattern");
  std::vector<std::string> files;
  std::set<std::string> seen;
  for (const std::string& pattern : patterns) {
    for (std::string& file : expand_pattern(pattern)) {
      SAES_CHECK(seen.insert(file).second, DataError,
                 "paths: file '{}' is listed twice (again by '{}')", file, pattern);
      files.push_back(std::move(file));
    }
  }
  return files;
}

TextSource::TextSource(TextSourceOptions options, int64_t rank, int64_t world_size)
    : options_(std::move(options)), rank_(rank), world_size_(world_size) {
  SAES_CHECK(world_size_ >= 1 && rank_ >= 0 && rank_ < world_size_, ConfigError,
             "text source: rank {} out of range for world size {}", rank_, world_size_);
  SAES_CHECK(!options_.max_documents || *options_.max_documents >= 0, ConfigError,
             "max_documents: expected >= 0, got {}", options_.max_documents.value_or(0));
  SAES_CHECK(options_.format != TextFormat::kJsonl || !options_.text_field.empty(), ConfigError,
             "text_field: expected a field name for jsonl input, got an empty string");
  files_ = resolve_text_paths(options_.paths);
}

std::optional<TextDocument> TextSource::next() {
  return options_.format == TextFormat::kJsonl ? next_jsonl_document() : next_text_document();
}

bool TextSource::limit_reached() const {
  return options_.max_documents && next_index_ >= *options_.max_documents;
}

bool TextSource::open_next_file() {
  while (!stream_.is_open()) {
    if (next_file_ >= files_.size()) return false;
    current_file_ = files_[next_file_++];
    line_number_ = 0;
    errno = 0;
    stream_.open(current_file_, std::ios::binary);
    SAES_CHECK(stream_.is_open(), DataError, "cannot open text file {}: {}", current_file_,
               errno != 0 ? std::strerror(errno) : "unknown error");
  }
  return true;
}

bool TextSource::read_line(std::string& line) {
  if (!std::getline(stream_, line)) {
    SAES_CHECK(!stream_.bad(), DataError, "{}:{}: read failed", current_file_, line_number_ + 1);
    stream_.close();
    stream_.clear();
    return false;
  }
  ++line_number_;
  if (!line.empty() && line.back() == '\r') line.pop_back();
  return true;
}

std::optional<TextDocument> TextSource::next_text_document() {
  std::string line;
  while (!limit_reached() && open_next_file()) {
    TextDocument doc{next_index_, {}, current_file_, 0};
    const bool mine = owns(doc.index);
    bool has_content = false;
    std::string pending_blank;  // blank lines kept only when a non-blank line follows
    while (read_line(line)) {
      if (!options_.separator.empty() && line == options_.separator) break;
      if (is_blank(line)) {
        if (has_content && mine) pending_blank.append(line).push_back('\n');
        continue;
      }
      if (!has_content) {
        doc.line = line_number_;
      } else if (mine) {
        doc.text.push_back('\n');
        doc.text += pending_blank;
      }
      pending_blank.clear();
      if (mine) doc.text += line;
      has_content = true;
    }
    if (!has_content) continue;
    ++next_index_;
    if (mine) return doc;
  }
  return std::nullopt;
}

std::optional<TextDocument> TextSource::next_jsonl_document() {
  std::string line;
  while (!limit_reached() && open_next_file()) {
    if (!read_line(line) || is_blank(line)) continue;
    const int64_t index = next_index_++;
    if (!owns(index)) continue;
    return TextDocument{index,
                        parse_jsonl_text(line, options_.text_field, current_file_, line_number_),
                        current_file_, line_number_};
  }
  return std::nullopt;
}

}  // namespace saes::data
