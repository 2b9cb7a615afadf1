// LowRankSparseAttention: Lorsa (`sae_type: lorsa`, spec §2.6). Replaces an attention layer's
// output with d_sae rank-1 OV heads that share n_qk_heads QK heads (OV head i reads QK head
// i / ov_group_size): each OV head's value is one scalar per token, v_i = x·w_V,i + b_V,i, mixed by
// its QK head's causal attention pattern into z_i, activated over the d_sae axis per token (relu,
// jumprelu, topk, batchtopk; decoder-norm gating by ‖W_O,i‖) and written back as f_i·w_O,i + b_D.
// Batches are sequences ([batch, context, d_model], a padding mask); the training step's backward
// runs through autograd (docs/dictionaries.md "Lorsa").
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>

#include "saes/dictionaries/sparse_dictionary.h"

namespace at {
class Generator;
}  // namespace at

namespace saes::dictionaries {

/// Parameters and buffers, named and shaped as the original's checkpoints (spec §2.6):
///   W_Q, W_K [n_qk_heads, d_model, d_qk_head], b_Q, b_K [n_qk_heads, d_qk_head],
///   W_V [d_sae, d_model], b_V [d_sae], W_O [d_sae, d_model], b_D [d_model] (use_decoder_bias),
///   ln_q.w, ln_k.w [n_qk_heads, d_qk_head] (use_post_qk_ln with normalization_type RMS),
///   activation_function.log_jumprelu_threshold [d_sae] (jumprelu);
///   buffers mask [n_ctx, n_ctx] (causal, bool), IGNORE (0-d, -inf), rotary_sin / rotary_cos
///   [n_ctx, rotary_dim] (rotary: angle p·ω_j, each frequency twice, interleaved for adjacent
///   pairs, as two halves otherwise).
/// Layouts: input, label and output [batch, context, d_model]; features [batch, context, d_sae].
class LowRankSparseAttention final : public SparseDictionary {
 public:
  /// Validates `cfg` (ConfigError naming the field: QK sizes, rotary_dim, n_ctx, hooks differ,
  /// ov_group_size divides, the QK heads split over the model group; UnsupportedError for what
  /// is not implemented: rotary_scale != 1, a normalization other than RMS) and allocates zero
  /// parameters: with a sharded `shard` this rank's QK heads and their OV heads (Appendix B:
  /// Q/K/V and the patterns stay local; TopK selections and decodes are collective).
  explicit LowRankSparseAttention(SparseDictionaryConfig cfg, FeatureShard shard = {});

  std::int64_t n_qk_heads() const { return cfg_.n_qk_heads; }
  /// QK heads this rank holds (n_qk_heads unless feature-parallel: n_qk_heads / M, the first
  /// rank·n_qk_heads/M, with their OV heads — the rank's features).
  std::int64_t local_qk_heads() const {
    return cfg_.n_qk_heads / (shard_.sharded() ? shard_.size() : 1);
  }
  std::int64_t d_qk_head() const { return cfg_.d_qk_head; }
  /// OV heads per QK head: d_sae / n_qk_heads.
  std::int64_t ov_group_size() const { return d_sae() / cfg_.n_qk_heads; }
  /// cfg.attn_scale, or sqrt(d_qk_head).
  double attn_scale() const;
  const at::Tensor& W_Q() const { return W_Q_; }
  const at::Tensor& W_K() const { return W_K_; }
  const at::Tensor& b_Q() const { return b_Q_; }
  const at::Tensor& b_K() const { return b_K_; }
  const at::Tensor& W_V() const { return W_V_; }
  const at::Tensor& b_V() const { return b_V_; }
  const at::Tensor& W_O() const { return W_O_; }
  /// Undefined without use_decoder_bias / QK-norm / jumprelu.
  const at::Tensor& b_D() const { return b_D_; }
  const at::Tensor& ln_q() const { return ln_q_; }
  const at::Tensor& ln_k() const { return ln_k_; }
  const at::Tensor& log_jumprelu_threshold() const { return log_threshold_; }

  std::vector<ParameterRef> parameters() override;
  std::vector<std::string> input_hooks() const override { return {cfg_.hook_point_in}; }
  std::vector<std::string> label_hooks() const override { return {cfg_.hook_point_out}; }
  bool reads_sequences() const override { return true; }
  /// [batch, context, d_model], normalized; DataError for activations without a context axis
  /// (Lorsa needs activations-2d) or a context longer than n_ctx.
  at::Tensor prepare_input(const HookActs& raw) const override;
  at::Tensor prepare_label(const HookActs& raw) const override;

