// Internal to lib/saes/config: the strict typed YAML reader. `read_value` turns a YAML node into
// any supported field type; `StructReader` is the visitor that `visit_fields` drives for one map:
// required keys, unknown keys (with "did you mean"), unsupported keys and type-discriminated
// fields.
#pragma once

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <filesystem>
#include <limits>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "saes/config/field_traits.h"
#include "saes/config/yaml_source.h"
#include "saes/core/dtype.h"
#include "saes/data/config.h"
#include "saes/training/config.h"

namespace saes::config::detail {

bool read_bool(const YAML::Node& node, const std::string& path, const YamlSource& source);
std::int64_t read_int(const YAML::Node& node, const std::string& path, const YamlSource& source,
                      std::int64_t min, std::int64_t max);
double read_double(const YAML::Node& node, const std::string& path, const YamlSource& source);
std::string read_string(const YAML::Node& node, const std::string& path, const YamlSource& source);
DType read_dtype(const YAML::Node& node, const std::string& path, const YamlSource& source);
std::size_t read_enum_index(const YAML::Node& node, const std::string& path,
                            const YamlSource& source, std::span<const std::string_view> names);
training::StepsOrFraction read_steps_or_fraction(const YAML::Node& node, const std::string& path,
                                                 const YamlSource& source);
/// Throws unless `node` is a list (`want_list`) or a map.
void expect_collection(const YAML::Node& node, const std::string& path, const YamlSource& source,
                       bool want_list);

/// The closest candidate to `word` by edit distance, if it is close enough to be a likely typo.
std::optional<std::string> did_you_mean(std::string_view word,
                                        const std::vector<std::string>& candidates);

/// One `key: value` of a YAML map, in document order.
struct MapEntry {
  std::string key;
  YAML::Node key_node;
  YAML::Node value;
  bool used = false;
};
/// Entries of a map node; non-scalar and duplicate keys are errors.
std::vector<MapEntry> map_entries(const YAML::Node& map, const std::string& path,
                                  const YamlSource& source);

template <class T>
void read_value(const YAML::Node& node, const std::string& path, YamlSource& source, T& out);

/// Visitor for one YAML map being read into a config struct.
class StructReader {
 public:
  StructReader(const YAML::Node& map, std::string path, YamlSource& source);

  template <class T>
  void operator()(std::string_view key, T& field, std::string_view /*help*/) {
    visit(key, field, false);
  }
  template <class T>
  void required(std::string_view key, T& field, std::string_view /*help*/) {
    visit(key, field, true);
  }
  /// A key that saes rejects on purpose, with a hint saying why/what instead.
  void unsupported(std::string_view key, std::string_view hint);
  /// Fields that exist only when `active` (e.g. `type: activations`); when inactive they are
  /// rejected with "only valid with <when>".
  template <class F>
  void variant(bool active, std::string_view when, F&& fields) {
    if (!active) inactive_when_ = when;
    fields();
    inactive_when_ = {};
  }
  /// Reports keys no field consumed, then missing required keys.
  void finish() const;

 private:
  template <class T>
  void visit(std::string_view key, T& field, bool required) {
    if (!inactive_when_.empty()) {
      inactive_.emplace(std::string(key), std::string(inactive_when_));
      return;
    }
    known_.emplace_back(key);
    MapEntry* entry = find(key);
    if (entry == nullptr) {
      if (required) missing_.emplace_back(key);
      return;
    }
    entry->used = true;
    read_value(entry->value, join_key_path(path_, key), source_, field);
  }
  MapEntry* find(std::string_view key);

  YAML::Node map_;
  std::string path_;
  YamlSource& source_;
  std::vector<MapEntry> entries_;
  std::vector<std::string> known_;
  std::vector<std::string> missing_;
  std::map<std::string, std::string> inactive_;  // key -> "type: activations"
  std::string_view inactive_when_;
};

template <class T>
void read_value(const YAML::Node& node, const std::string& path, YamlSource& source, T& out) {
  source.record(path, node);
  if constexpr (kIsOptional<T>) {
    if (node.IsNull()) {
      out.reset();
      return;
    }
    typename T::value_type value{};
    read_value(node, path, source, value);
    out = std::move(value);
  } else if constexpr (std::is_same_v<T, bool>) {
    out = read_bool(node, path, source);
  } else if constexpr (std::is_integral_v<T>) {
    out = static_cast<T>(
        read_int(node, path, source, std::numeric_limits<T>::min(), std::numeric_limits<T>::max()));
  } else if constexpr (std::is_floating_point_v<T>) {
    out = read_double(node, path, source);
  } else if constexpr (std::is_same_v<T, std::string> || std::is_same_v<T, std::filesystem::path>) {
    out = read_string(node, path, source);
  } else if constexpr (std::is_same_v<T, DType>) {
    out = read_dtype(node, path, source);
  } else if constexpr (ConfigEnum<T>) {
    out = static_cast<T>(read_enum_index(node, path, source, enum_names(T{})));
  } else if constexpr (std::is_same_v<T, training::StepsOrFraction>) {
    out = read_steps_or_fraction(node, path, source);
  } else if constexpr (std::is_same_v<T, data::HookPaths>) {
    out = {};
    if (node.IsMap()) {
      read_value(node, path, source, out.per_hook);
    } else {
      out.root = read_string(node, path, source);
    }
  } else if constexpr (kIsVector<T> || kIsStdArray<T>) {
    if constexpr (kIsVector<T>) out.clear();
    if (kIsVector<T> && node.IsNull()) return;
    expect_collection(node, path, source, true);
    if constexpr (kIsStdArray<T>) {
      if (node.size() != out.size()) {
        source.fail(node, path,
                    fmt::format("expected a list of {} items, got {}", out.size(), node.size()));
      }
    }
    for (std::size_t i = 0; i < node.size(); ++i) {
      typename T::value_type item{};
      read_value(node[i], fmt::format("{}[{}]", path, i), source, item);
      if constexpr (kIsVector<T>) {
        out.push_back(std::move(item));
      } else {
        out[i] = std::move(item);
      }
    }
  } else if constexpr (kIsStringMap<T>) {
    out.clear();
    if (node.IsNull()) return;
    expect_collection(node, path, source, false);
    for (const MapEntry& entry : map_entries(node, path, source)) {
      read_value(entry.value, join_key_path(path, entry.key), source, out[entry.key]);
    }
  } else if constexpr (ConfigStruct<T>) {
    expect_collection(node, path, source, false);
    out = T{};
    StructReader reader(node, path, source);
    out.visit_fields(reader);
    reader.finish();
  } else {
    static_assert(kAlwaysFalse<T>, "unsupported config field type");
  }
}

}  // namespace saes::config::detail
