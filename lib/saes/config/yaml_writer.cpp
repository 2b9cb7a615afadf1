// Scalar formatting of the YAML writer (round-trip doubles, null-safe strings).
#include "saes/config/yaml_writer.h"

#include <algorithm>
#include <array>
#include <cmath>

namespace saes::config::detail {

std::string format_double(double value) {
  if (std::isnan(value)) return ".nan";
  if (std::isinf(value)) return value > 0 ? ".inf" : "-.inf";
  std::string text = fmt::format("{}", value);  // shortest text that reads back exactly
  if (text.find_first_of(".e") == std::string::npos) text += ".0";
  return text;
}

void emit_string(YAML::Emitter& out, const std::string& text) {
  static constexpr std::array<std::string_view, 5> kNullLike = {"", "~", "null", "Null", "NULL"};
  const bool null_like = std::find(kNullLike.begin(), kNullLike.end(), text) != kNullLike.end();
  if (null_like) out << YAML::DoubleQuoted;
  out << text;
}

void configure_emitter(YAML::Emitter& out) {
  out.SetIndent(2);
  out.SetNullFormat(YAML::LowerNull);
  out.SetBoolFormat(YAML::TrueFalseBool);
}

}  // namespace saes::config::detail
