// SparseAutoEncoder: the vanilla SAE and the transcoder (`sae_type: sae`, spec §2.2), with the
// fused forward + manual backward training step (dense, or sparse for k-sparse activations:
// sae_sparse_step.cpp). Losses and gating follow spec §2.1, §3.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>

#include "saes/dictionaries/sparse_dictionary.h"

namespace at {
class Generator;
}  // namespace at

namespace saes::dictionaries {

/// Parameters (row-vector convention, spec §2.2): W_E [d_model, d_sae], b_E [d_sae],
/// W_D [d_sae, d_model], b_D [d_model] (if use_decoder_bias), W_E_glu/b_E_glu (if
/// use_glu_encoder), activation_function.log_jumprelu_threshold [d_sae] (if jumprelu).
/// A transcoder is the same model with hook_point_in != hook_point_out.
class SparseAutoEncoder final : public SparseDictionary {
 public:
  /// Validates `cfg` (ConfigError naming the field: sae_type, d_model, d_sae ≥ 1, top_k in
  /// 1..d_sae for the TopK family, act_fn not a CLT-only variant, window > 0, hook points set) and
  /// allocates zero parameters on cfg.device in cfg.dtype; call init_parameters or load next.
  /// With a sharded `shard`, this rank holds local_d_sae() features (see SparseDictionary).
  explicit SparseAutoEncoder(SparseDictionaryConfig cfg, FeatureShard shard = {});

  const at::Tensor& W_E() const { return W_E_; }
  const at::Tensor& b_E() const { return b_E_; }
  const at::Tensor& W_D() const { return W_D_; }
  /// Undefined unless use_decoder_bias / use_glu_encoder / jumprelu respectively.
  const at::Tensor& b_D() const { return b_D_; }
  const at::Tensor& W_E_glu() const { return W_E_glu_; }
  const at::Tensor& b_E_glu() const { return b_E_glu_; }
  const at::Tensor& log_jumprelu_threshold() const { return log_threshold_; }
  bool is_transcoder() const { return cfg_.hook_point_in != cfg_.hook_point_out; }

  std::vector<ParameterRef> parameters() override;
  std::vector<std::string> input_hooks() const override { return {cfg_.hook_point_in}; }
  std::vector<std::string> label_hooks() const override { return {cfg_.hook_point_out}; }

  at::Tensor encode(const at::Tensor& x, std::int64_t k = 0) const override;
  at::Tensor hidden_pre(const at::Tensor& x) const override;
  /// Gathers the decoder rows of f's non-zero entries instead of a dense GEMM when f's measured
  /// density is at most kSparseMaxDensity (cfg.sparse_kernels auto; always with on, never off).
  at::Tensor decode(const at::Tensor& f) const override;
  at::Tensor decoder_norm() const override;
  at::Tensor feature_directions() const override { return W_D_; }
  /// W_E's columns / W_D's rows of `indices` (UnsupportedError for a GLU encoder, whose
  /// pre-activation is not linear in x).
  at::Tensor encoder_vectors(std::int64_t layer, const at::Tensor& indices) const override;
  at::Tensor decoder_vectors(std::int64_t layer, std::int64_t target,
                             const at::Tensor& indices) const override;

  /// Runs the sparse step (sparse decode, ∂L/∂f at the active entries only, scatter-add weight
  /// gradients; no dense [tokens × d_sae] gradient) for TopK/BatchTopK/ReLU when
  /// uses_sparse_step says so, else the dense step. Both give the same result (tests: 1e-5).
  StepResult forward_backward(const TrainBatch& batch, const LossSettings& s) override;
  /// Whether forward_backward takes the sparse path for pre-activations `pre` and TopK k:
  /// never for JumpReLU (its straight-through gradient and L_p read every entry) or a GLU
  /// encoder, or with sparse_kernels off; always else with on; with auto when the density
  /// (k/d_sae, or the fraction of pre > 0 for ReLU) is at most kSparseMaxDensity.
  bool uses_sparse_step(const at::Tensor& pre, std::int64_t k) const;
  /// kAuto (default): the dense step runs its fused CPU sweeps (dense_kernels.h) and the CPU
  /// TopK/BatchTopK selections for float/double parameters on the CPU without a GLU encoder;
  /// kOps: always the LibTorch op path (the CUDA path; tests compare the two on the CPU).
  void set_dense_backend(SparseBackend backend) { dense_backend_ = backend; }

