// Internal to lib/saes/config: semantic checks of parsed settings (ranges, cross-field rules).
// Each finds every problem, so the user fixes them in one round.
#pragma once

#include <string>
#include <vector>

#include "saes/config/settings.h"

namespace saes::config::detail {

struct Problem {
  std::string path;  ///< key path, e.g. `sae.top_k`
  std::string message;
};

std::vector<Problem> find_problems(const GenerateSettings& settings);
std::vector<Problem> find_problems(const TrainSettings& settings);
std::vector<Problem> find_problems(const AnalyzeSettings& settings);
std::vector<Problem> find_problems(const ConvertSettings& settings);
std::vector<Problem> find_problems(const AttributeSettings& settings);

}  // namespace saes::config::detail
