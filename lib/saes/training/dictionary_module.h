// Adapters between the trainer's small interfaces and the modules it trains on:
// DictionaryModule (a dictionaries::SparseDictionary as a TrainableModule) and StreamBatchSource
// (a data::ActivationStream as a BatchSource).
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "saes/dictionaries/sparse_dictionary.h"
#include "saes/training/config.h"
#include "saes/training/trainer.h"

namespace saes::data {
class ActivationStream;
}  // namespace saes::data

namespace saes::training {

/// The weights file a DictionaryModule writes into / reads from its folder.
inline constexpr const char* kWeightsFileName = "sae_weights.safetensors";

/// A dictionary as the trainer sees it. Losses are named overall_loss, mse_loss, sparsity_loss,
/// lp_loss, aux_loss; the loss settings come from `config` plus the step's k and λ(t).
/// A feature-sharded dictionary looks whole to the trainer: n_features() is d_sae, `fired` and
/// the dead mask cover every feature (gathered over the model group each step), per-token
/// feature sums are summed over the group, and checkpoints hold the whole dictionary. A
/// head-sharded crosscoder likewise: its x̂ and labels are gathered over the head group for the
/// metrics (steps that compute them), its checkpoints and optimizer state hold every head.
class DictionaryModule final : public TrainableModule {
 public:
  /// `dict` is non-owning and must outlive this module.
  DictionaryModule(dictionaries::SparseDictionary& dict, TrainerConfig config);

  std::vector<Parameter> parameters() override;
  std::int64_t n_features() const override;
  std::int64_t feature_layers() const override;
  std::optional<std::int64_t> top_k() const override;
  StepOutput forward_backward(const TrainBatch& batch, const StepContext& context) override;
  std::map<std::string, double> statistics() const override;
  /// The dictionary's frequency_metrics (a MoLT's per-rank L0).
  std::map<std::string, double> frequency_statistics(const at::Tensor& freq) const override;
  /// dir/sae_weights.safetensors via the dictionary's own save/load (the whole dictionary).
  void save(const std::filesystem::path& dir, bool write) const override;
  void load(const std::filesystem::path& dir) override;
  at::Tensor gather_state(const std::string& param, const at::Tensor& t) const override;
  at::Tensor local_state(const std::string& param, const at::Tensor& t) const override;

 private:
  /// `param`'s layout (its ParameterRef without tensors); nullptr for a name that is none, or a
  /// tensor of fewer dims than the parameter (an optimizer step count).
  const dictionaries::ParameterRef* layout(const std::string& param, const at::Tensor& t) const;

  dictionaries::SparseDictionary& dict_;
  TrainerConfig config_;
  std::map<std::string, dictionaries::ParameterRef> layouts_;  ///< name → feature/head dims
};

/// An activation stream as the trainer's batch source (non-owning).
class StreamBatchSource final : public BatchSource {
 public:
  explicit StreamBatchSource(data::ActivationStream& stream) : stream_(stream) {}
  std::optional<TrainBatch> next() override;
  std::string state() const override;
  void restore(const std::string& state) override;

 private:
  data::ActivationStream& stream_;
};

}  // namespace saes::training
