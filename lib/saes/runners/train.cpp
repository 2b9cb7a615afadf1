// run_train (spec Appendix D "train"): activation stream → dictionary (initialized or loaded,
// dataset norms from the first batches) → Trainer with one member → final weights in the run
// folder (docs/train.md). Data-parallel ranks: train_distributed.h (model parallel: issue #5).
#include <optional>
#include <vector>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/Tensor.h>
#include <fmt/format.h>

#include "saes/config/config_loader.h"
#include "saes/core/error.h"
#include "saes/data/activation_stream.h"
#include "saes/dictionaries/registry.h"
#include "saes/dictionaries/sparse_dictionary.h"
#include "saes/distributed/communicator.h"
#include "saes/lm/hf_folder.h"
#include "saes/runners/runners.h"
#include "saes/runners/train_distributed.h"
#include "saes/training/checkpoint.h"
#include "saes/training/dictionary_module.h"
#include "saes/training/initializer.h"
#include "saes/training/stop_signal.h"
#include "saes/training/trainer.h"

namespace saes::runners {
namespace {

namespace fs = std::filesystem;
using config::TrainSettings;

void check_supported(const TrainSettings& s) {
  SAES_CHECK(!s.eval, UnsupportedError,
             "eval: evaluation during training is not implemented yet; set eval: false");
}

bool needs_model(const TrainSettings& s) {
  for (const auto& source : s.activation_factory.sources) {
    if (source.type == data::SourceType::kDataset) return true;
  }
  return false;
}

data::TokenBatcher make_batcher(const TrainSettings& s, const lm::LanguageModel& lm,
                                const data::ActivationSourceConfig& source) {
  const auto it = s.datasets.find(source.name);
  SAES_CHECK(it != s.datasets.end(), ConfigError,
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
  options.context_size = s.activation_factory.context_size.value_or(128);
  options.prepend_bos = s.model->prepend_bos;
  options.ignore_token_ids = s.activation_factory.ignore_token_ids.value_or(std::vector<int64_t>{});
  const lm::Tokenizer* tokenizer = lm.tokenizer.get();
  return data::TokenBatcher(
      data::TextSource(text, 0, 1),
      [tokenizer](std::string_view t) { return tokenizer->encode(t); },
      {lm.special_ids.bos, lm.special_ids.eos, lm.special_ids.pad}, options);
}

/// The stream factory of this run (a fresh stream from the first batch on each call).
struct StreamFactory {
  const TrainSettings& s;
  std::optional<lm::LanguageModel> lm;
  Logger& logger;

  std::unique_ptr<data::ActivationStream> make() const {
    data::StreamInputs in;
    if (lm) {
      in.model = &lm->model;
      in.make_batcher = [this](const data::ActivationSourceConfig& source) {
        return make_batcher(s, *lm, source);
      };
    }
    in.d_model = s.sae.d_model;
    in.seed = static_cast<std::uint64_t>(s.seed);
    return data::make_activation_stream(s.activation_factory, in, logger);
  }
};

/// [n_tokens, d] rows of one hook of a batch (2-D batches: only the masked-in tokens).
at::Tensor batch_rows(const data::ActivationBatch& b, const std::string& hook) {
  const auto it = b.acts.find(hook);
  SAES_CHECK(it != b.acts.end(), ConfigError,
             "activation_factory.hook_points lacks \"{}\", which the dictionary reads", hook);
  if (it->second.dim() <= 2) return it->second;
  const at::Tensor rows = it->second.flatten(0, -2);
  if (!b.mask.defined()) return rows;
  return rows.index_select(0, b.mask.flatten().to(rows.device()).nonzero().squeeze(1));
}

/// Dataset norms from the first kDatasetNormBatches batches and the initializer's search on the
/// first batch, read from a separate stream so that training still starts at batch 0.
void prepare_dictionary(const TrainSettings& s, const StreamFactory& streams,
                        dictionaries::SparseDictionary& dict, Logger& logger) {
  using dictionaries::NormActivation;
  const bool dataset_wise = s.sae.norm_activation == NormActivation::kDatasetWise;
  const bool search = s.initializer.has_value();
  if (!dataset_wise && !search) return;
  auto stream = streams.make();
  std::vector<data::ActivationBatch> batches;
  const int wanted = dataset_wise ? dictionaries::kDatasetNormBatches : 1;
  while (static_cast<int>(batches.size()) < wanted) {
    auto b = stream->next();
    if (!b) break;
    batches.push_back(std::move(*b));
  }
  SAES_CHECK(!batches.empty(), DataError,
             "the activation stream yielded no batch; check activation_factory.sources");
  if (dataset_wise) {
    for (const auto& hook : dict.hook_points()) {
      std::vector<at::Tensor> rows;
      for (const auto& b : batches) rows.push_back(batch_rows(b, hook));
      const double norm = dictionaries::average_activation_norm(rows);
      dict.set_dataset_norm(hook, norm);
      logger.info("dataset norm of {}: {:.4f} (over {} batches)", hook, norm, batches.size());
    }
  }
  if (search) {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(static_cast<std::uint64_t>(s.seed));
    training::initialize_parameters(dict, *s.initializer, gen);
    training::initialization_search(dict, *s.initializer,
                                    batch_rows(batches.front(), dict.input_hook_point()),
                                    batch_rows(batches.front(), dict.label_hook_point()), logger);
  }
}

void load_pretrained(const TrainSettings& s, dictionaries::SparseDictionary& dict) {
  SAES_CHECK(s.sae.sae_pretrained_name_or_path.has_value(), ConfigError,
             "initializer is null, so the weights come from sae.sae_pretrained_name_or_path, "
             "which is not set; set one of them");
  fs::path path = *s.sae.sae_pretrained_name_or_path;
  if (fs::is_directory(path)) path /= training::kWeightsFileName;
  SAES_CHECK(fs::exists(path), IoError, "sae.sae_pretrained_name_or_path: {} does not exist",
             path.string());
  dict.load(path);
}

/// A checkpoint folder, or a run folder (its newest checkpoint).
fs::path resume_checkpoint(const fs::path& path) {
  if (!fs::exists(path / "checkpoints")) return path;
  const auto steps = training::list_checkpoints(path);
  SAES_CHECK(!steps.empty(), IoError,
             "trainer.from_pretrained_path: run folder {} has no complete checkpoint",
             path.string());
  return training::checkpoint_path(path, steps.back());
}

std::string outcome_text(const training::FitResult& r) {
  switch (r.outcome) {
    case training::FitOutcome::kCompleted:
      return "completed";
    case training::FitOutcome::kStreamExhausted:
      return "stopped: the activation stream ended";
    case training::FitOutcome::kInterrupted:
      return "interrupted by a signal";
  }
  return "unknown";
}

}  // namespace

int run_train(const TrainSettings& s, RunContext& context) {
  check_supported(s);
  const TrainDistribution distribution(s, context);
  Logger& logger = context.logger;
  StreamFactory streams{s, std::nullopt, logger};
  if (needs_model(s)) {
    SAES_CHECK(s.model.has_value(), ConfigError,
               "activation_factory has a source of type dataset but no model is configured; set "
               "model or use type: activations");
    streams.lm.emplace(lm::load_language_model(*s.model));
  }
  auto dict = dictionaries::make_dictionary(s.sae);
  const bool resuming = s.trainer.from_pretrained_path.has_value();
  if (!resuming) {
    if (!s.initializer) load_pretrained(s, *dict);
    prepare_dictionary(s, streams, *dict, logger);
  }

  const fs::path run_dir = s.trainer.exp_result_path;
  fs::create_directories(run_dir);
  config::save_resolved_config(s, run_dir);

  auto stream = distribution.rank_stream(streams.make());
  training::StreamBatchSource source(*stream);
  training::DictionaryModule module(*dict, s.trainer);
  training::SignalGuard signals;
  training::TrainerOptions options;
  options.signals = &signals;
  options.progress = context.progress;
  options.progress_interval_s = context.progress_interval_s;
  distribution.configure(options);
  training::Trainer trainer(s.trainer, {training::TrainerMember{"", &module, s.trainer}}, source,
                            logger, options);
  if (resuming) {
    const fs::path checkpoint = resume_checkpoint(*s.trainer.from_pretrained_path);
    logger.info("resuming from {}", checkpoint.string());
    trainer.resume(checkpoint);
  }
  const training::FitResult result = trainer.fit();
  logger.info("{}: {} after {} steps, {} tokens", s.sae_name, outcome_text(result), result.steps,
              result.tokens);
  if (result.outcome != training::FitOutcome::kCompleted) {
    logger.info("resume with --set trainer.from_pretrained_path={}",
                result.checkpoint ? result.checkpoint->string() : std::string("<checkpoint>"));
    return 0;
  }
  if (s.fold_activation_scale &&
      s.sae.norm_activation == dictionaries::NormActivation::kDatasetWise) {
    dict->fold_activation_scale();
    module.save(run_dir);
  }
  logger.info("weights: {}", (run_dir / training::kWeightsFileName).string());
  return 0;
}

}  // namespace saes::runners
