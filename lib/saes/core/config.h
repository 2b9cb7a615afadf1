// Run-wide knobs every executable shares (LoggingConfig) and the enum-name helpers that every
// `<module>/config.h` uses: each config enum has an `enum_names(E)` table beside it (found by ADL).
// No YAML here: lib/saes/config/ turns these structs into and out of YAML.
#pragma once

#include <array>
#include <cstddef>
#include <optional>
#include <span>
#include <string_view>

#include "saes/core/logging.h"

namespace saes {

/// Name of an enumerator of a config enum `E` (one that has an `enum_names(E)` table).
template <class E>
constexpr std::string_view enum_name(E value) {
  return enum_names(value)[static_cast<std::size_t>(value)];
}

/// Enumerator of `E` whose name is exactly `text`, or nullopt.
template <class E>
constexpr std::optional<E> try_parse_enum(std::string_view text) {
  const auto names = enum_names(E{});
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (names[i] == text) return static_cast<E>(i);
  }
  return std::nullopt;
}

inline constexpr std::array<std::string_view, 5> kLogLevelNames = {"debug", "info", "warn", "error",
                                                                   "off"};
constexpr std::span<const std::string_view> enum_names(LogLevel) { return kLogLevelNames; }

inline constexpr std::array<std::string_view, 4> kProgressModeNames = {"auto", "tty", "plain",
                                                                       "off"};
constexpr std::span<const std::string_view> enum_names(ProgressMode) { return kProgressModeNames; }

struct LoggingConfig {
  LogLevel level = LogLevel::kInfo;
  ProgressMode progress = ProgressMode::kAuto;
  double progress_interval_s = 30.0;

  template <class V>
  void visit_fields(V& v) {
    v("level", level, "log level: debug | info | warn | error | off");
    v("progress", progress,
      "progress display: auto (redraw on a TTY, plain lines otherwise) | tty | plain | off");
    v("progress_interval_s", progress_interval_s, "seconds between plain progress lines");
  }
  bool operator==(const LoggingConfig&) const = default;
};

}  // namespace saes
