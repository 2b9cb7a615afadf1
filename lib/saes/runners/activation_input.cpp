// The shared activation set-up of runners (spec §6.1): token batchers, activation streams,
// batch_rows.
#include "saes/runners/activation_input.h"

#include <ATen/core/Tensor.h>

#include "saes/core/error.h"

namespace saes::runners {
namespace {

bool needs_model(const data::ActivationFactoryConfig& factory) {
  for (const auto& source : factory.sources) {
    if (source.type == data::SourceType::kDataset) return true;
  }
  return false;
}

}  // namespace

const data::DatasetConfig& dataset_for(const std::map<std::string, data::DatasetConfig>& datasets,
                                       const data::ActivationSourceConfig& source) {
  const auto it = datasets.find(source.name);
  SAES_CHECK(it != datasets.end(), ConfigError,
             "activation_factory source \"{}\" has type dataset but datasets has no entry \"{}\"",
             source.name, source.name);
  return it->second;
}

data::TokenBatcherOptions factory_batcher_options(const data::ActivationFactoryConfig& factory,
                                                  const lm::LanguageModelConfig& model) {
  data::TokenBatcherOptions options;
  options.context_size = factory.context_size.value_or(128);
  options.prepend_bos = model.prepend_bos;
  options.packing = factory.packing;
  options.ignore_token_ids = factory.ignore_token_ids.value_or(std::vector<int64_t>{});
  return options;
}

data::TokenBatcher make_token_batcher(const data::DatasetConfig& dataset,
                                      const lm::LanguageModel& lm,
                                      const data::TokenBatcherOptions& options, int rank,
                                      int n_ranks) {
  // keys of the original's Hugging Face datasets loader, which saes does not have
  SAES_CHECK(!dataset.cache_dir.has_value(), UnsupportedError,
             "dataset {}: cache_dir: not supported: saes reads local text/jsonl files (paths) and "
             "downloads nothing; remove it",
             dataset.dataset_name_or_path);
  SAES_CHECK(!dataset.is_dataset_on_disk, UnsupportedError,
             "dataset {}: is_dataset_on_disk: not supported: saes reads text/jsonl files (paths), "
             "not datasets saved by the datasets library; remove it",
             dataset.dataset_name_or_path);
  data::TextSourceOptions text;
  text.paths = dataset.text_paths();
  text.format = dataset.format == data::DatasetFormat::kJsonl ? data::TextFormat::kJsonl
                                                              : data::TextFormat::kText;
  text.text_field = dataset.text_field;
  text.separator = dataset.separator;
  text.max_documents = dataset.max_documents;
  const lm::Tokenizer* tokenizer = lm.tokenizer.get();
  return data::TokenBatcher(
      data::TextSource(text, rank, n_ranks),
      [tokenizer](std::string_view t) { return tokenizer->encode(t); },
      {lm.special_ids.bos, lm.special_ids.eos, lm.special_ids.pad}, options);
}

ActivationStreams::ActivationStreams(ActivationInputs inputs, Logger& logger,
                                     const lm::LanguageModel* model)
    : in_(std::move(inputs)), lm_(model), logger_(logger) {
  if (lm_ == nullptr && needs_model(in_.factory)) {
    SAES_CHECK(in_.model.has_value(), ConfigError,
               "activation_factory has a source of type dataset but no model is configured; set "
               "model or use type: activations");
    owned_.emplace(lm::load_language_model(*in_.model));
    lm_ = &*owned_;
  }
  if (lm_ != nullptr) models_.emplace(lm_->model_set());
}

std::unique_ptr<data::ActivationStream> ActivationStreams::make() const {
  data::StreamInputs s;
  if (lm_ != nullptr) {
    s.models = &*models_;
    s.make_batcher = [this](const data::ActivationSourceConfig& source) {
      SAES_CHECK(in_.model.has_value(), ConfigError,
                 "activation_factory source \"{}\" has type dataset but no model is configured",
                 source.name);
      return make_token_batcher(dataset_for(in_.datasets, source), *lm_,
                                factory_batcher_options(in_.factory, *in_.model));
    };
  }
  s.d_model = in_.d_model;
  s.seed = in_.seed;
  s.device = in_.device;
  s.allow_data_change = in_.allow_data_change;
  return data::make_activation_stream(in_.factory, s, logger_);
}

at::Tensor batch_rows(const data::ActivationBatch& b, const std::string& hook) {
  const auto it = b.acts.find(hook);
  SAES_CHECK(it != b.acts.end(), ConfigError,
             "activation_factory.hook_points lacks \"{}\", which the dictionary reads", hook);
  if (it->second.dim() <= 2) return it->second;
  const at::Tensor rows = it->second.flatten(0, -2);
  if (!b.mask.defined()) return rows;
  return rows.index_select(0, b.mask.flatten().to(rows.device()).nonzero().squeeze(1));
}

dictionaries::HookActs batch_hooks(const data::ActivationBatch& batch,
                                   const std::vector<std::string>& hooks) {
  dictionaries::HookActs out;
  for (const auto& hook : hooks) out[hook] = batch_rows(batch, hook);
  return out;
}

}  // namespace saes::runners
