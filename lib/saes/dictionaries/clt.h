// CrossLayerTranscoder: the cross-layer transcoder (`sae_type: clt`, spec §2.4). L input hooks
// (one per layer) → L output hooks; d_sae features per source layer l, each decoding into every
// target layer t >= l. Activations relu / jumprelu / topk / layertopk / batchtopk /
// batchlayertopk (spec §3.3), decoder-norm gating with the no-grad norms of spec §2.1, the CLT
// loss (mean over target layers and tokens), an exact fold (docs/dictionaries.md).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "saes/dictionaries/sparse_dictionary.h"

namespace at {
class Generator;
}  // namespace at

namespace saes::dictionaries {

/// Parameters, named and shaped as the original's checkpoints (spec §2.4):
///   W_E [L, d_model, d_sae], b_E [L, d_sae],
///   W_D.{t} [t+1, d_sae, d_model] (row block l: decoder from source layer l into target t),
///   b_D.{t} [d_model] (if use_decoder_bias),
///   activation_function.log_jumprelu_threshold [L, d_sae] (if jumprelu).
/// Layouts: input [n_tokens, L, d_model], features [n_tokens, L, d_sae], output and labels
/// layer-first [L, n_tokens, d_model]. Feature parallelism (model_parallel_size M): each rank holds
/// d_sae/M features of every layer (i ∈ [rank·d_sae/M, (rank+1)·d_sae/M)); the selections are
/// exact over the whole dictionary and the decode is summed over the model group.
class CrossLayerTranscoder final : public SparseDictionary {
 public:
  /// Validates `cfg` (ConfigError naming the field) and allocates zero parameters (this rank's
  /// features of every layer when `shard` is sharded).
  explicit CrossLayerTranscoder(SparseDictionaryConfig cfg, FeatureShard shard = {});

  std::int64_t n_layers() const { return static_cast<std::int64_t>(cfg_.hook_points_in.size()); }
  const at::Tensor& W_E() const { return W_E_; }
  const at::Tensor& b_E() const { return b_E_; }
  const at::Tensor& W_D(std::int64_t t) const { return W_D_[static_cast<std::size_t>(t)]; }
  /// Undefined without use_decoder_bias / jumprelu.
  const at::Tensor& b_D(std::int64_t t) const { return b_D_[static_cast<std::size_t>(t)]; }
  const at::Tensor& log_jumprelu_threshold() const { return log_threshold_; }

  std::vector<ParameterRef> parameters() override;
  std::vector<std::string> input_hooks() const override { return cfg_.hook_points_in; }
  std::vector<std::string> label_hooks() const override { return cfg_.hook_points_out; }
  std::int64_t feature_layers() const override { return n_layers(); }
  /// [n_tokens, L, d_model] / [L, n_tokens, d_model], each hook normalized with its own scale.
  at::Tensor prepare_input(const HookActs& raw) const override;
  at::Tensor prepare_label(const HookActs& raw) const override;

  /// x [n_tokens, L, d_model] → f [n_tokens, L, d_sae].
  at::Tensor encode(const at::Tensor& x, std::int64_t k = 0) const override;
  /// h[l] = x[l]·W_E[l] + b_E[l]: [n_tokens, L, d_sae] (unscaled by the decoder norms).
  at::Tensor hidden_pre(const at::Tensor& x) const override;
  /// f [n_tokens, L, d_sae] → ŷ [L, n_tokens, d_model], ŷ[t] = Σ_{l<=t} f[l]·W_D[t][l] + b_D[t];
  /// through the sparse decode when f's density allows it (as uses_sparse_step).
  at::Tensor decode(const at::Tensor& f) const override;
  /// ŷ of f's entries `a` (rows: tokens, features: l·d_sae + i, layer-major).
  at::Tensor decode_sparse(const SparseActs& a) const;
  /// N[l, i] = sqrt(Σ_{t>=l} ‖W_D[t][l, i]‖²): [L, d_sae] (spec §2.4; no gradient in training).
  at::Tensor decoder_norm() const override;
  /// Σ_{t>=l} W_D[t][l, i]: [L·d_sae, d_model], layer-major.
  at::Tensor feature_directions() const override;
  std::vector<at::Tensor> dla_terms(std::int64_t layer) const override;
  /// W_E[layer]'s columns; W_D[target][layer]'s rows (zeros for target < layer).
  at::Tensor encoder_vectors(std::int64_t layer, const at::Tensor& indices) const override;
  at::Tensor decoder_vectors(std::int64_t layer, std::int64_t target,
                             const at::Tensor& indices) const override;
  /// ‖W_D[t][l, i]‖ for t >= l, 0 for t < l: [L·d_sae, L] (feature l·d_sae + i, target t).
  at::Tensor target_decoder_norms() const override;
  /// The active-entry mask of the gating scores `s` [n_tokens, L, d_sae] for act_fn (k: TopK k).
  at::Tensor activation_mask(const at::Tensor& s, std::int64_t k) const;

