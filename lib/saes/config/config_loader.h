// Public front of the configuration system (style.md §B6): YAML file -> `--set` overrides -> strict
// typed parse -> validate() -> settings struct; the resolved settings dump back to YAML that parses
// to an equal struct, and are saved next to every output as `config.resolved.yaml`.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "saes/config/settings.h"

namespace saes::config {

/// File name of the resolved config written into output folders.
inline constexpr std::string_view kResolvedConfigName = "config.resolved.yaml";

enum class Validation { kOn, kOff };

/// Reads `yaml_path`, applies `overrides` (`key.path=value`, value parsed as YAML; later ones win),
/// parses strictly and validates. Throws IoError naming the file when it cannot be read, and
/// ConfigError otherwise: `file:line:col: key.path: message` (validation: one line per problem).
GenerateSettings load_generate_settings(const std::filesystem::path& yaml_path,
                                        const std::vector<std::string>& overrides = {});
TrainSettings load_train_settings(const std::filesystem::path& yaml_path,
                                  const std::vector<std::string>& overrides = {});
AnalyzeSettings load_analyze_settings(const std::filesystem::path& yaml_path,
                                      const std::vector<std::string>& overrides = {});
ConvertSettings load_convert_settings(const std::filesystem::path& yaml_path,
                                      const std::vector<std::string>& overrides = {});
AttributeSettings load_attribute_settings(const std::filesystem::path& yaml_path,
                                          const std::vector<std::string>& overrides = {});

/// As load_*, from YAML text; `display_name` stands for the file in messages.
GenerateSettings parse_generate_settings(std::string_view yaml_text, std::string_view display_name,
                                         const std::vector<std::string>& overrides = {},
                                         Validation validation = Validation::kOn);
TrainSettings parse_train_settings(std::string_view yaml_text, std::string_view display_name,
                                   const std::vector<std::string>& overrides = {},
                                   Validation validation = Validation::kOn);
AnalyzeSettings parse_analyze_settings(std::string_view yaml_text, std::string_view display_name,
                                       const std::vector<std::string>& overrides = {},
                                       Validation validation = Validation::kOn);
ConvertSettings parse_convert_settings(std::string_view yaml_text, std::string_view display_name,
                                       const std::vector<std::string>& overrides = {},
                                       Validation validation = Validation::kOn);
AttributeSettings parse_attribute_settings(std::string_view yaml_text,
                                           std::string_view display_name,
                                           const std::vector<std::string>& overrides = {},
                                           Validation validation = Validation::kOn);

/// Every semantic problem of already-parsed settings, one `key.path: message` per entry (empty
/// when valid). load_*/parse_* throw these as one ConfigError with file positions added.
std::vector<std::string> validate(const GenerateSettings& settings);
std::vector<std::string> validate(const TrainSettings& settings);
std::vector<std::string> validate(const AnalyzeSettings& settings);
std::vector<std::string> validate(const ConvertSettings& settings);
std::vector<std::string> validate(const AttributeSettings& settings);

/// The settings as YAML (every field, defaults included); parse_*(dump_yaml(x)) == x.
std::string dump_yaml(const GenerateSettings& settings);
std::string dump_yaml(const TrainSettings& settings);
std::string dump_yaml(const AnalyzeSettings& settings);
std::string dump_yaml(const ConvertSettings& settings);
std::string dump_yaml(const AttributeSettings& settings);

/// Writes dump_yaml(settings) atomically to `dir/config.resolved.yaml` (creating `dir`); returns
/// that path. Throws IoError on failure.
std::filesystem::path save_resolved_config(const GenerateSettings& settings,
                                           const std::filesystem::path& dir);
std::filesystem::path save_resolved_config(const TrainSettings& settings,
                                           const std::filesystem::path& dir);
std::filesystem::path save_resolved_config(const AnalyzeSettings& settings,
                                           const std::filesystem::path& dir);
std::filesystem::path save_resolved_config(const ConvertSettings& settings,
                                           const std::filesystem::path& dir);
std::filesystem::path save_resolved_config(const AttributeSettings& settings,
                                           const std::filesystem::path& dir);

/// docs/config.md: every settings key of the four executables with type, default and meaning,
/// generated from the same field lists (a test keeps the committed file equal to this).
std::string config_reference_markdown();

/// The lines of the YAML dump `now` that `before` lacks ("key: value", indentation dropped),
/// joined by "; ": what a "config differs" message lists.
std::string changed_lines(const std::string& before, const std::string& now);

}  // namespace saes::config