  /// x [batch, context, d_model] → f [batch, context, d_sae] (every position attends to the
  /// positions up to it; no padding mask).
  at::Tensor encode(const at::Tensor& x, std::int64_t k = 0) const override;
  /// z [batch, context, d_sae]: z_i[q] = Σ_{k<=q} A_g(i)[q, k]·v_i[k].
  at::Tensor hidden_pre(const at::Tensor& x) const override;
  /// f (any leading dims, last d_sae) → f·W_O + b_D.
  at::Tensor decode(const at::Tensor& f) const override;
  /// z-patterns of `features` (this rank's OV heads): [m, context(q), context(k)] entries
  /// A_g(i)[q, k]·v_i[k] for x [1, context, d_model].
  at::Tensor source_contributions(const at::Tensor& x_normalized,
                                  const at::Tensor& features) const override;
  /// Circuit tracing (lorsa_circuits.cpp): W_V rows, W_O rows, the QK heads' attention rows
  /// at `position` and the query / key maps of one head at a position (RoPE applied).
  at::Tensor encoder_vectors(std::int64_t layer, const at::Tensor& indices) const override;
  at::Tensor decoder_vectors(std::int64_t layer, std::int64_t target,
                             const at::Tensor& indices) const override;
  at::Tensor token_mixing(const at::Tensor& x_normalized, std::int64_t position,
                          const at::Tensor& indices) const override;
  ScoreSide attention_score_side(std::int64_t index, std::int64_t position,
                                 bool query) const override;
  /// ‖W_O,i‖: [d_sae].
  at::Tensor decoder_norm() const override;
  /// W_O (the DLA vector of spec §2.7).
  at::Tensor feature_directions() const override { return W_O_; }

  /// The attention patterns A [batch, local_qk_heads(), context(q), context(k)] of normalized x:
  /// softmax over k <= q of q·k / attn_scale; with `mask` ([batch, context], nonzero = real
  /// token) a query never attends to padding (a padding query attends to itself only).
  at::Tensor attention_pattern(const at::Tensor& x, const at::Tensor& mask = {}) const;
  /// The z-pattern of this rank's OV head `head` (spec §7.2): [batch, context(q), context(k)] with entries
  /// A_g[q, k]·v_head[k] (their sum over k is z_head[q]).
  at::Tensor z_pattern(const at::Tensor& x, std::int64_t head, const at::Tensor& mask = {}) const;

  /// One step: the loss of spec §2.1 (l_rec per token summed over d_model, mean over the real
  /// tokens of the mask; the sparsity penalty on f·‖W_O‖; JumpReLU L_p) with the gradients of
  /// every parameter, and the JumpReLU threshold's straight-through gradient. Padding positions
  /// never fire. The attention side (Q, K, V) runs through autograd; the decoder side is dense
  /// autograd too, or — the sparse step, see uses_sparse_step — sparse_kernels.h on f's active
  /// entries only (x̂ from the active W_O rows, ∂L/∂f at those entries, W_O's gradient by
  /// scatter-add), then z's gradient back through the autograd graph. Both give the same result
  /// (tests: 1e-10 in float64). Aux-K (TopK family, batch.dead given): the dead OV heads' TopK
  /// (k_aux) decodes ê, l_aux = α·mean‖ê − (y − x̂)‖², its gradient reaching x̂ unless
  /// auxk_detach_residual (spec §3.5, as the SAE).
  StepResult forward_backward(const TrainBatch& batch, const LossSettings& s) override;
  /// Whether forward_backward takes the sparse step at TopK k: never for JumpReLU or with
  /// sparse_kernels off, always with on; with auto for the TopK family at density k/d_sae <=
  /// kSparseMaxDensity (ReLU stays dense: its density is only known after the attention).
  bool uses_sparse_step(std::int64_t k) const;

