// CrossCoder: the crosscoder (`sae_type: crosscoder`, spec §2.3). H hook points ("heads": several
// layers of one model, or one layer of several checkpoints) share one latent: the pre-activation
// a = Σ_h (x_h W_E[h] + b_E[h]) is gated per head by the head's decoder norms (mandatory), and
// each head is decoded by its own W_D[h], b_D[h]; the label is the input stack. The loss is the
// generic one averaged over heads, with token masks working (the original's mask-shape bug fixed).
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

/// Parameters, named and shaped as the original's checkpoints (spec §2.3):
///   W_E [H, d_model, d_sae], b_E [H, d_sae], W_D [H, d_sae, d_model], b_D [H, d_model],
///   activation_function.log_jumprelu_threshold [d_sae] (jumprelu).
/// Layouts: input [n_tokens, H, d_model] (hook_points order), per-head features
/// [n_tokens, H, d_sae], output and labels head-first [H, n_tokens, d_model] (as a CLT's layers:
/// the trainer logs metrics/explained_variance_L{h} per head). Analysis and the trainer's L0 read
/// a feature's activation as its maximum over heads (the original's amax).
/// Feature parallelism (model_parallel_size M): each rank holds d_sae/M features of every head.
/// Head parallelism (head_parallel_size P, dividing H): each rank of the head group holds the
/// H/P consecutive heads local_hook_points() (every parameter but log θ split on its head dim);
/// the input, per-head features, output and label layouts then hold those heads only, the partial
/// pre-activations are summed over the head group, and the losses, L0, fired counts and
/// analysis_features are those of all H heads (spec Appendix B).
class CrossCoder final : public SparseDictionary {
 public:
  /// Validates `cfg` (ConfigError naming the field: hook_points ≥ 1 distinct, gating and the
  /// decoder bias on, act_fn relu/jumprelu/topk/batchtopk, top_k) and allocates zero parameters.
  explicit CrossCoder(SparseDictionaryConfig cfg, FeatureShard shard = {});

  /// All heads H, and this rank's H/P heads (from head_offset() on).
  std::int64_t n_heads() const { return static_cast<std::int64_t>(cfg_.hook_points.size()); }
  std::int64_t n_local_heads() const { return n_heads() / shard_.head_size(); }
  std::int64_t head_offset() const { return n_local_heads() * shard_.head_rank(); }
  /// The hook points of this rank's heads (all of them without head parallelism).
  std::vector<std::string> local_hook_points() const;
  bool splits_heads() const override { return true; }
  const at::Tensor& W_E() const { return W_E_; }
  const at::Tensor& b_E() const { return b_E_; }
  const at::Tensor& W_D() const { return W_D_; }
  const at::Tensor& b_D() const { return b_D_; }
  const at::Tensor& log_jumprelu_threshold() const { return log_threshold_; }

  std::vector<ParameterRef> parameters() override;
  std::vector<std::string> input_hooks() const override { return cfg_.hook_points; }
  std::vector<std::string> label_hooks() const override { return cfg_.hook_points; }
  /// [n_tokens, H, d_model] (this rank's heads), each hook normalized with its own scale.
  at::Tensor prepare_input(const HookActs& raw) const override;
  /// [H, n_tokens, d_model] (this rank's heads).
  at::Tensor prepare_label(const HookActs& raw) const override;

  /// x [n_tokens, H, d_model] → f [n_tokens, H, d_sae]: f_h = a · mask(a·n_h) (spec §2.3).
  at::Tensor encode(const at::Tensor& x, std::int64_t k = 0) const override;
  /// The shared pre-activation a = Σ_h (x_h W_E[h] + b_E[h]) over all heads (collective over the
  /// head group): [n_tokens, d_sae].
  at::Tensor hidden_pre(const at::Tensor& x) const override;
  /// f [n_tokens, H, d_sae] → x̂ [H, n_tokens, d_model], x̂_h = f_h W_D[h] + b_D[h].
  at::Tensor decode(const at::Tensor& f) const override;
  /// max over all heads (collective over the head group): [n_tokens, d_sae].
  at::Tensor analysis_features(const at::Tensor& f) const override;
  /// n_h,i = ‖W_D[h, i]‖: [H, local d_sae].
  at::Tensor decoder_norm() const override;
  /// The DLA vector W_D[H−1, i] (spec §2.7): [local d_sae, d_model]. Analysis runs on whole
  /// heads: UnsupportedError under head parallelism (as the two geometry methods below).
  at::Tensor feature_directions() const override;
  /// ‖W_D[h, i]‖ per feature and head: [local d_sae, H] (all heads: gathered over the head group).
  at::Tensor target_decoder_norms() const override;
  /// Per feature the H×H inner products W_D[h, i]·W_D[g, i] ([local d_sae, H, H]; the original's
  /// decoder_inner_product_matrices) and their cosines (decoder_similarity_matrices).
  at::Tensor decoder_inner_products() const;
  at::Tensor decoder_similarities() const;
  /// Both of the above, for analysis (the decoder_similarity table).
  DecoderHeadSimilarities decoder_head_similarities() const override;