  /// The CLT loss (spec §2.4): l_rec = mean over target layers of the token-weighted Σ_d
  /// (ŷ − y)² (a token mask, when given, selects the tokens: an extension), the sparsity penalty
  /// on f·N averaged over tokens and layers (tanh-quad: p̂ over tokens and layers jointly), with
  /// the manual backward. L_p and Aux-K are not defined for the CLT (UnsupportedError).
  /// The step is sparse (clt_sparse_step.cpp: the encoder GEMM is the only dense product) when
  /// uses_sparse_step says so, else dense; both give the same result (tests: 1e-5).
  StepResult forward_backward(const TrainBatch& batch, const LossSettings& s) override;

  /// Whether a training step with gating scores `s` [n_tokens, L, d_sae] and TopK `k` takes the
  /// sparse kernels: never for jumprelu or with sparse_kernels off; always with on; with auto for
  /// the TopK family and ReLU when the density (k/d_sae, k/(L·d_sae) for the layer variants, the
  /// measured fraction s > 0 for ReLU) is at most density_threshold(); not for 16-bit CUDA.
  bool uses_sparse_step(const at::Tensor& s, std::int64_t k) const;
  /// sparsity_threshold_for_csr with decode_with_csr (the original's switch), else
  /// kSparseMaxDensity: the density at or below which `auto` takes the sparse kernels.
  double density_threshold() const;

  /// W_E ~ U(±1/√d_sae), every W_D[t] ~ U(±1/√(L·d_model)), the blocks l < t zero with
  /// init_cross_layer_decoder_all_zero, biases 0, log θ filled (spec §2.4; the bounds of `init`
  /// are not used, as upstream).
  void init_parameters(const RandomInit& init, at::Generator& gen) override;
  /// b_D[t] ← mean over tokens of label[t] ([L, n_tokens, d_model]).
  void init_decoder_bias_with_mean(const at::Tensor& label_normalized) override;
  /// b_E ← b_E − mean_tokens(h) with h the unscaled pre-activation (upstream subtracts the
  /// gated h·N, which does not centre h; docs/dictionaries.md).
  void init_encoder_bias_with_mean_hidden_pre(const at::Tensor& x_normalized) override;

 protected:
  /// Exact fold (spec §2.4 [BUG] fixed): with f_in[l], f_out[t] the dataset scales, W_E[l] ←
  /// f_in[l]·W_E[l], W_D[t] ← W_D[t]/f_out[t], b_D[t] ← b_D[t]/f_out[t]; with decoder-norm
  /// gating, features are first re-parametrized to f·N (W_E and b_E columns × N, W_D rows / N)
  /// and gating is switched off, so that every act_fn selects exactly the same entries.
  void rescale_for_fold(bool fold) override;

 private:
  /// What both training steps start from (forward_backward).
  struct StepState {
    at::Tensor x, y;  ///< [N, L, d], [L, N, d], normalized
    at::Tensor w;     ///< [N] token weights summing to 1 over the valid tokens
    at::Tensor mask;  ///< the batch's token mask (undefined: every token)
    at::Tensor n;     ///< [L, S] decoder norms (no gradient)
    at::Tensor h, s;  ///< [N, L, S] pre-activations, gating scores (h·n or h)
    double n_valid = 0;
    std::int64_t k = 0;
  };
  StepResult dense_step(const StepState& st, const LossSettings& ls);
  StepResult sparse_step(const StepState& st, const LossSettings& ls);
  /// decode(f) takes the sparse decode: sparse_kernels on, or auto and f's density at most
  /// density_threshold() (not for 16-bit CUDA).
  bool decodes_sparsely(const at::Tensor& f) const;

  std::int64_t resolve_k(std::int64_t k) const;
  /// activation_mask of a sharded TopK-family CLT: selected over the whole dictionary.
  at::Tensor sharded_mask(const at::Tensor& s, std::int64_t k) const;
  /// Sharded: out [L, N, d] holds this rank's partial decode; sums it over the model group and
  /// adds b_D[t] to each target.
  void add_decoder_biases(at::Tensor& out) const;
  /// [n_tokens, L, d_model] checked against L and d_model.
  void check_input(const at::Tensor& x, const char* what) const;
  /// Layer-first pre-activations [L, n_tokens, d_sae].
  at::Tensor hidden_pre_layers(const at::Tensor& x) const;

  at::Tensor W_E_, b_E_, log_threshold_;
  std::vector<at::Tensor> W_D_, b_D_;
  at::Tensor gW_E_, gb_E_, glog_threshold_;
  std::vector<at::Tensor> gW_D_, gb_D_;
};

}  // namespace saes::dictionaries
