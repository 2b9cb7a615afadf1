// Training metrics (spec §5.6): per-step batch statistics, window accumulation over
// `log_frequency` steps with the upstream metric names, dead-feature tracking, `metrics.jsonl`
// (one JSON object per logged step) and the short console summary.
#pragma once

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>

namespace saes::training {

/// Reconstruction and sparsity statistics of one batch for one dictionary.
struct BatchStats {
  double explained_variance = 0.0;  ///< 1 - Σ‖x̂-y‖² / Σ‖y-ȳ‖² over valid tokens
  double explained_variance_legacy = 0.0;  ///< mean_tok(1 - ‖x̂-y‖²/‖y-ȳ‖²)
  double l2_norm_error = 0.0;              ///< mean_tok ‖x̂-y‖
  double l2_norm_error_ratio = 0.0;        ///< l2_norm_error / mean_tok ‖y‖
  double mean_feature_act = 0.0;           ///< Σ f / #(f > 0)
  double l0_sum = 0.0;                     ///< Σ_tokens #(f > 0)
  double n_tokens = 0.0;                   ///< valid tokens (mask sum, else rows)
  at::Tensor fired;                        ///< [n_features] float64 CPU: valid tokens with f > 0
  /// Layered outputs (a CLT's L target layers): the explained variance of each layer; the
  /// whole-dictionary figures above are then the means over layers (spec §5.6).
  std::vector<double> layer_explained_variance;
};

/// Statistics of one batch. reconstructed, label: [..., d]; feature_acts: [..., n_features] with
/// the same leading dims — or, when `fired` is given, any [..., m] whose per-token sums over the
/// last dim equal Σ_i f_i (a sparse step passes [..., 1] sums); mask: same leading dims (nonzero =
/// valid) or undefined (all valid).
/// Any float dtype (accumulated in float32 or wider), any device. `fired` ([n_features] counts of
/// valid tokens with f > 0, e.g. from the dictionary's fused step) saves a pass; undefined:
/// computed. `layers` > 0: reconstructed and label are layer-first [layers, n_tokens, d] (a CLT)
/// and feature_acts [n_tokens, n_features]; each layer's reconstruction statistics are computed
/// and the whole-dictionary ones are their means (l2_norm_error_ratio: mean error / mean norm).
BatchStats compute_batch_stats(const at::Tensor& reconstructed, const at::Tensor& label,
                               const at::Tensor& feature_acts, const at::Tensor& mask,
                               const at::Tensor& fired = {}, std::int64_t layers = 0);

/// Everything recorded for one dictionary at one step.
struct StepRecord {
  /// Loss components without the "losses/" prefix: overall_loss, mse_loss and, when present,
  /// sparsity_loss, lp_loss, aux_loss.
  std::map<std::string, double> losses;
  /// The module's own metrics under their full names (StepOutput::metrics): means over steps.
  std::map<std::string, double> metrics;
  std::optional<BatchStats> stats;
  double grad_norm_before_clipping = 0.0;
  double grad_norm_after_clipping = 0.0;
  double learning_rate = 0.0;  ///< base lr of this step (before the scheduler update)
  double l1_coefficient = 0.0;
  std::optional<double> lp_coefficient;
  std::optional<double> auxk_coefficient;
  std::int64_t n_training_tokens = 0;  ///< tokens trained on before this step
};

using MetricValues = std::vector<std::pair<std::string, double>>;

/// Accumulates StepRecords over a log window and produces the spec's metric names:
/// losses/* (mean over steps), metrics/explained_variance{,_legacy},
/// metrics/l2_norm_error{,_ratio}, metrics/mean_feature_act (means over steps), metrics/l0 (Σ
/// #(f>0) / Σ tokens), sparsity/{above_1e-1,above_1e-2,below_1e-5,below_1e-6,below_1e-7} (features
/// by window firing frequency), metrics/gradient_norm_{before_clipping,per_param} (max over the
/// window), details/* (last value), plus our sparsity/dead_features (no firing for >=
/// dead_threshold tokens) and sparsity/dense_features (firing on more than half of the window's
/// tokens). Its state (window sums and per-feature counters) is checkpointed, so a resumed run logs
/// the same numbers as an uninterrupted one. With feature_layers L > 1 (a CLT: n_features = L ·
/// d_sae, layer-major) it adds per layer metrics/explained_variance_L{l}, metrics/l0_layer{l} and
/// sparsity/<bucket>_layer{l}.
class MetricsTracker {
 public:
  MetricsTracker(std::int64_t n_features, std::int64_t log_frequency, std::int64_t dead_threshold,
                 std::int64_t feature_layers = 1);
  /// Adds a step to the window (the record's stats feed L0, EV and the frequency buckets).
  void update(const StepRecord& record);
  /// Dead-feature tracking (spec §3.5, every step, also with skip_metrics_calculation): a feature
  /// that fired resets its count to 0, the others add n_tokens. fired: [n_features], any device.
  void track_firing(const at::Tensor& fired, double n_tokens);
  /// [n_features] bool CPU: tokens since the feature last fired >= dead_threshold.
  at::Tensor dead_mask() const;
  /// [n_features] float64 CPU: each feature's firing frequency over the current window (fired
  /// tokens / tokens); undefined when the window holds no token.
  at::Tensor window_frequency() const;
  /// (cur_step + 1) % log_frequency == 0.
  bool should_log(std::int64_t cur_step) const;
  /// The window's metrics (then `model_stats`, e.g. metrics/decoder_norm), and a reset window.
  MetricValues flush(const std::map<std::string, double>& model_stats = {});
  std::vector<std::pair<std::string, at::Tensor>> state_tensors() const;
  /// Throws DataError if a tensor is missing or has the wrong number of features.
  void load_state(const std::map<std::string, at::Tensor>& tensors);

 private:
  enum class Reduce { kMean, kMax, kLast };
  struct Accumulator {
    Reduce reduce = Reduce::kMean;
    double sum = 0.0;
    double weight = 0.0;
    double value = 0.0;
  };
  void add(const std::string& key, Reduce reduce, double value, double weight = 1.0);

  std::int64_t n_features_;
  std::int64_t feature_layers_ = 1;
  std::int64_t log_frequency_;
  std::int64_t dead_threshold_;
  std::map<std::string, Accumulator> window_;
  at::Tensor window_fired_;  // [n_features] float64
  double window_tokens_ = 0.0;
  at::Tensor tokens_since_fired_;  // [n_features] int64
};

/// "loss 0.123 | L0 8.00 | EV 0.8828" from a flushed window (for Progress's extra text).
std::string console_summary(const MetricValues& values);

/// Appends one JSON object per logged step ({"step": N, "<metric>": value, ...}) to a file,
/// flushed after every line. Opening with `resume_step` first drops the lines whose step is
/// greater (written after the checkpoint being resumed), so the file continues seamlessly.
class MetricsLog {
 public:
  explicit MetricsLog(std::filesystem::path path, std::optional<std::int64_t> resume_step = {});
  void write(std::int64_t step, const MetricValues& values);
  const std::filesystem::path& path() const { return path_; }

 private:
  struct Closer {
    void operator()(std::FILE* f) const { std::fclose(f); }
  };
  std::filesystem::path path_;
  std::unique_ptr<std::FILE, Closer> file_;
};

}  // namespace saes::training
