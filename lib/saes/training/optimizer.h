// Adam and SparseAdam (spec §5.1, §5.5) over a list of named parameters with separate gradient
// tensors, updated in place; global gradient-norm clipping; state as named tensors for checkpoints.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>

#include "saes/training/config.h"

namespace saes::training {

/// One trainable tensor as the optimizer sees it. `value` and `grad` are handles to the
/// dictionary's own storage (same shape, dtype and device); the optimizer writes `value` in place.
struct Parameter {
  std::string name;  ///< checkpoint name, e.g. "W_E", "activation_function.log_jumprelu_threshold"
  at::Tensor value;
  at::Tensor grad;         ///< may be undefined: the parameter is skipped this step
  double lr_factor = 1.0;  ///< jumprelu_lr_factor for the log-threshold group, else 1
  bool clip = true;        ///< included in gradient-norm clipping (false for log θ, as upstream)
  /// This rank holds only some features of it (feature parallelism); the other ranks of the
  /// model group hold the rest. False for tensors every rank holds whole.
  bool sharded = false;
  /// This rank holds only some heads of it (a crosscoder's head parallelism); the other ranks
  /// of the head group hold the rest.
  bool head_sharded = false;
};

/// Maps this rank's sum of squared gradient entries of the sharded parameters to the sum over
/// the group holding the other shards (an all-reduce over the `model` or `head` group). Empty:
/// identity (a single process, or a group of one).
using SquaredNormReduce = std::function<double(double)>;

/// Global L2 norm sqrt(Σ‖g‖²) over the clip-flagged parameters' gradients: the feature-sharded
/// ones' squared sum passed through `model_reduce`, the head-sharded ones' through `head_reduce`
/// (both: model then head), the whole ones counted once. If max_norm > 0 and the norm exceeds it,
/// every such gradient is multiplied by max_norm / (norm + 1e-6). Returns the norm before
/// clipping. Upstream uses the RMS of the non-zero entries instead (‖g‖/√nnz); we use the
/// conventional global norm (spec §15 item 3).
double clip_grad_norm(std::span<const Parameter> params, double max_norm,
                      const SquaredNormReduce& model_reduce = {},
                      const SquaredNormReduce& head_reduce = {});
/// The same norm without clipping.
double grad_norm(std::span<const Parameter> params, const SquaredNormReduce& model_reduce = {},
                 const SquaredNormReduce& head_reduce = {});

/// torch.optim.Adam (eps 1e-8, no weight decay, bias-corrected) or upstream's SparseAdam, whose
/// per-parameter step counts only steps with a non-zero gradient and which updates only the
/// entries with a non-zero gradient (both moments still decay everywhere).
class Optimizer {
 public:
  Optimizer(OptimizerClass kind, double lr, std::array<double, 2> betas, double eps = 1e-8);
  /// Base learning rate of the next step (the schedule sets it each step); each parameter uses
  /// lr · lr_factor.
  void set_lr(double lr) { lr_ = lr; }
  double lr() const { return lr_; }
  /// One update of every parameter with a defined gradient. State is created on first use and
  /// keyed by name; throws DataError if a parameter changed shape since.
  void step(std::span<const Parameter> params);
  /// State as named tensors: "<param>.exp_avg", "<param>.exp_avg_sq", "<param>.step" (int64 0-d).
  std::vector<std::pair<std::string, at::Tensor>> state_tensors() const;
  /// Restores state_tensors() output (copies into fresh tensors on each parameter's device when
  /// step() first sees it). Throws DataError for a malformed state.
  void load_state(const std::map<std::string, at::Tensor>& tensors);

 private:
  struct State {
    at::Tensor exp_avg;
    at::Tensor exp_avg_sq;
    std::int64_t step = 0;
  };
  State& state_for(const Parameter& p);
  void adam_update(const Parameter& p, State& s);
  void sparse_adam_update(const Parameter& p, State& s);
  at::Tensor scratch_like(const at::Tensor& t);

  OptimizerClass kind_;
  double lr_;
  double beta1_;
  double beta2_;
  double eps_;
  std::map<std::string, State> state_;
  at::Tensor scratch_;  // flat buffer reused for the denominator of every parameter
};

}  // namespace saes::training
