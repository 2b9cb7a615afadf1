// TrainDistribution: (data × head × model) mesh validation, rank slicing of the stream and trainer
// hooks for run_train.
#include "saes/runners/train_distributed.h"

#include "saes/core/error.h"
#include "saes/data/rank_slice.h"
#include "saes/training/trainer.h"

namespace saes::runners {
namespace {

const distributed::ParallelismConfig& checked(const config::TrainSettings& s) {
  const auto& p = s.parallelism;
  SAES_CHECK(p.model_parallel_size >= 1 && s.sae.d_sae() % p.model_parallel_size == 0, ConfigError,
             "model_parallel_size {} must divide d_sae {} (each model rank holds d_sae / {} "
             "features)",
             p.model_parallel_size, s.sae.d_sae(), p.model_parallel_size);
  SAES_CHECK(
      p.data_parallel_size >= 1 && s.activation_factory.batch_size % p.data_parallel_size == 0,
      ConfigError,
      "activation_factory.batch_size {} is the global batch and must be divisible by "
      "data_parallel_size {}",
      s.activation_factory.batch_size, p.data_parallel_size);
  return p;
}

}  // namespace

TrainDistribution::TrainDistribution(const config::TrainSettings& settings, RunContext& context)
    : mesh_(context.world, checked(settings)) {
  if (mesh_.data_size() > 1 && mesh_.is_primary()) {
    context.logger.info("data parallel: {} ranks, {} rows of each global batch of {} per rank",
                        mesh_.data_size(),
                        settings.activation_factory.batch_size / mesh_.data_size(),
                        settings.activation_factory.batch_size);
  }
  if (mesh_.head_size() > 1 && mesh_.is_primary()) {
    context.logger.info(
        "head parallel: {} ranks, {} of the {} crosscoder heads each", mesh_.head_size(),
        static_cast<std::int64_t>(settings.sae.hook_points.size()) / mesh_.head_size(),
        settings.sae.hook_points.size());
  }
  if (mesh_.model_size() > 1 && mesh_.is_primary()) {
    context.logger.info("model parallel: {} ranks, {} of the {} features each", mesh_.model_size(),
                        settings.sae.d_sae() / mesh_.model_size(), settings.sae.d_sae());
  }
}

dictionaries::FeatureShard TrainDistribution::feature_shard() const {
  return dictionaries::FeatureShard{&mesh_.model(), &mesh_.head()};
}

std::unique_ptr<data::ActivationStream> TrainDistribution::rank_stream(
    std::unique_ptr<data::ActivationStream> global) const {
  if (mesh_.data_size() == 1) return global;
  return std::make_unique<data::RankSliceStream>(std::move(global), mesh_.data_rank(),
                                                 mesh_.data_size());
}

void TrainDistribution::configure(training::TrainerOptions& options) const {
  options.write_files = mesh_.is_primary();
  if (mesh_.data_size() > 1) options.data_parallel = &mesh_.data();
  if (mesh_.model_size() > 1) options.model_parallel = &mesh_.model();
  if (mesh_.head_size() > 1) options.head_parallel = &mesh_.head();
}

}  // namespace saes::runners
