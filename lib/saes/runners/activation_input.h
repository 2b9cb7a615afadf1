// Activation streams for runners other than train (convert now; train.cpp builds the same chain
// and can move onto this): language model for `dataset` sources, token batchers, and the rows of
// one hook point of a batch.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "saes/core/logging.h"
#include "saes/data/activation_stream.h"
#include "saes/data/config.h"
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
};

/// Owns the language model (when a source needs one) and makes fresh streams from batch 0.
class ActivationStreams {
 public:
  /// Loads the model if a source has type dataset (ConfigError when `model` is not set).
  ActivationStreams(ActivationInputs inputs, Logger& logger);
  std::unique_ptr<data::ActivationStream> make() const;

 private:
  ActivationInputs in_;
  std::optional<lm::LanguageModel> lm_;
  Logger& logger_;
};

/// [n_tokens, d] rows of `hook` in `batch` (2-D batches: only the masked-in tokens). ConfigError
/// naming the hook when the batch lacks it.
at::Tensor batch_rows(const data::ActivationBatch& batch, const std::string& hook);

}  // namespace saes::runners
