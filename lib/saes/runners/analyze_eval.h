// The evaluation step of saes-analyze (spec §8): reconstruction and downstream (spliced-model)
// metrics of a dictionary, as metric name → value, for the analysis store and the log.
#pragma once

#include <map>
#include <string>

#include "saes/config/settings.h"
#include "saes/runners/run_context.h"

namespace saes::dictionaries {
class SparseDictionary;
}  // namespace saes::dictionaries

namespace saes::runners {

/// Throws UnsupportedError for an evaluation run_analyze_eval cannot do (the spliced evaluation of
/// a run over model.checkpoints), so a run stops before its work; nothing when settings.eval is
/// null.
void check_analyze_eval(const config::AnalyzeSettings& settings);

/// Evaluates `dict` per settings.eval (which must be set) on the run's text/activations and
/// language model; returns metric name → value (names documented in docs/evaluation.md).
std::map<std::string, double> run_analyze_eval(const config::AnalyzeSettings& settings,
                                               dictionaries::SparseDictionary& dict,
                                               RunContext& context);

}  // namespace saes::runners
