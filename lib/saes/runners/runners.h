// The runners behind the executables: each composes the modules for one job, given resolved
// settings and the run's context. Each returns the process exit code (0) or throws saes::Error.
#pragma once

#include "saes/config/settings.h"
#include "saes/runners/run_context.h"

namespace saes::runners {

/// saes-generate: text → model → activation shards (docs/shard-format.md).
int run_generate(const config::GenerateSettings& settings, RunContext& context);
/// saes-train: activations → trained dictionary in a run folder.
int run_train(const config::TrainSettings& settings, RunContext& context);
/// saes-analyze: feature statistics, top contexts and evaluation of a trained dictionary.
int run_analyze(const config::AnalyzeSettings& settings, RunContext& context);
/// saes-analyze attribute: one prompt's attribution graph (circuit tracing, docs/circuits.md).
int run_attribute(const config::AttributeSettings& settings, RunContext& context);
/// saes-convert: SAELens export/import, TopK→JumpReLU, folding.
int run_convert(const config::ConvertSettings& settings, RunContext& context);

}  // namespace saes::runners
