// MixtureOfLinearTransforms: the MoLT (`sae_type: molt`, spec §2.5). d_sae sparse low-rank
// transforms of the input, grouped by rank: feature i encodes like an SAE feature and, when
// active, adds f_i·U_i V_i x to the output (a transcoder from hook_point_in to hook_point_out).
// Decoder-norm gating by ‖U_i V_i‖_F, the generic loss of spec §2.1 with a manual backward,
// an exact fold (the original's missing factor f_in restored), feature parallelism splitting
// every rank group over the model group.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "saes/dictionaries/sparse_dictionary.h"

namespace at {
class Generator;
}  // namespace at

namespace saes::dictionaries {

/// Parameters, named and shaped as the original's checkpoints (spec §2.5), with R the ranks of
/// rank_counts in ascending order and c_r their counts:
///   W_E [d_model, d_sae], b_E [d_sae],
///   U_matrices.{r} [c_r, d_model, r], V_matrices.{r} [c_r, r, d_model],
///   b_D [d_model] (if use_decoder_bias),
///   activation_function.log_jumprelu_threshold [d_sae] (if jumprelu).
/// Feature i of the whole dictionary is transform i in rank-group order (the groups ascending,
/// c_r features each). Feature parallelism (model_parallel_size M, every c_r divisible by M):
/// rank p holds transforms [p·c_r/M, (p+1)·c_r/M) of every group and their W_E columns; its
/// local features are those, group by group (feature_blocks()).
class MixtureOfLinearTransforms final : public SparseDictionary {
 public:
  /// One rank group: its rank, its transforms in the whole dictionary and on this rank, and the
  /// first local feature of the group.
  struct Group {
    std::int64_t rank = 0;
    std::int64_t count = 0;
    std::int64_t local_count = 0;
    std::int64_t local_offset = 0;
  };

  /// Validates `cfg` (ConfigError naming the field: rank_counts keys positive integers and counts
  /// positive and divisible by the model group, expansion_factor within 0.1 of d_sae/d_model,
  /// top_k, act_fn, no GLU encoder) and allocates zero parameters.
  explicit MixtureOfLinearTransforms(SparseDictionaryConfig cfg, FeatureShard shard = {});

  const std::vector<Group>& groups() const { return groups_; }
  const at::Tensor& W_E() const { return W_E_; }
  const at::Tensor& b_E() const { return b_E_; }
  const at::Tensor& U(std::size_t group) const { return U_[group]; }
  const at::Tensor& V(std::size_t group) const { return V_[group]; }
  /// Undefined without use_decoder_bias / jumprelu.
  const at::Tensor& b_D() const { return b_D_; }
  const at::Tensor& log_jumprelu_threshold() const { return log_threshold_; }

  std::vector<ParameterRef> parameters() override;
  std::vector<std::string> input_hooks() const override { return {cfg_.hook_point_in}; }
  std::vector<std::string> label_hooks() const override { return {cfg_.hook_point_out}; }
  std::vector<std::int64_t> feature_blocks() const override;
  /// molt_metrics/l0_rank{r} (mean active transforms of rank r per token over the window),
  /// molt_metrics/l0_rank{r}_ratio (its share of the L0) and molt_metrics/total_rank_sum
  /// (Σ_r r·l0_rank{r}: the mean rank of the active transforms' sum per token).
  std::map<std::string, double> frequency_metrics(const at::Tensor& freq) const override;

  /// x [n_tokens, d_model] → f [n_tokens, local d_sae] (gating by ‖U_i V_i‖_F).
  at::Tensor encode(const at::Tensor& x, std::int64_t k = 0) const override;
  at::Tensor hidden_pre(const at::Tensor& x) const override;
  /// UnsupportedError: a MoLT decodes from its input (reconstruct).
  at::Tensor decode(const at::Tensor& f) const override;
  /// x̂ = Σ_i f_i U_i (V_i x) + b_D (summed over the model group): [n_tokens, d_model].
  at::Tensor reconstruct(const at::Tensor& x, const at::Tensor& f) const override;
  /// ‖U_i V_i‖_F from the r×r Gram matrices (no d×d product): [local d_sae].
  at::Tensor decoder_norm() const override;
  /// Undefined: a transform has no single output direction (the original registers no DLA
  /// vector for a MoLT); analysis skips decoder geometry and the logit lens.
  at::Tensor feature_directions() const override { return {}; }
  std::vector<at::Tensor> dla_terms(std::int64_t /*layer*/) const override { return {}; }

