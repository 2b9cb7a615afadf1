// Scalar conversions of the strict YAML reader, map entries, "did you mean" and StructReader.
#include "saes/config/yaml_reader.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <charconv>
#include <cmath>

#include "saes/core/error.h"

namespace saes::config::detail {
namespace {

/// Scalar text of `node`, or a "expected <what>, got ..." error for lists, maps and null.
const std::string& scalar_text(const YAML::Node& node, const std::string& path,
                               const YamlSource& source, std::string_view what) {
  if (!node.IsScalar())
    source.fail(node, path, fmt::format("expected {}, got {}", what, describe(node)));
  return node.Scalar();
}

/// YAML 1.1 allows `_` as a digit separator (`300_000_000`).
std::string without_underscores(const std::string& text) {
  std::string out = text;
  out.erase(std::remove(out.begin(), out.end(), '_'), out.end());
  return out;
}

std::optional<std::int64_t> parse_int(const std::string& text) {
  const std::string digits = without_underscores(text);
  const char* begin = digits.data() + (digits.starts_with('+') ? 1 : 0);
  const char* end = digits.data() + digits.size();
  std::int64_t value = 0;
  const auto [ptr, ec] = std::from_chars(begin, end, value);
  if (ec != std::errc() || ptr != end || begin == end) return std::nullopt;
  return value;
}

std::optional<double> parse_double(const std::string& text) {
  static constexpr std::array<std::string_view, 3> kInf = {".inf", ".Inf", ".INF"};
  static constexpr std::array<std::string_view, 3> kNan = {".nan", ".NaN", ".NAN"};
  std::string_view body = text;
  const bool negative = body.starts_with('-');
  if (negative || body.starts_with('+')) body.remove_prefix(1);
  if (std::find(kInf.begin(), kInf.end(), body) != kInf.end()) {
    return negative ? -INFINITY : INFINITY;
  }
  if (std::find(kNan.begin(), kNan.end(), text) != kNan.end()) return NAN;
  const std::string digits = without_underscores(text);
  const char* begin = digits.data() + (digits.starts_with('+') ? 1 : 0);
  const char* end = digits.data() + digits.size();
  double value = 0.0;
  const auto [ptr, ec] = std::from_chars(begin, end, value);
  if (ec != std::errc() || ptr != end || begin == end) return std::nullopt;
  return value;
}

std::size_t edit_distance(std::string_view a, std::string_view b) {
  // Optimal string alignment distance: insertions, deletions, substitutions, adjacent swaps.
  std::vector<std::vector<std::size_t>> d(a.size() + 1, std::vector<std::size_t>(b.size() + 1));
  for (std::size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (std::size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.size()][b.size()];
}

}  // namespace

bool read_bool(const YAML::Node& node, const std::string& path, const YamlSource& source) {
  const std::string& text = scalar_text(node, path, source, "true or false");
  if (text == "true" || text == "True" || text == "TRUE") return true;
  if (text == "false" || text == "False" || text == "FALSE") return false;
  source.fail(node, path, fmt::format("expected true or false, got {}", describe(node)));
}

std::int64_t read_int(const YAML::Node& node, const std::string& path, const YamlSource& source,
                      std::int64_t min, std::int64_t max) {
  const std::string& text = scalar_text(node, path, source, "an integer");
  std::optional<std::int64_t> value = parse_int(text);
  if (!value) {
    // `8e8` is a float in YAML; accept it when it is a whole number (as pydantic does).
    const std::optional<double> real = parse_double(text);
    if (real && std::isfinite(*real) && *real == std::trunc(*real) && std::fabs(*real) < 9.0e15) {
      value = static_cast<std::int64_t>(*real);
    }
  }
  if (!value) source.fail(node, path, fmt::format("expected an integer, got {}", describe(node)));
  if (*value < min || *value > max) {
    source.fail(node, path,
                fmt::format("expected an integer in [{}, {}], got {}", min, max, *value));
  }
  return *value;
}

double read_double(const YAML::Node& node, const std::string& path, const YamlSource& source) {
  const std::string& text = scalar_text(node, path, source, "a number");
  const std::optional<double> value = parse_double(text);
  if (!value) source.fail(node, path, fmt::format("expected a number, got {}", describe(node)));
  return *value;
}

std::string read_string(const YAML::Node& node, const std::string& path, const YamlSource& source) {
  return scalar_text(node, path, source, "a string");
}

DType read_dtype(const YAML::Node& node, const std::string& path, const YamlSource& source) {
  const std::string& text = scalar_text(node, path, source, "a dtype");
  const std::optional<DType> dtype = try_parse_dtype(text);
  if (!dtype) {
    source.fail(node, path,
                fmt::format("expected a dtype ({}), got {}", dtype_choices(), describe(node)));
  }
  return *dtype;
}

std::size_t read_enum_index(const YAML::Node& node, const std::string& path,
                            const YamlSource& source, std::span<const std::string_view> names) {
  const std::string choices = fmt::format("{}", fmt::join(names, ", "));
  const std::string& text = scalar_text(node, path, source, "one of " + choices);
  const auto it = std::find(names.begin(), names.end(), text);
  if (it != names.end()) return static_cast<std::size_t>(it - names.begin());
  const std::optional<std::string> guess =
      did_you_mean(text, std::vector<std::string>(names.begin(), names.end()));
  source.fail(node, path,
              fmt::format("expected one of {}; got {}{}", choices, describe(node),
                          guess ? fmt::format(" (did you mean \"{}\"?)", *guess) : ""));
}

training::StepsOrFraction read_steps_or_fraction(const YAML::Node& node, const std::string& path,
                                                 const YamlSource& source) {
  static constexpr std::string_view kWhat =
      "an integer step count or a fraction of the total steps";
  const std::string& text = scalar_text(node, path, source, kWhat);
  if (const std::optional<std::int64_t> steps = parse_int(text)) {
    return training::StepsOrFraction::of_steps(*steps);
  }
  if (const std::optional<double> fraction = parse_double(text)) {
    return training::StepsOrFraction::of_fraction(*fraction);
  }
  source.fail(node, path, fmt::format("expected {}, got {}", kWhat, describe(node)));
}

void expect_collection(const YAML::Node& node, const std::string& path, const YamlSource& source,
                       bool want_list) {
  if (want_list ? node.IsSequence() : node.IsMap()) return;
  source.fail(node, path,
              fmt::format("expected {}, got {}", want_list ? "a list" : "a map", describe(node)));
}

std::optional<std::string> did_you_mean(std::string_view word,
                                        const std::vector<std::string>& candidates) {
  const std::size_t limit = 1 + word.size() / 5;
  std::optional<std::string> best;
  std::size_t best_distance = limit + 1;
  for (const std::string& candidate : candidates) {
    const std::size_t distance = edit_distance(word, candidate);
    if (distance < best_distance) {
      best = candidate;
      best_distance = distance;
    }
  }
  return best;
}

std::vector<MapEntry> map_entries(const YAML::Node& map, const std::string& path,
                                  const YamlSource& source) {
  std::vector<MapEntry> entries;
  for (auto it = map.begin(); it != map.end(); ++it) {
    const YAML::Node key = it->first;
    if (!key.IsScalar())
      source.fail(key, path, fmt::format("keys must be strings, got {}", describe(key)));
    for (const MapEntry& seen : entries) {
      if (seen.key == key.Scalar()) {
        source.fail(key, join_key_path(path, seen.key),
                    fmt::format("duplicate key (first at line {})", seen.key_node.Mark().line + 1));
      }
    }
    entries.push_back({key.Scalar(), key, it->second});
  }
  return entries;
}

StructReader::StructReader(const YAML::Node& map, std::string path, YamlSource& source)
    : map_(map),
      path_(std::move(path)),
      source_(source),
      entries_(map_entries(map, path_, source)) {}

void StructReader::unsupported(std::string_view key, std::string_view hint) {
  if (const MapEntry* entry = find(key)) {
    source_.fail(entry->key_node, join_key_path(path_, key),
                 fmt::format("not supported: {}", hint));
  }
}

void StructReader::finish() const {
  for (const MapEntry& entry : entries_) {
    if (entry.used) continue;
    const std::string path = join_key_path(path_, entry.key);
    if (const auto it = inactive_.find(entry.key); it != inactive_.end()) {
      source_.fail(entry.key_node, path, fmt::format("only valid with {}", it->second));
    }
    std::vector<std::string> candidates = known_;
    for (const auto& [key, when] : inactive_) candidates.push_back(key);
    std::string hint;
    if (const std::optional<std::string> guess = did_you_mean(entry.key, candidates)) {
      hint = fmt::format(" (did you mean \"{}\"?)", *guess);
    } else if (known_.size() <= 12) {
      hint = fmt::format("; valid keys: {}", fmt::join(known_, ", "));
    } else {
      hint = "; see docs/config.md for the valid keys";
    }
    source_.fail(entry.key_node, path, "unknown key" + hint);
  }
  if (missing_.empty()) return;
  std::string also;
  if (missing_.size() > 1) {
    also = fmt::format(
        " (also missing: {})",
        fmt::join(std::vector<std::string>(missing_.begin() + 1, missing_.end()), ", "));
  }
  source_.fail(map_, join_key_path(path_, missing_.front()), "required key is missing" + also);
}

MapEntry* StructReader::find(std::string_view key) {
  for (MapEntry& entry : entries_) {
    if (entry.key == key) return &entry;
  }
  return nullptr;
}

}  // namespace saes::config::detail
