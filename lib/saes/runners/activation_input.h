// The one place where runners turn config into activations: the token batcher over a dataset's
// text (generate, analyze, eval, and every `dataset` source), the activation stream of an
// `activation_factory` with its language model (train, analyze, convert), and the rows of one hook
// point of a batch.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <c10/core/Device.h>

#include "saes/core/logging.h"
#include "saes/data/activation_stream.h"
#include "saes/data/config.h"
#include "saes/dictionaries/sparse_dictionary.h"
#include "saes/lm/config.h"
#include "saes/lm/hf_folder.h"

namespace saes::runners {

/// What a stream needs besides its factory config: the model (only for `dataset` sources) and
/// the datasets looked up by source name.
struct ActivationInputs {
  data::ActivationFactoryConfig factory;
  std::optional<lm::LanguageModelConfig> model;
  std::map<std::string, data::DatasetConfig> datasets;
  std::optional<std::int64_t> d_model;
  std::uint64_t seed = 0;
  c10::Device device = c10::Device(c10::DeviceType::CPU);  ///< where batches are delivered
  bool allow_data_change = false;  ///< see data::StreamInputs (resume_allow_data_change)
};

/// The `datasets` entry a `dataset` source names; ConfigError naming both when it is missing.
const data::DatasetConfig& dataset_for(const std::map<std::string, data::DatasetConfig>& datasets,
                                       const data::ActivationSourceConfig& source);

/// Batcher options of an activation factory: context_size (128 when unset), the model's
/// prepend_bos, packing, ignore_token_ids.
data::TokenBatcherOptions factory_batcher_options(const data::ActivationFactoryConfig& factory,
                                                  const lm::LanguageModelConfig& model);

/// A token batcher over `dataset`'s text (documents rank, rank + n_ranks, ...) encoded by `lm`'s
/// tokenizer with its bos/eos/pad ids. `lm` must outlive the batcher.
data::TokenBatcher make_token_batcher(const data::DatasetConfig& dataset,
                                      const lm::LanguageModel& lm,
                                      const data::TokenBatcherOptions& options, int rank = 0,
                                      int n_ranks = 1);

/// Makes fresh streams from batch 0 and holds the language model `dataset` sources run.
class ActivationStreams {
 public:
  /// `model`: an already loaded model to use (not owned; must outlive this). Without one, loads
  /// inputs.model when a source has type dataset (ConfigError when it is not set).
  ActivationStreams(ActivationInputs inputs, Logger& logger,
                    const lm::LanguageModel* model = nullptr);
  std::unique_ptr<data::ActivationStream> make() const;
  /// The language model the `dataset` sources run (null when every source reads shards); with
  /// model.checkpoints they run its checkpoints (LanguageModel::model_set()).
  const lm::LanguageModel* model() const { return lm_; }

 private:
  ActivationInputs in_;
  std::optional<lm::LanguageModel> owned_;
  const lm::LanguageModel* lm_ = nullptr;
  std::optional<lm::ModelSet> models_;  ///< lm_'s models (several with model.checkpoints)
  Logger& logger_;
};

/// [n_tokens, d] rows of `hook` in `batch` (2-D batches: only the masked-in tokens). ConfigError
/// naming the hook when the batch lacks it.
at::Tensor batch_rows(const data::ActivationBatch& batch, const std::string& hook);
/// batch_rows of each of `hooks` (what a dictionary's prepare_input/prepare_label read).
dictionaries::HookActs batch_hooks(const data::ActivationBatch& batch,
                                   const std::vector<std::string>& hooks);

}  // namespace saes::runners
