// The distributed side of run_train: the data × head × model mesh of the run (validated against the
// launch), each rank's share of the activation stream, and the trainer's collective hooks.
#pragma once

#include <memory>

#include "saes/config/settings.h"
#include "saes/dictionaries/feature_parallel.h"
#include "saes/distributed/mesh.h"
#include "saes/runners/run_context.h"

namespace saes::data {
class ActivationStream;
}

namespace saes::training {
struct TrainerOptions;
}

namespace saes::runners {

/// Collective over context.world. One process with data/model_parallel_size 1 is the plain path.
class TrainDistribution {
 public:
  /// Throws ConfigError when data_parallel_size × model_parallel_size differs from the launched
  /// ranks, batch_size (the GLOBAL batch) is not divisible by data_parallel_size or d_sae not by
  /// model_parallel_size.
  TrainDistribution(const config::TrainSettings& settings, RunContext& context);

  const distributed::Mesh& mesh() const { return mesh_; }
  bool is_primary() const { return mesh_.is_primary(); }
  /// This rank's features and heads: its model and head groups (unsharded with sizes 1).
  dictionaries::FeatureShard feature_shard() const;

  /// This rank's stream: its contiguous slice of every batch of `global` (the full, identical
  /// stream every rank builds); `global` itself with one data rank.
  std::unique_ptr<data::ActivationStream> rank_stream(
      std::unique_ptr<data::ActivationStream> global) const;
  /// Data-parallel group, file writing on the primary rank only, gradient-norm reduction over the
  /// model and head groups.
  void configure(training::TrainerOptions& options) const;

 private:
  distributed::Mesh mesh_;
};

}  // namespace saes::runners