  /// The fused step with a manual backward: the generic loss (spec §2.1, §3.4, §3.5 incl. Aux-K
  /// and L_p), gradients through ‖U_i V_i‖_F when gating. Sparse (molt_sparse_step.cpp: the
  /// encoder GEMM is the only dense product, the transforms run at f's active entries only)
  /// when uses_sparse_step says so, else dense (molt_step.cpp); both give the same result.
  StepResult forward_backward(const TrainBatch& batch, const LossSettings& s) override;
  /// Never for JumpReLU or with sparse_kernels off; always else with on; with auto for the TopK
  /// family when k/d_sae, for ReLU when the measured fraction of h > 0, is at most
  /// kSparseMaxDensity (not for 16-bit CUDA, where the dense GEMMs run on tensor cores).
  bool uses_sparse_step(const at::Tensor& h, std::int64_t k) const;

  /// W_E, U, V ~ U(±1/√d_sae), biases 0, log θ filled (spec §2.5; the bounds of `init` are not
  /// used, as upstream).
  void init_parameters(const RandomInit& init, at::Generator& gen) override;
  /// Scales U_i and V_i by √(v/n_i) each (exact), or only transforms with n_i > v.
  void set_decoder_to_fixed_norm(double value, bool exact) override;
  void init_decoder_bias_with_mean(const at::Tensor& label_normalized) override;
  void init_encoder_bias_with_mean_hidden_pre(const at::Tensor& x_normalized) override;

 protected:
  /// Exact fold: b_E ← b_E/f_in, U_i, V_i ← U_i, V_i · f_in/√f_out (U_i V_i · f_in²/f_out: the
  /// decoder reads the raw input, the factor the original misses), b_D ← b_D/f_out, JumpReLU
  /// θ·f_in/f_out with gating (the gated score scales by f_in/f_out), θ/f_in without.
  void rescale_for_fold(bool fold) override;

 private:
  /// Per group: U_iᵀU_i, V_i V_iᵀ ([c, r, r] each) and the norms [c] they give.
  struct Grams {
    std::vector<at::Tensor> gu, gv;
    at::Tensor n;  ///< [local d_sae]
  };
  Grams grams() const;
  /// What both training steps start from.
  struct StepState {
    at::Tensor x, y, w, mask, dead;  ///< normalized [N, d]; w: [N, 1] token weights
    double n_valid = 0.0;
    std::int64_t k = 0;
    Grams gr;
    at::Tensor h;  ///< [N, local d_sae] pre-activations
  };
  StepResult dense_step(const StepState& st, const LossSettings& ls);
  StepResult sparse_step(const StepState& st, const LossSettings& ls);
  /// ∂n/∂U, ∂n/∂V of the penalties' ∂L/∂n (gn) added into the gradient buffers.
  void add_norm_grads(const Grams& gr, const at::Tensor& gn);
  /// fired counts, the model-group sums of l_sparsity, l_p and L0, and the total loss.
  void finish_step(StepResult& out, const at::Tensor& fired, double n_valid) const;
  /// U of group g as [c·r, d] rows (row (i, j) = column j of U_i) and V as [c·r, d].
  at::Tensor u_rows(std::size_t g) const;
  at::Tensor v_rows(std::size_t g) const { return V_[g].view({-1, cfg_.d_model}); }
  /// The selection of the scores `s` [N, local d_sae], over the whole dictionary when sharded.
  at::Tensor select_mask(const at::Tensor& s, std::int64_t k) const;
  std::int64_t resolve_k(std::int64_t k) const;
  void check_activations(const at::Tensor& t, const char* what) const;

  std::vector<Group> groups_;
  at::Tensor W_E_, b_E_, b_D_, log_threshold_;
  std::vector<at::Tensor> U_, V_;
  at::Tensor gW_E_, gb_E_, gb_D_, glog_threshold_;
  std::vector<at::Tensor> gU_, gV_;
  std::vector<std::string> u_names_, v_names_;
};

}  // namespace saes::dictionaries
