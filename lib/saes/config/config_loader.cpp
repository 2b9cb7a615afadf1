// load_/parse_/validate/dump_yaml/save_resolved_config for the four settings structs: one template
// pipeline (YAML -> overrides -> strict parse -> validation) instantiated per struct.
#include "saes/config/config_loader.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <set>
#include <sstream>

#include "saes/config/validate.h"
#include "saes/config/yaml_reader.h"
#include "saes/config/yaml_source.h"
#include "saes/config/yaml_writer.h"
#include "saes/core/error.h"
#include "saes/io/atomic_file.h"

namespace saes::config {
namespace {

template <class Settings>
Settings parse_settings(std::string_view yaml_text, std::string_view display_name,
                        const std::vector<std::string>& overrides, Validation validation) {
  detail::YamlSource source{std::string(display_name)};
  YAML::Node root = detail::load_yaml(yaml_text, source);
  detail::apply_overrides(root, overrides, source);
  Settings settings;
  detail::read_value(root, "", source, settings);
  if (validation == Validation::kOff) return settings;
  const std::vector<detail::Problem> problems = detail::find_problems(settings);
  if (problems.empty()) return settings;
  std::vector<std::string> lines;
  for (const detail::Problem& problem : problems) {
    lines.push_back(fmt::format("{}: {}: {}", source.where_recorded(problem.path), problem.path,
                                problem.message));
  }
  SAES_THROW(ConfigError, "{}", fmt::join(lines, "\n"));
}

template <class Settings>
Settings load_settings(const std::filesystem::path& yaml_path,
                       const std::vector<std::string>& overrides) {
  const std::string text = io::read_file(yaml_path);
  return parse_settings<Settings>(text, yaml_path.string(), overrides, Validation::kOn);
}

template <class Settings>
std::vector<std::string> validate_settings(const Settings& settings) {
  std::vector<std::string> lines;
  for (const detail::Problem& problem : detail::find_problems(settings)) {
    lines.push_back(problem.path + ": " + problem.message);
  }
  return lines;
}

template <class Settings>
std::string dump_settings(const Settings& settings) {
  YAML::Emitter out;
  detail::configure_emitter(out);
  detail::emit_value(out, settings);
  return std::string(out.c_str()) + "\n";
}

template <class Settings>
std::filesystem::path save_settings(const Settings& settings, const std::filesystem::path& dir) {
  const std::filesystem::path path = dir / kResolvedConfigName;
  io::write_file_atomic(path, dump_settings(settings));
  return path;
}

}  // namespace

GenerateSettings load_generate_settings(const std::filesystem::path& yaml_path,
                                        const std::vector<std::string>& overrides) {
  return load_settings<GenerateSettings>(yaml_path, overrides);
}
TrainSettings load_train_settings(const std::filesystem::path& yaml_path,
                                  const std::vector<std::string>& overrides) {
  return load_settings<TrainSettings>(yaml_path, overrides);
}
AnalyzeSettings load_analyze_settings(const std::filesystem::path& yaml_path,
                                      const std::vector<std::string>& overrides) {
  return load_settings<AnalyzeSettings>(yaml_path, overrides);
}
ConvertSettings load_convert_settings(const std::filesystem::path& yaml_path,
                                      const std::vector<std::string>& overrides) {
  return load_settings<ConvertSettings>(yaml_path, overrides);
}
AttributeSettings load_attribute_settings(const std::filesystem::path& yaml_path,
                                          const std::vector<std::string>& overrides) {
  return load_settings<AttributeSettings>(yaml_path, overrides);
}

GenerateSettings parse_generate_settings(std::string_view yaml_text, std::string_view display_name,
                                         const std::vector<std::string>& overrides,
                                         Validation validation) {
  return parse_settings<GenerateSettings>(yaml_text, display_name, overrides, validation);
}
TrainSettings parse_train_settings(std::string_view yaml_text, std::string_view display_name,
                                   const std::vector<std::string>& overrides,
                                   Validation validation) {
  return parse_settings<TrainSettings>(yaml_text, display_name, overrides, validation);
}
AnalyzeSettings parse_analyze_settings(std::string_view yaml_text, std::string_view display_name,
                                       const std::vector<std::string>& overrides,
                                       Validation validation) {
  return parse_settings<AnalyzeSettings>(yaml_text, display_name, overrides, validation);
}
ConvertSettings parse_convert_settings(std::string_view yaml_text, std::string_view display_name,
                                       const std::vector<std::string>& overrides,
                                       Validation validation) {
  return parse_settings<ConvertSettings>(yaml_text, display_name, overrides, validation);
}
AttributeSettings parse_attribute_settings(std::string_view yaml_text,
                                           std::string_view display_name,
                                           const std::vector<std::string>& overrides,
                                           Validation validation) {
  return parse_settings<AttributeSettings>(yaml_text, display_name, overrides, validation);
}

std::vector<std::string> validate(const GenerateSettings& settings) {
  return validate_settings(settings);
}
std::vector<std::string> validate(const TrainSettings& settings) {
  return validate_settings(settings);
}
std::vector<std::string> validate(const AnalyzeSettings& settings) {
  return validate_settings(settings);
}
std::vector<std::string> validate(const ConvertSettings& settings) {
  return validate_settings(settings);
}
std::vector<std::string> validate(const AttributeSettings& settings) {
  return validate_settings(settings);
}

std::string dump_yaml(const GenerateSettings& settings) { return dump_settings(settings); }
std::string dump_yaml(const TrainSettings& settings) { return dump_settings(settings); }
std::string dump_yaml(const AnalyzeSettings& settings) { return dump_settings(settings); }
std::string dump_yaml(const ConvertSettings& settings) { return dump_settings(settings); }
std::string dump_yaml(const AttributeSettings& settings) { return dump_settings(settings); }

std::filesystem::path save_resolved_config(const GenerateSettings& settings,
                                           const std::filesystem::path& dir) {
  return save_settings(settings, dir);
}
std::filesystem::path save_resolved_config(const TrainSettings& settings,
                                           const std::filesystem::path& dir) {
  return save_settings(settings, dir);
}
std::filesystem::path save_resolved_config(const AnalyzeSettings& settings,
                                           const std::filesystem::path& dir) {
  return save_settings(settings, dir);
}
std::filesystem::path save_resolved_config(const ConvertSettings& settings,
                                           const std::filesystem::path& dir) {
  return save_settings(settings, dir);
}
std::filesystem::path save_resolved_config(const AttributeSettings& settings,
                                           const std::filesystem::path& dir) {
  return save_settings(settings, dir);
}

std::string changed_lines(const std::string& before, const std::string& now) {
  std::set<std::string> old_lines;
  std::istringstream old_stream(before);
  for (std::string line; std::getline(old_stream, line);) old_lines.insert(line);
  std::istringstream new_stream(now);
  std::string out;
  for (std::string line; std::getline(new_stream, line);) {
    if (old_lines.count(line) != 0) continue;
    line.erase(0, line.find_first_not_of(' '));
    out += (out.empty() ? "" : "; ") + line;
  }
  return out;
}

}  // namespace saes::config
