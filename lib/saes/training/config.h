// Training configs (spec §1.3, §1.4): InitializerConfig, TrainerConfig and StepsOrFraction, the
// "int steps or float fraction of the total" type of the schedule fields. Names follow the
// original.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string_view>

#include "saes/core/config.h"
#include "saes/core/dtype.h"

namespace saes::training {

/// A step count (written as an integer, `5000`) or a fraction of the total steps (written with a
/// decimal point or exponent, `0.1`); it remembers which, so it round-trips (spec §5.1).
struct StepsOrFraction {
  bool is_fraction = false;
  std::int64_t steps = 0;
  double fraction = 0.0;

  static constexpr StepsOrFraction of_steps(std::int64_t n) { return {false, n, 0.0}; }
  static constexpr StepsOrFraction of_fraction(double f) { return {true, 0, f}; }
  /// Steps for a run of `total_steps`: int(fraction * total_steps) (truncating, as upstream) or
  /// steps.
  std::int64_t resolve(std::int64_t total_steps) const {
    return is_fraction ? static_cast<std::int64_t>(fraction * static_cast<double>(total_steps))
                       : steps;
  }
  bool operator==(const StepsOrFraction&) const = default;
};

enum class BiasInitMethod { kAllZero, kGeometricMedian };
inline constexpr std::array<std::string_view, 2> kBiasInitMethodNames = {"all_zero",
                                                                         "geometric_median"};
constexpr std::span<const std::string_view> enum_names(BiasInitMethod) {
  return kBiasInitMethodNames;
}

struct InitializerConfig {
  BiasInitMethod bias_init_method = BiasInitMethod::kAllZero;
  double decoder_uniform_bound = 1.0;
  double encoder_uniform_bound = 1.0;
  bool init_encoder_with_decoder_transpose = true;
  double init_encoder_with_decoder_transpose_factor = 1.0;
  std::optional<double> init_log_jumprelu_threshold_value;
  bool grid_search_init_norm = false;
  bool initialize_W_D_with_active_subspace = false;
  std::optional<std::int64_t> d_active_subspace;
  std::optional<bool> initialize_lorsa_with_mhsa;
  std::optional<bool> initialize_tc_with_mlp;
  std::optional<std::int64_t> model_layer;
  bool init_encoder_bias_with_mean_hidden_pre = false;

