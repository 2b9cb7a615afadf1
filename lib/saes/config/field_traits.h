// Compile-time facts about config field types, shared by the YAML reader, the YAML writer and the
// reference-docs generator (all in lib/saes/config/*.cpp). No YAML here.
#pragma once

#include <array>
#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace saes::config {

/// The visitor protocol of `visit_fields` (style.md §B6); only used to recognise config structs.
struct ProbeVisitor {
  template <class T>
  void operator()(std::string_view key, T& field, std::string_view help);
  template <class T>
  void required(std::string_view key, T& field, std::string_view help);
  void unsupported(std::string_view key, std::string_view hint);
  template <class F>
  void variant(bool active, std::string_view when, F&& fields);
};

/// A struct whose fields are listed once in `template <class V> void visit_fields(V& v)`.
template <class T>
concept ConfigStruct = std::is_class_v<T> && requires(T& t, ProbeVisitor& v) {
  t.visit_fields(v);
};

/// An enum with an `enum_names(E)` name table beside it.
template <class T>
concept ConfigEnum = std::is_enum_v<T> && requires(T e) {
  enum_names(e);
};

template <class T>
inline constexpr bool kIsOptional = false;
template <class T>
inline constexpr bool kIsOptional<std::optional<T>> = true;

template <class T>
inline constexpr bool kIsVector = false;
template <class T>
inline constexpr bool kIsVector<std::vector<T>> = true;

template <class T>
inline constexpr bool kIsStdArray = false;
template <class T, std::size_t N>
inline constexpr bool kIsStdArray<std::array<T, N>> = true;

template <class T>
inline constexpr bool kIsStringMap = false;
template <class T>
inline constexpr bool kIsStringMap<std::map<std::string, T>> = true;

template <class T>
inline constexpr bool kAlwaysFalse = false;

/// Runs a reading visitor (dump, docs) over a const struct; such visitors never write a field.
template <class T, class V>
void visit_fields_read_only(const T& config, V& visitor) {
  const_cast<T&>(config).visit_fields(visitor);
}

/// `parent.key`, or `key` at the top level.
inline std::string join_key_path(std::string_view parent, std::string_view key) {
  std::string path(parent);
  if (!path.empty()) path += '.';
  path += key;
  return path;
}

}  // namespace saes::config
