// ActivationStreams and batch_rows: the shared stream set-up of runners (spec §6.1).
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

data::TokenBatcher make_batcher(const ActivationInputs& in, const lm::LanguageModel& lm,
                                const data::ActivationSourceConfig& source) {
  const auto it = in.datasets.find(source.name);
  SAES_CHECK(it != in.datasets.end(), ConfigError,
             "activation_factory source \"{}\" has type dataset but datasets has no entry \"{}\"",
             source.name, source.name);
  const data::DatasetConfig& d = it->second;
  data::TextSourceOptions text;
  text.paths = d.text_paths();
  text.format =
      d.format == data::DatasetFormat::kJsonl ? data::TextFormat::kJsonl : data::TextFormat::kText;
  text.text_field = d.text_field;
  text.separator = d.separator;
  text.max_documents = d.max_documents;
  data::TokenBatcherOptions options;
  options.context_size = in.factory.context_size.value_or(128);
  options.prepend_bos = in.model->prepend_bos;
  options.ignore_token_ids = in.factory.ignore_token_ids.value_or(std::vector<int64_t>{});
  const lm::Tokenizer* tokenizer = lm.tokenizer.get();
  return data::TokenBatcher(
      data::TextSource(text, 0, 1),
      [tokenizer](std::string_view t) { return tokenizer->encode(t); },
      {lm.special_ids.bos, lm.special_ids.eos, lm.special_ids.pad}, options);
}

}  // namespace

ActivationStreams::ActivationStreams(ActivationInputs inputs, Logger& logger)
    : in_(std::move(inputs)), logger_(logger) {
  if (!needs_model(in_.factory)) return;
  SAES_CHECK(in_.model.has_value(), ConfigError,
             "activation_factory has a source of type dataset but no model is configured; set "
             "model or use type: activations");
  lm_.emplace(lm::load_language_model(*in_.model));
}

std::unique_ptr<data::ActivationStream> ActivationStreams::make() const {
  data::StreamInputs s;
  if (lm_) {
    s.model = &lm_->model;
    s.make_batcher = [this](const data::ActivationSourceConfig& source) {
      return make_batcher(in_, *lm_, source);
    };
  }
  s.d_model = in_.d_model;
  s.seed = in_.seed;
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

}  // namespace saes::runners
