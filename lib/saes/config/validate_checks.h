// Shared pieces of the settings validation (validate.cpp: the training settings;
// validate_common.cpp: these helpers and the other tools' settings): the problem collector and
// the checks every tool's settings use. Not a public API.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "saes/config/settings.h"
#include "saes/config/validate.h"

namespace saes::config::detail {

class Problems {
 public:
  /// Records `path: message` unless `ok`.
  void check(bool ok, const std::string& path, std::string message) {
    if (!ok) items_.push_back({path, std::move(message)});
  }
  std::vector<Problem> take() { return std::move(items_); }

 private:
  std::vector<Problem> items_;
};


std::string at(const std::string& parent, std::string_view key);
void check_positive(Problems& p, const std::string& path, double value);
void check_non_negative(Problems& p, const std::string& path, double value);
void check_positive_if_set(Problems& p, const std::string& path,
                           const std::optional<std::int64_t>& value);
void check_floating(Problems& p, const std::string& path, DType dtype);
void check_not_empty(Problems& p, const std::string& path, const std::string& text);
void check_device(Problems& p, const std::string& path, const std::string& device);
void check_device_type(Problems& p, const std::string& device_type);
void check_token_ids(Problems& p, const std::string& path,
                     const std::optional<std::vector<std::int64_t>>& ids);
void check_steps(Problems& p, const std::string& path, const training::StepsOrFraction& value);
void check_run(Problems& p, std::int64_t threads, const LoggingConfig& logging);
void check_lm(Problems& p, const std::string& path, const lm::LanguageModelConfig& lm);
bool has_dataset_source(const data::ActivationFactoryConfig& factory);
void check_checkpoints(Problems& p, const std::string& path, const lm::LanguageModelConfig& lm,
                       const std::string& hooks_path, const std::vector<std::string>& hooks,
                       bool model_runs);
void check_source(Problems& p, const std::string& path, const data::ActivationSourceConfig& source,
                  const data::ActivationFactoryConfig& factory);
void check_factory(Problems& p, const std::string& path,
                   const data::ActivationFactoryConfig& factory, bool has_model,
                   const std::map<std::string, data::DatasetConfig>& datasets);
void check_parallelism(Problems& p, const distributed::ParallelismConfig& parallelism);

}  // namespace saes::config::detail