  /// W_Q, W_K Xavier-uniform (fans of the [n_qk, d_model, d_qk] tensor, as torch), W_V ~
  /// N(0, 1/d_sae), W_O ~ N(0, 1/d_model), biases and QK-norm weights 0 and 1, log θ filled
  /// (spec §2.6; the bounds of `init` are not used, as upstream).
  void init_parameters(const RandomInit& init, at::Generator& gen) override;
  /// W_O ← W_O · value / mean_i ‖W_O,i‖ (the mean norm, as upstream; `exact` is not used).
  void set_decoder_to_fixed_norm(double value, bool exact) override;
  /// b_D ← mean over every token of the normalized label.
  void init_decoder_bias_with_mean(const at::Tensor& label_normalized) override;
  /// b_V ← b_V − mean over tokens of z (attention rows sum to 1, so z is then centred).
  void init_encoder_bias_with_mean_hidden_pre(const at::Tensor& x_normalized) override;
  /// initialize_lorsa_with_mhsa (lorsa_init.cpp): W_Q, W_K, b_Q, b_K ← the model's,
  /// each model head repeated n_qk_heads / n_heads times, divided by the input's dataset scale
  /// and permuted between the RoPE layouts when the model's differs; the attention pattern is
  /// then the model's. ConfigError naming the key when the shapes, RoPE settings or attn_scale
  /// cannot reproduce it (or use_post_qk_ln is set: the models read here have no QK-norm).
  void init_with_attention(const AttentionLayer& attention) override;
  /// initialize_W_D_with_active_subspace (spec §4 step 8, per model head h): U = the top
  /// min(d_qk_head, d_head) right singular vectors of x·W_V^h·W_V^hᵀ (centred); for the OV heads
  /// of h's QK heads W_V ← W_V[:, :|U|]·Uᵀ and W_O ← W_V·W_V^h·W_O^h, rows of both of norm 1.
  /// `attention` is required; d_active is not used (as upstream).
  void init_decoder_in_active_subspace(const at::Tensor& x_normalized,
                                       const at::Tensor& label_normalized, std::int64_t d_active,
                                       const AttentionLayer* attention) override;

 protected:
  /// Exact fold: W_Q, W_K, W_V ← f_in·W (q, k, v unchanged on raw inputs), W_O, b_D ← /f_out,
  /// and with decoder-norm gating log θ ← log θ − log f_out (‖W_O‖ shrank by f_out; the
  /// original leaves θ, spec §2.4 note).
  void rescale_for_fold(bool fold) override;
  std::vector<std::pair<std::string, at::Tensor>> buffers() const override;

 private:
  /// The trainable tensors one forward reads (the parameters, or autograd leaves of them).
  struct Weights {
    at::Tensor W_Q, W_K, b_Q, b_K, W_V, b_V, W_O, b_D, ln_q, ln_k;
  };
  Weights weights() const;
  /// grad ← leaf.grad() (zero when autograd gave none) for a leaf that requires grad.
  static void take_grad(at::Tensor& grad, const at::Tensor& leaf);
  /// take_grad for each tensor of `w` into its gradient buffer.
  void take_grads(const Weights& w);
  /// z [B, T, S] and A [B, n_qk, T, T] of normalized x [B, T, d] with weights `w`.
  std::pair<at::Tensor, at::Tensor> attend(const Weights& w, const at::Tensor& x,
                                           const at::Tensor& mask) const;
  /// The sparse step (lorsa_sparse_step.cpp) on normalized x, y [B, T, d] with per-token loss
  /// weights w_tok [B·T] (valid / n_valid).
  StepResult sparse_step(const at::Tensor& x, const at::Tensor& y, const at::Tensor& w_tok,
                         double n_valid, const at::Tensor& mask, const at::Tensor& dead,
                         const LossSettings& ls);
  /// Which entries of z [N, S] fire (bool [N, S]) for gating norms n [S] and TopK k.
  at::Tensor active_entries(const at::Tensor& z, const at::Tensor& n, std::int64_t k) const;
  void check_input(const at::Tensor& x, const char* what) const;
  /// Sums over the model group into `out`: l_sparsity (this rank's share + l_s_whole, a term of
  /// the whole dictionary, counted by rank 0), l_p, L0 from out.fired; then out.loss.
  void finish_sums(StepResult& out, double n_valid, double l_s_local, double l_s_whole,
                   double l_p_local) const;
  std::int64_t resolve_k(std::int64_t k) const { return k > 0 ? k : cfg_.top_k; }

  at::Tensor W_Q_, W_K_, b_Q_, b_K_, W_V_, b_V_, W_O_, b_D_, ln_q_, ln_k_, log_threshold_;
  at::Tensor gW_Q_, gW_K_, gb_Q_, gb_K_, gW_V_, gb_V_, gW_O_, gb_D_, gln_q_, gln_k_,
      glog_threshold_;
  at::Tensor rotary_cos_, rotary_sin_;  ///< [n_ctx, rotary_dim / 2], fp64 (undefined: no RoPE)
};

}  // namespace saes::dictionaries
