// The training loop (spec §5.2, Appendix D): one shared activation stream, one or more
// dictionaries (each with its own optimizer, schedules, metrics and run sub-folder), periodic
// atomic checkpoints, exact resume, SIGTERM/SIGUSR1 checkpoint-and-stop, NaN/Inf stop, data
// parallelism (gradient_sync.h). The dictionary and the stream are seen through the small
// interfaces below.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "saes/core/logging.h"
#include "saes/training/config.h"
#include "saes/training/optimizer.h"

namespace saes::distributed {
class Communicator;
}

namespace saes::training {

class SignalGuard;

/// One batch of the shared activation stream; the fields mirror saes::data::ActivationBatch.
struct TrainBatch {
  /// Hook point → activations [n_tokens, d] (or [batch, context, d]); each dictionary takes the
  /// hooks it needs.
  std::map<std::string, at::Tensor> acts;
  at::Tensor tokens;          ///< token ids (unused by the trainer), or undefined
  at::Tensor mask;            ///< valid-token mask over the leading dims, or undefined
  std::int64_t n_tokens = 0;  ///< batch size in tokens, padding included (sets T_steps)
};

/// The activation stream as the trainer sees it (mirrors saes::data::ActivationStream).
class BatchSource {
 public:
  virtual ~BatchSource() = default;
  /// The next batch, or nullopt when the stream is exhausted.
  virtual std::optional<TrainBatch> next() = 0;
  /// Opaque state that makes restore() continue right after the last batch next() returned.
  virtual std::string state() const = 0;
  /// Called on a fresh source, before next().
  virtual void restore(const std::string& state) = 0;
};

/// Per-step inputs of a dictionary's loss.
struct StepContext {
  std::int64_t step = 0;      ///< cur_step (0-based)
  std::int64_t k = 0;         ///< TopK k of this step (k annealing); 0 for non-TopK dictionaries
  double l1_coefficient = 0;  ///< warmed-up sparsity coefficient λ(t)
  bool need_stats = true;     ///< false with skip_metrics_calculation: tensors may stay undefined
  /// [n_features] bool CPU: features that have not fired for >= dead_threshold tokens (Aux-K).
  at::Tensor dead;
};

/// What forward_backward returns.
struct StepOutput {
  /// Loss components (overall_loss required; mse_loss, sparsity_loss, lp_loss, aux_loss).
  std::map<std::string, double> losses;
  /// For the metrics (see compute_batch_stats): [..., d] reconstruction and target, [...,
  /// n_features] feature activations, and the mask used (undefined: all valid).
  at::Tensor reconstructed;
  at::Tensor label;
  at::Tensor feature_acts;
  at::Tensor mask;
  /// Optional [n_features] count of valid tokens on which each feature fired (any numeric dtype,
  /// any device); computed from feature_acts when undefined. Also feeds dead-feature tracking.
  at::Tensor fired;
  /// > 0: reconstructed and label are layer-first [layers, n_tokens, d] (a CLT's target layers),
  /// and the metrics gain per-layer explained variance (compute_batch_stats).
  std::int64_t layers = 0;
  /// The module's own metrics, logged under these names: means over the valid tokens (reduced
  /// over data ranks weighted by them, like the losses; averaged over the log window).
  std::map<std::string, double> metrics;
};

/// A dictionary as the trainer sees it (adapted from saes::dictionaries by the runner).
class TrainableModule {
 public:
  virtual ~TrainableModule() = default;
  /// Parameters with their gradient buffers (names as in checkpoints). Called every step; the
  /// tensors must stay the ones forward_backward writes into.
  virtual std::vector<Parameter> parameters() = 0;
  virtual std::int64_t n_features() const = 0;
  /// Features split into this many equal layer-major groups (a CLT's source layers): per-layer
  /// L0 and frequency metrics. 1 for a single-layer dictionary.
  virtual std::int64_t feature_layers() const { return 1; }
  /// top_k for the TopK family (k annealing applies), nullopt otherwise.
  virtual std::optional<std::int64_t> top_k() const = 0;
  /// Forward, loss and backward on one batch; overwrites every parameter's grad.
  virtual StepOutput forward_backward(const TrainBatch& batch, const StepContext& context) = 0;
  /// Model statistics logged with each metrics line (metrics/decoder_norm, ...).
  virtual std::map<std::string, double> statistics() const = 0;
  /// Metrics of the log window's firing frequencies (freq: [n_features] float64 CPU, fired
  /// tokens / window tokens), logged with each metrics line; default none.
  virtual std::map<std::string, double> frequency_statistics(const at::Tensor& /*freq*/) const {
    return {};
  }
  /// Writes the weights into folder `dir` (the dictionary's own format) when `write`; every rank
  /// calls it (collective over a feature-sharded module's model group, whose ranks gather the
  /// whole weights for the writer). load reads them back (a sharded module: only its part).
  virtual void save(const std::filesystem::path& dir, bool write) const = 0;
  virtual void load(const std::filesystem::path& dir) = 0;
  /// Feature parallelism: the whole-module tensor of parameter `param`'s state `t` (optimizer
  /// moments, shaped like the parameter) gathered from the model group (collective), and this
  /// rank's part of a whole one. Identity for modules that are not sharded (the default).
  virtual at::Tensor gather_state(const std::string& param, const at::Tensor& t) const;
  virtual at::Tensor local_state(const std::string& param, const at::Tensor& t) const;
};

/// One dictionary of the run.
struct TrainerMember {
  /// Run sub-folder and metrics prefix; empty only when it is the only member (then it uses the
  /// run folder itself).
  std::string name;
  TrainableModule* module = nullptr;  ///< non-owning; must outlive the Trainer
  /// Per-dictionary knobs (lr, schedules, λ, k, optimizer, clipping). The run-level fields
  /// (total_training_tokens, log_frequency, checkpoints, exp_result_path) come from the Trainer's
  /// config.
  TrainerConfig config;
};

enum class FitOutcome {
  kCompleted,        ///< T_steps reached; final weights written into each member's folder
  kStreamExhausted,  ///< the stream ended first; a resumable checkpoint was written
  kInterrupted,      ///< SIGTERM/SIGUSR1; a resumable checkpoint was written
};

struct FitResult {
  FitOutcome outcome = FitOutcome::kCompleted;
  std::int64_t steps = 0;
  std::int64_t tokens = 0;
  std::optional<std::filesystem::path> checkpoint;  ///< written for the two early outcomes
};

struct TrainerOptions {
  const SignalGuard* signals = nullptr;  ///< checked once per step when set
  /// Model group of feature-parallel ranks (non-owning; nullptr: features not split): the
  /// squared gradient norm of the feature-sharded parameters is summed over it before clipping.
  distributed::Communicator* model_parallel = nullptr;
  /// Head group of a head-parallel crosscoder (non-owning; nullptr: heads not split): the squared
  /// gradient norm of the head-sharded parameters is summed over it before clipping.
  distributed::Communicator* head_parallel = nullptr;
  ProgressMode progress = ProgressMode::kAuto;
  double progress_interval_s = 30.0;
  bool write_files = true;  ///< false on non-primary ranks: no metrics.jsonl, weights, checkpoints
  /// Also write each member's metric lines as TensorBoard events (logging.tensorboard): a new
  /// events.out.tfevents.* file in its folder per fit (a resumed fit appends one), when
  /// write_files.
  bool tensorboard = false;
  /// Data-parallel group (non-owning; nullptr: one process). Every rank's source yields its share
  /// of each global batch; the trainer broadcasts rank 0's initial parameters, reduces losses,
  /// statistics, firing counts and gradients (weighted by valid tokens, so the step equals the
  /// single-process step on the global batch), agrees on stop signals and checks that all ranks'
  /// stream states match before a checkpoint. T_steps and token counts use the global batch.
  distributed::Communicator* data_parallel = nullptr;
  /// Bytes of one flat gradient buffer of the data-parallel all-reduce.
  std::int64_t gradient_bucket_bytes = std::int64_t{32} << 20;
};

class Trainer {
 public:
  /// `config` holds the run-level knobs; throws ConfigError for no members, duplicate or invalid
  /// names.
  Trainer(const TrainerConfig& config, std::vector<TrainerMember> members, BatchSource& source,
          Logger& logger, TrainerOptions options = {});
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  /// Restores counters, schedules, stream position, weights, optimizer and metrics state from a
  /// `checkpoints/step_<N>` folder; fit() then continues exactly. Call before fit().
  void resume(const std::filesystem::path& checkpoint_dir);
  /// Trains until T_steps, the end of the stream or a stop signal. Throws DataError on a
  /// non-finite loss: that dictionary is not updated (dictionaries before it in the list already
  /// were at that step); checkpoints on disk are untouched.
  FitResult fit();
  /// Writes a resumable checkpoint of the current state; returns its folder.
  std::filesystem::path save_checkpoint();

  std::int64_t cur_step() const;
  std::int64_t cur_tokens() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace saes::training
