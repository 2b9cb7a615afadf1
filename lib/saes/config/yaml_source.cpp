// YamlSource locations, YAML loading with positioned parse errors, and `--set` overrides.
#include "saes/config/yaml_source.h"

#include <fmt/format.h>

#include <charconv>

#include "saes/config/field_traits.h"
#include "saes/core/error.h"

namespace saes::config::detail {
namespace {

std::string override_location(const std::string& text) { return "--set " + text; }

/// `a.b.0.c` or, as messages write list items, `a.b[0].c` (each `[N]` is the segment `N`).
std::vector<std::string> split_key_path(std::string key, const std::string& text) {
  for (std::size_t open = key.find('['); open != std::string::npos; open = key.find('[', open)) {
    const std::size_t close = key.find(']', open);
    SAES_CHECK(close != std::string::npos && close > open + 1 &&
                   key.find_first_not_of("0123456789", open + 1) == close &&
                   (close + 1 == key.size() || key[close + 1] == '.' || key[close + 1] == '['),
               ConfigError, "{}: invalid list index in key path \"{}\" (write key[N] or key.N)",
               override_location(text), key);
    key = key.substr(0, open) + "." + key.substr(open + 1, close - open - 1) + key.substr(close + 1);
  }
  std::vector<std::string> segments;
  std::size_t start = 0;
  while (true) {
    const std::size_t dot = key.find('.', start);
    segments.push_back(
        key.substr(start, dot == std::string::npos ? std::string::npos : dot - start));
    SAES_CHECK(!segments.back().empty(), ConfigError, "{}: invalid key path \"{}\" (empty segment)",
               override_location(text), key);
    if (dot == std::string::npos) return segments;
    start = dot + 1;
  }
}

/// Index into a YAML list for an override segment; throws naming the override when invalid.
std::size_t list_index(const YAML::Node& list, const std::string& segment, const std::string& path,
                       const std::string& text) {
  std::size_t index = 0;
  const auto* end = segment.data() + segment.size();
  const auto [ptr, ec] = std::from_chars(segment.data(), end, index);
  SAES_CHECK(ec == std::errc() && ptr == end && index < list.size(), ConfigError,
             "{}: {}: \"{}\" is not an index of this list of {} items", override_location(text),
             path, segment, list.size());
  return index;
}

void apply_override(YAML::Node& root, const std::string& text, YamlSource& source) {
  const std::size_t eq = text.find('=');
  SAES_CHECK(eq != std::string::npos, ConfigError, "{}: expected KEY.PATH=VALUE",
             override_location(text));
  const std::vector<std::string> segments = split_key_path(text.substr(0, eq), text);
  YAML::Node value;
  try {
    value = YAML::Load(text.substr(eq + 1));
  } catch (const YAML::Exception& e) {
    SAES_THROW(ConfigError, "{}: invalid YAML value: {}", override_location(text), e.msg);
  }
  YAML::Node current;
  current.reset(root);
  std::string path;
  for (std::size_t i = 0; i < segments.size(); ++i) {
    const std::string& segment = segments[i];
    const bool last = i + 1 == segments.size();
    if (current.IsSequence()) {
      const std::size_t index = list_index(current, segment, path, text);
      path += fmt::format("[{}]", index);
      if (last) {
        current[index] = value;
      } else {
        current.reset(current[index]);
      }
      continue;
    }
    SAES_CHECK(current.IsMap() || current.IsNull(), ConfigError,
               "{}: {}: cannot set a key inside {}", override_location(text),
               path.empty() ? "(top level)" : path, describe(current));
    path = join_key_path(path, segment);
    if (last) {
      current[segment] = value;
      break;
    }
    YAML::Node next = current[segment];
    if (!next.IsDefined() || next.IsNull()) {
      next = YAML::Node(YAML::NodeType::Map);
      source.add_override(path, text);
    }
    current.reset(next);
  }
  source.add_override(path, text);
}

}  // namespace

std::string YamlSource::where(const YAML::Node& node, const std::string& path) const {
  if (const std::string* text = override_for(path)) return override_location(*text);
  const YAML::Mark mark = node.Mark();
  if (mark.is_null() || mark.line < 0) return name_;
  return fmt::format("{}:{}:{}", name_, mark.line + 1, mark.column + 1);
}

void YamlSource::fail(const YAML::Node& node, const std::string& path,
                      const std::string& message) const {
  if (path.empty()) SAES_THROW(ConfigError, "{}: {}", where(node, path), message);
  SAES_THROW(ConfigError, "{}: {}: {}", where(node, path), path, message);
}

void YamlSource::add_override(const std::string& path, const std::string& text) {
  overrides_[path] = text;
}

void YamlSource::record(const std::string& path, const YAML::Node& node) {
  recorded_[path] = where(node, path);
}

std::string YamlSource::where_recorded(const std::string& path) const {
  std::string prefix = path;
  while (!prefix.empty()) {
    if (const auto it = recorded_.find(prefix); it != recorded_.end()) return it->second;
    const std::size_t cut = prefix.find_last_of(".[");
    prefix = cut == std::string::npos ? std::string() : prefix.substr(0, cut);
  }
  return name_;
}

const std::string* YamlSource::override_for(const std::string& path) const {
  const std::string* best = nullptr;
  std::size_t best_length = 0;
  for (const auto& [prefix, text] : overrides_) {
    const bool covers =
        path == prefix || (path.size() > prefix.size() && path.starts_with(prefix) &&
                           (path[prefix.size()] == '.' || path[prefix.size()] == '['));
    if (covers && (best == nullptr || prefix.size() >= best_length)) {
      best = &text;
      best_length = prefix.size();
    }
  }
  return best;
}

YAML::Node load_yaml(std::string_view text, const YamlSource& source) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(text));
  } catch (const YAML::ParserException& e) {
    SAES_THROW(ConfigError, "{}:{}:{}: invalid YAML: {}", source.name(), e.mark.line + 1,
               e.mark.column + 1, e.msg);
  }
  if (!root.IsDefined() || root.IsNull()) root = YAML::Node(YAML::NodeType::Map);
  return root;
}

void apply_overrides(YAML::Node& root, const std::vector<std::string>& overrides,
                     YamlSource& source) {
  for (const std::string& text : overrides) apply_override(root, text, source);
}

std::string describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Scalar:
      return fmt::format("\"{}\"", node.Scalar());
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a map";
    default:
      return "null";
  }
}

}  // namespace saes::config::detail