  template <class V>
  void visit_fields(V& v) {
    v("bias_init_method", bias_init_method,
      "decoder bias init; geometric_median sets b_D to the mean of the first normalized batch");
    v("decoder_uniform_bound", decoder_uniform_bound, "W_D ~ U(-b, b)");
    v("encoder_uniform_bound", encoder_uniform_bound, "W_E ~ U(-b, b)");
    v("init_encoder_with_decoder_transpose", init_encoder_with_decoder_transpose,
      "W_E <- factor * W_D^T");
    v("init_encoder_with_decoder_transpose_factor", init_encoder_with_decoder_transpose_factor,
      "factor of the transpose init");
    v("init_log_jumprelu_threshold_value", init_log_jumprelu_threshold_value,
      "initial log(theta) of every JumpReLU threshold (required for act_fn jumprelu)");
    v("grid_search_init_norm", grid_search_init_norm,
      "grid-search the decoder norm on the first batch (spec §4)");
    v("initialize_W_D_with_active_subspace", initialize_W_D_with_active_subspace,
      "sae: decoder rows in the label's top principal subspace; lorsa: W_V/W_O in each model "
      "head's value subspace (reads the model)");
    v("d_active_subspace", d_active_subspace,
      "sae: dimension of that subspace (required with the option above; lorsa uses d_qk_head)");
    v("initialize_lorsa_with_mhsa", initialize_lorsa_with_mhsa,
      "lorsa: copy Q/K from the model's attention at model_layer (reads the model)");
    v("initialize_tc_with_mlp", initialize_tc_with_mlp,
      "transcoder: decoder from the model's MLP at model_layer (reads the model)");
    v("model_layer", model_layer, "layer the model-informed inits read");
    v("init_encoder_bias_with_mean_hidden_pre", init_encoder_bias_with_mean_hidden_pre,
      "b_E <- b_E - mean(hidden_pre) on the first batch");
  }
  bool operator==(const InitializerConfig&) const = default;
};

enum class SparsityLossType { kPower, kTanh, kTanhQuad };
inline constexpr std::array<std::string_view, 3> kSparsityLossTypeNames = {"power", "tanh",
                                                                           "tanh-quad"};
constexpr std::span<const std::string_view> enum_names(SparsityLossType) {
  return kSparsityLossTypeNames;
}

enum class KScheduleType { kLinear, kExponential };
inline constexpr std::array<std::string_view, 2> kKScheduleTypeNames = {"linear", "exponential"};
constexpr std::span<const std::string_view> enum_names(KScheduleType) {
  return kKScheduleTypeNames;
}

enum class OptimizerClass { kAdam, kSparseAdam };
inline constexpr std::array<std::string_view, 2> kOptimizerClassNames = {"adam", "sparseadam"};
constexpr std::span<const std::string_view> enum_names(OptimizerClass) {
  return kOptimizerClassNames;
}

enum class LrScheduler {
  kConstant,
  kConstantWithWarmup,
  kLinearWarmupDecay,
  kCosineAnnealing,
  kCosineAnnealingWarmup,
  kExponentialWarmup,
};
inline constexpr std::array<std::string_view, 6> kLrSchedulerNames = {
    "constant",        "constantwithwarmup",    "linearwarmupdecay",
    "cosineannealing", "cosineannealingwarmup", "exponentialwarmup"};
constexpr std::span<const std::string_view> enum_names(LrScheduler) { return kLrSchedulerNames; }

enum class CheckpointSaveMode { kLog, kLinear };
inline constexpr std::array<std::string_view, 2> kCheckpointSaveModeNames = {"log", "linear"};
constexpr std::span<const std::string_view> enum_names(CheckpointSaveMode) {
  return kCheckpointSaveModeNames;
}

/// Trainer knobs. Upstream's `gradient_accumulation_steps` and `feature_sampling_window` are
/// unused there, so they are left out (and rejected with that hint).
struct TrainerConfig {
  std::optional<double> l1_coefficient = 8e-5;
  StepsOrFraction l1_coefficient_warmup_steps = StepsOrFraction::of_fraction(0.1);
  std::optional<double> lp_coefficient;
  std::optional<double> auxk_coefficient;
  std::optional<DType> amp_dtype;  ///< null: compute in sae.dtype
  std::optional<SparsityLossType> sparsity_loss_type;
  double tanh_stretch_coefficient = 4.0;
  double frequency_scale = 0.01;
  std::int64_t p = 1;
  std::optional<std::int64_t> initial_k;
  StepsOrFraction k_warmup_steps = StepsOrFraction::of_fraction(0.1);
  StepsOrFraction k_cold_booting_steps = StepsOrFraction::of_steps(0);
  KScheduleType k_schedule_type = KScheduleType::kLinear;
  double k_exponential_factor = 3.0;
  std::int64_t k_aux = 512;
  bool auxk_detach_residual = false;
  std::int64_t dead_threshold = 10'000'000;
  bool skip_metrics_calculation = false;
  double lr = 4e-4;
  std::array<double, 2> betas = {0.9, 0.999};
  OptimizerClass optimizer_class = OptimizerClass::kAdam;
  bool optimizer_foreach = true;
  LrScheduler lr_scheduler_name = LrScheduler::kConstantWithWarmup;
  double lr_end_ratio = 1.0 / 32.0;
  StepsOrFraction lr_warm_up_steps = StepsOrFraction::of_steps(5000);
  StepsOrFraction lr_cool_down_steps = StepsOrFraction::of_fraction(0.2);
  double jumprelu_lr_factor = 1.0;
  double clip_grad_norm = 0.0;
  std::int64_t total_training_tokens = 300'000'000;
  std::int64_t log_frequency = 1000;
  std::int64_t eval_frequency = 1000;
  std::int64_t n_checkpoints = 10;
  CheckpointSaveMode check_point_save_mode = CheckpointSaveMode::kLog;
  std::int64_t keep_last_checkpoints = 0;
  std::optional<std::filesystem::path> from_pretrained_path;
  std::filesystem::path exp_result_path = "results";

