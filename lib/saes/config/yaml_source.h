// Internal to lib/saes/config: one YAML document being read — its display name, which key paths
// came from `--set` overrides, where each key was read — so every message can say
// `file:line:col: key.path: ...` (or `--set k=v: key.path: ...`). Also loading and overrides.
#pragma once

#include <yaml-cpp/yaml.h>

#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace saes::config::detail {

class YamlSource {
 public:
  explicit YamlSource(std::string display_name) : name_(std::move(display_name)) {}

  const std::string& name() const { return name_; }
  /// `file:line:col` of `node`, `file` when it has no position, or `--set ...` when `path` (or an
  /// ancestor) was written by an override.
  std::string where(const YAML::Node& node, const std::string& path) const;
  /// Throws ConfigError `where: path: message` (the path part is left out when empty).
  [[noreturn]] void fail(const YAML::Node& node, const std::string& path,
                         const std::string& message) const;

  /// Marks `path` and everything below it as written by the override `text`.
  void add_override(const std::string& path, const std::string& text);
  /// Remembers where the value at `path` was read, for messages after parsing (validation).
  void record(const std::string& path, const YAML::Node& node);
  /// Location of `path`, else of its nearest recorded ancestor, else the file name.
  std::string where_recorded(const std::string& path) const;

 private:
  const std::string* override_for(const std::string& path) const;

  std::string name_;
  std::map<std::string, std::string> overrides_;  // key path -> "--set text"
  std::map<std::string, std::string> recorded_;   // key path -> location
};

/// Parses YAML text; malformed YAML throws ConfigError `file:line:col: invalid YAML: <parser
/// message>`. An empty document yields an empty map.
YAML::Node load_yaml(std::string_view text, const YamlSource& source);

/// Applies `key.path=value` overrides in order: the value is parsed as a YAML scalar or flow
/// collection, missing intermediate maps are created, and list elements are addressed by index
/// (`sources.0.path`). A malformed override throws ConfigError naming it.
void apply_overrides(YAML::Node& root, const std::vector<std::string>& overrides,
                     YamlSource& source);

/// `"text"` for scalars, `null`, `a list`, `a map`: what a message says it got.
std::string describe(const YAML::Node& node);

}  // namespace saes::config::detail