  void init_parameters(const RandomInit& init, at::Generator& gen) override;
  void init_encoder_with_decoder_transpose(double factor) override;
  void set_decoder_to_fixed_norm(double value, bool exact) override;
  void init_decoder_bias_with_mean(const at::Tensor& label_normalized) override;
  void init_encoder_bias_with_mean_hidden_pre(const at::Tensor& x_normalized) override;
  /// initialize_tc_with_mlp (sae_model_init.cpp; spec §4 step 7, a transcoder): with μ and σ
  /// the mean and the mean distance to it of the raw input rows, probe p_i = μ + σ·ŵ_i (ŵ_i the
  /// unit W_E column i), o_i = MLP(p_i); W_D row i ← (o_i − mean_j o_j) / ‖·‖ and W_E's columns
  /// ← unit length.
  void init_with_mlp(const MlpFunction& mlp, const at::Tensor& x_raw) override;
  /// initialize_W_D_with_active_subspace (spec §4 step 8): W_D ← W_D[:, :d_active]·Uᵀ with U the
  /// top d_active right singular vectors of the centred normalized label rows.
  void init_decoder_in_active_subspace(const at::Tensor& x_normalized,
                                       const at::Tensor& label_normalized, std::int64_t d_active,
                                       const AttentionLayer* attention) override;

 protected:
  void rescale_for_fold(bool fold) override;

 private:
  /// Normalized inputs and the shared first piece (the encoder GEMM) of one training step.
  struct StepState {
    at::Tensor x, y, w, mask, dead, n, pre;  ///< w: [N, 1] token weights; n: decoder norms
    double n_valid = 0.0;
    std::int64_t k = 0;
  };
  /// Aux-K (spec §3.5) of the dense steps: the dead features' TopK on the gated scores.
  struct AuxK {
    at::Tensor f, active, Gq;  ///< f_aux, its bool selection, ∂L_aux/∂ê (undefined: no Aux-K)
    double loss = 0.0;
  };
  AuxK dense_aux_k(const StepState& st, const at::Tensor& h, const at::Tensor& r,
                   const LossSettings& ls) const;
  StepResult dense_step(const StepState& st, const LossSettings& ls);
  /// The dense step with the fused CPU sweeps (sae_fused_step.cpp); same maths as dense_step.
  StepResult fused_dense_step(const StepState& st, const LossSettings& ls);
  bool fused_dense_applies() const;
  StepResult sparse_step(const StepState& st, const LossSettings& ls);
  /// f·W_D + b_D summed over the model group: x̂ of the whole dictionary. f: [N, local_d_sae].
  at::Tensor dense_decode(const at::Tensor& f) const;
  /// Sums this rank's l_sparsity, l_p and fired counts over the model group (terms of the whole
  /// dictionary are counted by model rank 0 only) into out.l_sparsity, l_p, l0 and loss.
  void finish_sums(StepResult& out, double n_valid) const;
  /// Σ_e values·W_D rows over the model group, + `bias` when defined.
  at::Tensor sparse_decode_sum(const SparseActs& a, const at::Tensor& bias) const;
  /// activation_mask of the scores `s` [N, local_d_sae], the TopK family selected over the whole
  /// dictionary when sharded.
  at::Tensor select_mask(ActFn act_fn, const at::Tensor& s, std::int64_t k) const;
  std::int64_t resolve_k(std::int64_t k) const;
  void check_activations(const at::Tensor& t, const char* what) const;

  at::Tensor W_E_, b_E_, W_D_, b_D_, W_E_glu_, b_E_glu_, log_threshold_;
  at::Tensor gW_E_, gb_E_, gW_D_, gb_D_, gW_E_glu_, gb_E_glu_, glog_threshold_;
  SparseBackend dense_backend_ = SparseBackend::kAuto;
};

}  // namespace saes::dictionaries
