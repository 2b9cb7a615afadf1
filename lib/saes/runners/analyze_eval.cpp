// The evaluation step of saes-analyze (docs/evaluation.md): with a model and a `dataset` source,
// token batches of that dataset through analysis::evaluate_dictionary (reconstruction and
// downstream metrics); with cached activations only, the reconstruction metrics.
#include "saes/runners/analyze_eval.h"

#include <algorithm>
#include <optional>

#include "saes/analysis/evaluation.h"
#include "saes/core/error.h"
#include "saes/data/activation_stream.h"
#include "saes/dictionaries/sparse_dictionary.h"
#include "saes/distributed/communicator.h"
#include "saes/lm/hf_folder.h"
#include "saes/runners/activation_input.h"

namespace saes::runners {
namespace {

using config::AnalyzeSettings;

/// This rank's share of the token budget (the first total % world ranks take one more).
std::int64_t rank_budget(std::int64_t total, const distributed::Communicator& world) {
  const std::int64_t n = world.size();
  return total / n + (world.rank() < total % n ? 1 : 0);
}

const data::ActivationSourceConfig* first_dataset_source(const AnalyzeSettings& s) {
  for (const auto& source : s.activation_factory.sources) {
    if (source.type == data::SourceType::kDataset) return &source;
  }
  return nullptr;
}

std::map<std::string, double> eval_on_text(const AnalyzeSettings& s,
                                           const data::ActivationSourceConfig& source,
                                           dictionaries::SparseDictionary& dict,
                                           RunContext& context) {
  const analysis::EvalConfig& eval = *s.eval;
  const lm::LanguageModel lm = lm::load_language_model(*s.model);
  data::TokenBatcher batcher = make_token_batcher(
      dataset_for(s.datasets, source), lm, factory_batcher_options(s.activation_factory, *s.model),
      context.world.rank(), context.world.size());
  const std::int64_t budget = rank_budget(eval.total_eval_tokens, context.world);
  Progress progress = context.make_progress("eval", budget, "tokens");
  const auto next_batch = [&]() {
    std::optional<data::TokenBatch> b = batcher.next_batch(eval.batch_size);
    if (b) {
      const std::int64_t kept = b->mask.ne(0).sum().item<std::int64_t>();
      progress.advance(std::min(kept, budget - progress.done()));
    }
    return b;
  };
  analysis::EvalOptions options;
  options.downstream = eval.downstream;
  options.mean_ablation = eval.mean_ablation;
  options.dense_threshold = eval.dense_threshold;
  auto metrics =
      analysis::evaluate_dictionary(dict, lm.model, next_batch, budget, options, &context.world);
  progress.finish();
  return metrics;
}

std::map<std::string, double> eval_on_activations(const AnalyzeSettings& s,
                                                  dictionaries::SparseDictionary& dict,
                                                  RunContext& context) {
  const analysis::EvalConfig& eval = *s.eval;
  data::StreamInputs inputs;
  inputs.d_model = dict.config().d_model;
  inputs.seed = static_cast<std::uint64_t>(s.seed);
  inputs.rank = context.world.rank();
  inputs.world = context.world.size();
  auto stream = data::make_activation_stream(s.activation_factory, inputs, context.logger);
  const std::int64_t budget = rank_budget(eval.total_eval_tokens, context.world);
  Progress progress = context.make_progress("eval", budget, "tokens");
  // Every label hook side by side (a CLT: L·d_model columns), all features.
  analysis::ReconstructionAccumulator acc(
      dict.config().d_model * static_cast<std::int64_t>(dict.label_hooks().size()),
      dict.n_features());
  while (acc.n_tokens() < budget) {
    std::optional<data::ActivationBatch> b = stream->next();
    if (!b) break;
    const std::int64_t take = budget - acc.n_tokens();
    analysis::HookReconstruction r;
    std::int64_t n = 0;
    if (dict.reads_sequences()) {  // whole contexts in, the masked-in tokens out
      dictionaries::HookActs raw;
      for (const auto& hook : dict.hook_points()) raw[hook] = b->acts.at(hook);
      const at::Tensor kept = b->mask.defined() ? b->mask.reshape({-1}).ne(0).nonzero().squeeze(1)
                                                : at::Tensor();
      r = analysis::reconstruct_hooks(dict, raw, kept);
      n = std::min(take, r.feature_acts.size(0));
      for (auto& t : r.labels) t = t.slice(0, 0, n);
      for (auto& t : r.outputs) t = t.slice(0, 0, n);
      r.feature_acts = r.feature_acts.slice(0, 0, n);
    } else {
      dictionaries::HookActs raw = batch_hooks(*b, dict.hook_points());
      n = std::min(take, raw.begin()->second.size(0));
      for (auto& [hook, rows] : raw) rows = rows.slice(0, 0, n);
      r = analysis::reconstruct_hooks(dict, raw);
    }
    acc.add(r.label_rows(), r.output_rows(), r.feature_acts);
    progress.advance(n);
  }
  acc.all_reduce(context.world);
  progress.finish();
  return acc.metrics(eval.dense_threshold);
}

}  // namespace

void check_analyze_eval(const AnalyzeSettings& settings) {
  if (!settings.eval || first_dataset_source(settings) == nullptr || !settings.model) return;
  SAES_CHECK(settings.model->checkpoints.empty(), UnsupportedError,
             "eval: the spliced evaluation patches the dictionary into one model's forward, and "
             "model.checkpoints runs several models: not supported; set eval: null, or evaluate "
             "from shards (sources of type activations: reconstruction metrics only)");
}

std::map<std::string, double> run_analyze_eval(const AnalyzeSettings& settings,
                                               dictionaries::SparseDictionary& dict,
                                               RunContext& context) {
  SAES_CHECK(settings.eval.has_value(), ConfigError,
             "run_analyze_eval: settings.eval is null (evaluation not requested)");
  SAES_CHECK(settings.eval->batch_size > 0, ConfigError, "eval.batch_size: expected > 0, got {}",
             settings.eval->batch_size);
  check_analyze_eval(settings);
  const data::ActivationSourceConfig* source = first_dataset_source(settings);
  std::map<std::string, double> metrics;
  if (source != nullptr) {
    SAES_CHECK(settings.model.has_value(), ConfigError,
               "activation_factory source \"{}\" has type dataset but no model was configured",
               source->name);
    metrics = eval_on_text(settings, *source, dict, context);
  } else {
    context.logger.info(
        "eval: no dataset source, so no language model to splice into; reconstruction metrics "
        "only");
    metrics = eval_on_activations(settings, dict, context);
  }
  for (const auto& [name, value] : metrics) context.logger.info("eval/{} = {:.6g}", name, value);
  return metrics;
}

}  // namespace saes::runners
