// Internal to lib/saes/config: writes any supported config value to a YAML::Emitter such that the
// strict reader gives back an equal value (doubles in shortest round-trip form with a decimal
// point, step counts as integers and fractions as decimals, null-like strings quoted).
#pragma once

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "saes/config/field_traits.h"
#include "saes/core/config.h"
#include "saes/core/dtype.h"
#include "saes/data/config.h"
#include "saes/training/config.h"

namespace saes::config::detail {

/// Shortest text that reads back as exactly `value`, always with `.`/`e` (`8.0`, `0.0004`, `.inf`).
std::string format_double(double value);
/// Emits a string, double-quoting null-like ones ("", "~", "null") that would read back as null.
void emit_string(YAML::Emitter& out, const std::string& text);

template <class T>
void emit_value(YAML::Emitter& out, const T& value);

/// Visitor that writes each visited field as `key: value` into an open YAML map.
class StructWriter {
 public:
  explicit StructWriter(YAML::Emitter& out) : out_(out) {}
  template <class T>
  void operator()(std::string_view key, const T& field, std::string_view /*help*/) {
    out_ << YAML::Key << std::string(key) << YAML::Value;
    emit_value(out_, field);
  }
  template <class T>
  void required(std::string_view key, const T& field, std::string_view help) {
    (*this)(key, field, help);
  }
  void unsupported(std::string_view /*key*/, std::string_view /*hint*/) {}
  template <class F>
  void variant(bool active, std::string_view /*when*/, F&& fields) {
    if (active) fields();
  }

 private:
  YAML::Emitter& out_;
};

template <class T>
constexpr bool kIsScalarField =
    !ConfigStruct<T> && !kIsVector<T> && !kIsStringMap<T> && !kIsStdArray<T>;

template <class T>
void emit_value(YAML::Emitter& out, const T& value) {
  if constexpr (kIsOptional<T>) {
    if (value) {
      emit_value(out, *value);
    } else {
      out << YAML::Null;
    }
  } else if constexpr (std::is_same_v<T, bool>) {
    out << (value ? "true" : "false");
  } else if constexpr (std::is_integral_v<T>) {
    out << fmt::to_string(value);
  } else if constexpr (std::is_floating_point_v<T>) {
    out << format_double(value);
  } else if constexpr (std::is_same_v<T, std::string>) {
    emit_string(out, value);
  } else if constexpr (std::is_same_v<T, std::filesystem::path>) {
    emit_string(out, value.string());
  } else if constexpr (std::is_same_v<T, DType>) {
    out << std::string(dtype_name(value));
  } else if constexpr (ConfigEnum<T>) {
    out << std::string(enum_name(value));
  } else if constexpr (std::is_same_v<T, training::StepsOrFraction>) {
    out << (value.is_fraction ? format_double(value.fraction) : fmt::to_string(value.steps));
  } else if constexpr (std::is_same_v<T, data::HookPaths>) {
    if (value.per_hook.empty()) {
      emit_value(out, value.root);
    } else {
      emit_value(out, value.per_hook);
    }
  } else if constexpr (kIsVector<T> || kIsStdArray<T>) {
    if (value.empty() || kIsScalarField<typename T::value_type>) out << YAML::Flow;
    out << YAML::BeginSeq;
    for (const auto& item : value) emit_value(out, item);
    out << YAML::EndSeq;
  } else if constexpr (kIsStringMap<T>) {
    if (value.empty()) out << YAML::Flow;
    out << YAML::BeginMap;
    for (const auto& [key, item] : value) {
      out << YAML::Key;
      emit_string(out, key);
      out << YAML::Value;
      emit_value(out, item);
    }
    out << YAML::EndMap;
  } else if constexpr (ConfigStruct<T>) {
    out << YAML::BeginMap;
    StructWriter writer(out);
    visit_fields_read_only(value, writer);
    out << YAML::EndMap;
  } else {
    static_assert(kAlwaysFalse<T>, "unsupported config field type");
  }
}

/// A fresh emitter configured the way every saes YAML file is written.
void configure_emitter(YAML::Emitter& out);

}  // namespace saes::config::detail