  template <class V>
  void visit_fields(V& v) {
    v("l1_coefficient", l1_coefficient, "sparsity coefficient lambda (null: 1.0)");
    v("l1_coefficient_warmup_steps", l1_coefficient_warmup_steps,
      "linear warm-up of lambda from 0");
    v("lp_coefficient", lp_coefficient, "JumpReLU pre-activation loss coefficient (null: off)");
    v("auxk_coefficient", auxk_coefficient, "Aux-K loss coefficient (null: off)");
    v("amp_dtype", amp_dtype,
      "autocast dtype of forward and loss (null: sae.dtype; saes has no autocast, so any other "
      "value is rejected)");
    v("sparsity_loss_type", sparsity_loss_type, "sparsity penalty (null: none)");
    v("tanh_stretch_coefficient", tanh_stretch_coefficient, "c of the tanh penalties");
    v("frequency_scale", frequency_scale, "s of the tanh-quad penalty");
    v("p", p, "power of the `power` penalty");
    v("initial_k", initial_k,
      "k annealing start, >= top_k (null: fixed k = top_k; upstream asserts)");
    v("k_warmup_steps", k_warmup_steps, "steps of k annealing from initial_k to top_k");
    v("k_cold_booting_steps", k_cold_booting_steps, "steps held at initial_k before annealing");
    v("k_schedule_type", k_schedule_type, "shape of k annealing");
    v("k_exponential_factor", k_exponential_factor, "a of the exponential k schedule");
    v("k_aux", k_aux, "k of the Aux-K loss");
    v("auxk_detach_residual", auxk_detach_residual,
      "Aux-K fits a detached residual (OpenAI): its gradient does not reach the main "
      "reconstruction (false: upstream, it does)");
    v("dead_threshold", dead_threshold,
      "tokens without firing after which a feature counts as dead");
    v("skip_metrics_calculation", skip_metrics_calculation, "skip all metric updates and logging");
    v("lr", lr, "Adam learning rate");
    v("betas", betas, "Adam betas");
    v("optimizer_class", optimizer_class, "optimizer");
    v("optimizer_foreach", optimizer_foreach,
      "the original's multi-tensor Adam switch; saes' Adam is one fused loop, the same update "
      "either way");
    v("lr_scheduler_name", lr_scheduler_name, "learning-rate schedule (spec §5.5)");
    v("lr_end_ratio", lr_end_ratio,
      "final lr / lr of the decaying schedules (all of them, unlike upstream)");
    v("lr_warm_up_steps", lr_warm_up_steps, "linear lr warm-up length");
    v("lr_cool_down_steps", lr_cool_down_steps, "linear lr decay length at the end");
    v("jumprelu_lr_factor", jumprelu_lr_factor,
      "lr multiplier of the JumpReLU log-threshold group");
    v("clip_grad_norm", clip_grad_norm, "gradient-norm clip (0: no clipping)");
    v("total_training_tokens", total_training_tokens,
      "tokens to train on; steps = tokens / batch tokens");
    v("log_frequency", log_frequency, "steps between metric lines");
    v("eval_frequency", eval_frequency, "steps between evaluations");
    v("n_checkpoints", n_checkpoints, "periodic weight snapshots (0: none)");
    v("check_point_save_mode", check_point_save_mode, "snapshot spacing: log or linear in steps");
    v("keep_last_checkpoints", keep_last_checkpoints,
      "keep only the newest N resumable checkpoints (0: keep all)");
    v("from_pretrained_path", from_pretrained_path, "resume from this checkpoint folder");
    v("exp_result_path", exp_result_path, "output folder (weights, checkpoints/, metrics.jsonl)");
    v.unsupported("gradient_accumulation_steps", "it is unused upstream; remove it");
    v.unsupported("feature_sampling_window", "it is unused upstream; remove it");
  }
  bool operator==(const TrainerConfig&) const = default;
};

/// saes-train's `logging:` — the run-wide keys of every executable plus the training outputs
/// beside metrics.jsonl.
struct TrainLoggingConfig : LoggingConfig {
  bool tensorboard = false;

  template <class V>
  void visit_fields(V& v) {
    LoggingConfig::visit_fields(v);
    v("tensorboard", tensorboard,
      "also write TensorBoard event files (events.out.tfevents.*) of the metrics.jsonl values into "
      "each dictionary's run folder; saes addition");
  }
  bool operator==(const TrainLoggingConfig&) const = default;
};

}  // namespace saes::training