  /// The dense fused step with a manual backward (crosscoder_step.cpp): l_rec = mean over heads
  /// and (masked) tokens of Σ_d (x̂_h − y_h)², the penalty on f_h·n_h averaged over heads, L_p
  /// (JumpReLU) likewise; Aux-K is not defined for a crosscoder (UnsupportedError).
  /// Per-head metrics crosscoder_metrics/<hook>/{l_rec,l0} (the original's names): the head's
  /// Σ_d (x̂_h − y_h)² and active features, means over the valid tokens.
  /// Sparse (TopK family at k/d_sae ≤ kSparseMaxDensity with sparse_kernels auto, or on): each
  /// head's decode, ∂L/∂f and both weight gradients at its active entries only (sparse_kernels.h),
  /// the encoder GEMM the only dense product; the same result as the dense step.
  StepResult forward_backward(const TrainBatch& batch, const LossSettings& s) override;
  bool uses_sparse_step(std::int64_t k) const;

  /// One U(±encoder bound) draw of W_E[h] and one U(±decoder bound) draw of W_D[h] repeated on
  /// every head (all heads start identical, as upstream), biases 0, log θ filled.
  void init_parameters(const RandomInit& init, at::Generator& gen) override;
  /// W_E[h] ← factor·W_D[h]ᵀ per head.
  void init_encoder_with_decoder_transpose(double factor) override;
  /// Every decoder row of every head (exact: norm v; else rows with norm > v scaled to v).
  void set_decoder_to_fixed_norm(double value, bool exact) override;
  /// b_D[h] ← mean over tokens of label[h] ([H, n_tokens, d_model]).
  void init_decoder_bias_with_mean(const at::Tensor& label_normalized) override;
  /// b_E[h] ← b_E[h] − mean_tokens(a)/H: centres the shared pre-activation.
  void init_encoder_bias_with_mean_hidden_pre(const at::Tensor& x_normalized) override;
  /// The mean over tokens and all H heads (collective over the head group).
  double reconstruction_loss(const at::Tensor& x_normalized, const at::Tensor& label_normalized,
                             std::int64_t k) const override;

 protected:
  /// Exact fold (the original's b_E/f_h, b_D/f_h is exact only when every head has one scale):
  /// W_E[h] ← f_h·W_E[h] (a unchanged), W_D[h] and b_D[h] ← ·/f_h. The gating scores of head h
  /// then scale by 1/f_h, which no per-head selection (relu, topk, batchtopk) sees; JumpReLU's
  /// thresholds are shared by the heads, so its fold needs one scale for all (θ/f), else
  /// UnsupportedError.
  void rescale_for_fold(bool fold) override;

 private:
  /// The active-entry mask of the scores `s` [N, local d_sae] of one head (k: TopK k).
  at::Tensor select(const at::Tensor& s, std::int64_t k) const;
  StepResult sparse_step(const at::Tensor& x, const at::Tensor& y, const at::Tensor& a,
                         const at::Tensor& n, const at::Tensor& w, double n_valid,
                         const at::Tensor& mask, const LossSettings& ls, std::int64_t k);
  std::int64_t resolve_k(std::int64_t k) const;
  void check_input(const at::Tensor& x) const;
  void check_whole_heads(const char* what) const;
  /// In place: the sum over the head group (identity without head parallelism).
  void sum_over_heads(at::Tensor& t) const;
  /// A step's scalars from this rank's heads and features to the whole crosscoder's: l_rec
  /// (x̂ already holds every feature) summed over the head group, `terms` (penalties) over the
  /// head and model groups, `fired` (already the union over heads) over the model group.
  /// Returns {l_rec, terms..., fired}.
  std::vector<double> reduce_step_terms(double l_rec, const std::vector<double>& terms,
                                        double fired) const;
  /// The per-head metrics of this rank's heads (l_rec_h, l0_h: [local H] each, l0_h before the
  /// sum over features) as crosscoder_metrics/<hook>/… of every head (collective).
  std::map<std::string, double> head_metrics(const at::Tensor& l_rec, const at::Tensor& l0) const;

  at::Tensor W_E_, b_E_, W_D_, b_D_, log_threshold_;
  at::Tensor gW_E_, gb_E_, gW_D_, gb_D_, glog_threshold_;
};

}  // namespace saes::dictionaries
