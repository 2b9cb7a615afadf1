// SparseDictionary: the interface every dictionary variant (SAE/transcoder now; crosscoder, CLT,
// Lorsa, MoLT later, spec §2) implements, plus what they share: parameter handles for the
// optimizer, loss settings and step results of the fused training step, activation normalization
// state (spec §2.1) and the native checkpoint format. The variants live in their own files.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <ATen/core/Tensor.h>

#include "saes/dictionaries/config.h"
#include "saes/dictionaries/feature_parallel.h"
#include "saes/dictionaries/model_init.h"
#include "saes/dictionaries/sparse_kernels.h"

namespace at {
class Generator;
}  // namespace at

namespace saes::dictionaries {

/// Optimizer parameter group (spec §5.1): `others`, or `jumprelu` (log θ, lr × jumprelu_lr_factor).
enum class ParamGroup { kOthers, kJumpRelu };

/// A handle to one trainable parameter and its gradient buffer. Both tensors share storage with
/// the dictionary: the dictionary allocates them once and only ever changes them in place (load,
/// fold, init, forward_backward), so handles stay valid for the dictionary's lifetime; the
/// optimizer updates `value` in place.
struct ParameterRef {
  std::string name;  ///< checkpoint name, e.g. "W_E", "activation_function.log_jumprelu_threshold"
  at::Tensor value;  ///< parameter, cfg dtype/device
  at::Tensor grad;   ///< same shape/dtype/device; written by forward_backward
  ParamGroup group = ParamGroup::kOthers;
  bool clipped = true;  ///< false for the JumpReLU threshold (spec §3.2: excluded from clipping)
  /// The dimension split evenly over the model group under feature parallelism (indexed by
  /// feature; a Lorsa's QK-head tensors by QK head, which carry their OV heads), or -1 for a
  /// tensor every rank holds whole (b_D).
  int feature_dim = -1;
  /// The dimension split evenly over the head group under head parallelism (a crosscoder's
  /// per-head tensors), or -1 for a tensor every head rank holds whole.
  int head_dim = -1;
};

/// Sparsity penalty of spec §3.4 (mirrors training's SparsityLossType plus "none").
enum class SparsityPenalty { kNone, kPower, kTanh, kTanhQuad };

/// Loss terms and their coefficients for one step, as resolved by the trainer (λ already warmed
/// up, k already annealed). A coefficient of 0 switches the term off.
struct LossSettings {
  SparsityPenalty sparsity = SparsityPenalty::kNone;
  double l1_coefficient = 0.0;            ///< λ(t) (spec §5.3)
  std::int64_t p = 1;                     ///< power of the `power` penalty (≥ 1)
  double tanh_stretch_coefficient = 4.0;  ///< c
  double frequency_scale = 0.01;          ///< s of tanh-quad
  double lp_coefficient = 0.0;            ///< JumpReLU pre-activation loss λ_p (spec §3.5)
  double auxk_coefficient = 0.0;          ///< Aux-K α (TopK family; spec §3.5)
  std::int64_t k_aux = 512;
  /// Aux-K: detach the residual e = label − x̂ (OpenAI) instead of letting the Aux-K gradient
  /// flow into the main reconstruction (upstream default, spec §3.5).
  bool auxk_detach_residual = false;
  std::int64_t current_k = 0;  ///< TopK family: k for this step; 0 ⇒ cfg.top_k
};

/// Hook point → activations: what a dictionary reads (input_hooks) and reconstructs
/// (label_hooks), aligned token for token.
using HookActs = std::map<std::string, at::Tensor>;

/// The [n_tokens, d] rows of hook `hook` in `acts` ([batch, context, d] is flattened); DataError
/// naming the hook and the hooks present when it is missing.
at::Tensor hook_rows(const HookActs& acts, const std::string& hook);

/// Inputs of one training step. Activations are RAW (the step normalizes them, spec §2.1).
struct TrainBatch {
  /// Every hook of input_hooks() and label_hooks(): [n_tokens, d_model], or [batch, context,
  /// d_model] for 2-D batches (then `mask` is [batch, context] or [n_tokens]); any float dtype,
  /// any device. An SAE's input and label are one entry when the hooks are equal.
  HookActs acts;
  at::Tensor mask;  ///< optional token mask (bool/float, nonzero = valid; undefined ⇒ all valid)
  /// Aux-K only: optional [n_features()] bool, features currently dead (trainer's tracking,
  /// spec §3.5).
  at::Tensor dead;
  /// Tokens per sequence of a 2-D batch (rows are then batch × context), 0 for 1-D batches.
  std::int64_t context = 0;
};

/// The batch of a one-hook dictionary (SAE, transcoder): {hook_point_in: x, hook_point_out:
/// label} (one entry, x, when the hooks are equal).
TrainBatch single_hook_batch(const SparseDictionaryConfig& cfg, const at::Tensor& x,
                             const at::Tensor& label, const at::Tensor& mask = {});

/// What one forward_backward returns. Tensors live on the dictionary's device/dtype and are
/// detached. Loss values are the terms as added into `loss` (coefficients applied).
struct StepResult {
  double loss = 0.0;
  double l_rec = 0.0;
  double l_sparsity = 0.0;  ///< λ·penalty (0 when none)
  double l_p = 0.0;
  double l_aux = 0.0;
  double n_tokens = 0.0;  ///< valid tokens (mask sum, or rows)
  double l0 = 0.0;        ///< mean #(f > 0) over valid tokens
  /// [n_tokens, n_features()] f in normalized space (masked rows included; a CLT's features
  /// layer-major: feature l·d_sae + i is feature i of layer l); undefined when the step ran the
  /// sparse kernels, which return f as `sparse_feature_acts` instead.
  at::Tensor feature_acts;
  SparseActs sparse_feature_acts;  ///< sparse step: f's active entries (see feature_acts)
  /// x̂ and label in normalized space: [n_tokens, d_model] for one label hook, or layer-first
  /// [n_label_hooks, n_tokens, d_model] (the original's CLT layout) for several.
  at::Tensor reconstructed;
  at::Tensor label;
  at::Tensor fired;  ///< [n_features()] int64: valid tokens with f > 0, per feature
  /// The variant's own per-step metrics, full names (a crosscoder's
  /// crosscoder_metrics/<hook>/{l_rec,l0}): means over the valid tokens, so the trainer reduces
  /// them over data ranks and log windows as the losses.
  std::map<std::string, double> metrics;
};

/// Per feature, how its decoder rows into the label hooks relate pairwise (a crosscoder's heads,
/// the original's decoder_inner_product_matrices / decoder_similarity_matrices): both
/// [local features, H, H] with H = label_hooks().size(), or both undefined for a variant that has
/// no such matrices.
struct DecoderHeadSimilarities {
  at::Tensor inner_products;  ///< W_D[a, i]·W_D[b, i]
  at::Tensor cosines;         ///< the inner products over both norms (norms clamped at 1e-12)
};

/// Random initialization parameters (spec §4 step 2); the initializer maps InitializerConfig.
struct RandomInit {
  double encoder_uniform_bound = 1.0;
  double decoder_uniform_bound = 1.0;
  std::optional<double> log_jumprelu_threshold;  ///< required when act_fn is jumprelu
};

/// Base of all dictionary variants. Not copyable (parameter handles would alias); movable.
///
/// Feature parallelism (`shard` with a model group of M ranks): this rank holds features
/// [feature_offset(), feature_offset() + local_d_sae()) of d_sae — the W_E columns, b_E, W_D rows
/// and thresholds of those features; b_D whole. Every method that mixes features (TopK
/// selection, decode, losses, the training step, save) is then collective over the group and
/// returns what one process would (x̂, losses and L0 of the whole dictionary); feature-indexed
/// results (f, fired, decoder_norm, gradients) are this rank's features only.
class SparseDictionary {
 public:
  explicit SparseDictionary(SparseDictionaryConfig cfg, FeatureShard shard = {});
  virtual ~SparseDictionary() = default;
  SparseDictionary(const SparseDictionary&) = delete;
  SparseDictionary& operator=(const SparseDictionary&) = delete;
  SparseDictionary(SparseDictionary&&) = default;
  SparseDictionary& operator=(SparseDictionary&&) = default;

  /// The config; after fold_activation_scale() its norm_activation reads `inference`.
  const SparseDictionaryConfig& config() const { return cfg_; }
  /// Features of the whole dictionary (all ranks).
  std::int64_t d_sae() const { return cfg_.d_sae(); }
  const FeatureShard& feature_shard() const { return shard_; }
  /// Features held by this rank (d_sae() unless sharded) and the first one's global index.
  std::int64_t local_d_sae() const { return local_d_sae_; }
  std::int64_t feature_offset() const { return shard_.offset(cfg_.d_sae()); }
  /// Collective over the model group: this rank's block `local` (features along `dim`) of every
  /// rank concatenated in feature order. Returns `local` itself when not sharded.
  at::Tensor gather_features(const at::Tensor& local, int dim) const;
  /// This rank's features (along `dim`) of a whole-dictionary tensor: its equal share of that
  /// axis (rank r of M: [r·n/M, (r+1)·n/M), a view), so also a Lorsa's QK heads or a MoLT's
  /// transforms of one rank; an axis of d_sae features split in several feature_blocks(): its
  /// share of every block, in block order.
  at::Tensor local_features(const at::Tensor& full, int dim) const;
  /// Head parallelism (a crosscoder): collective over the head group, this rank's heads (along
  /// `dim`) of every head rank concatenated in head order / this rank's equal share of a whole
  /// tensor's head axis. Identity when the heads are not split.
  at::Tensor gather_heads(const at::Tensor& local, int dim) const;
  at::Tensor local_heads(const at::Tensor& full, int dim) const;
  /// A tensor of parameter `p`'s layout (the parameter, its gradient, an optimizer moment): the
  /// whole one from this rank's part (features, then heads gathered: collective over both
  /// groups) / this rank's part of a whole one.
  at::Tensor gather_parameter(const ParameterRef& p, const at::Tensor& local) const;
  at::Tensor local_parameter(const ParameterRef& p, const at::Tensor& full) const;
  /// True for variants that split their heads over a head group (a crosscoder); make_dictionary
  /// refuses a head group of more than one rank for the others.
  virtual bool splits_heads() const { return false; }
  /// The feature axis as consecutive blocks, each split evenly over the model group: this rank
  /// holds its share of every block (local order: block by block). Default one block of d_sae;
  /// a MoLT: its rank groups. gather_features / local_features follow it.
  virtual std::vector<std::int64_t> feature_blocks() const { return {d_sae()}; }
  /// Metrics of the features' firing frequencies over a log window (freq: [n_features()],
  /// float64, the whole dictionary's features in global order), logged with the trainer's
  /// metrics; default none (a MoLT: its per-rank L0).
  virtual std::map<std::string, double> frequency_metrics(const at::Tensor& freq) const;
  c10::ScalarType dtype() const;
  c10::Device device() const;
  /// `sparse_kernels: auto` keeps the dense path: 16-bit parameters on CUDA, where the dense
  /// products run on tensor cores (docs/benchmarks.md, "CUDA").
  bool auto_prefers_dense() const;

  /// Every trainable parameter in checkpoint order, with its gradient buffer.
  virtual std::vector<ParameterRef> parameters() = 0;
  /// Hook points whose activations this dictionary reads or reconstructs (in ∪ out, no repeats,
  /// inputs first).
  std::vector<std::string> hook_points() const;
  /// Hook points feeding the input / providing the labels, in the variant's order (a CLT: layer
  /// 0..L-1). Everything generic (trainer, norms, init, metrics) iterates over these.
  virtual std::vector<std::string> input_hooks() const = 0;
  virtual std::vector<std::string> label_hooks() const = 0;
  /// The single input / label hook of a one-hook dictionary (SAE, transcoder). Tools that only
  /// handle those call these: UnsupportedError naming the variant and `what` for a multi-hook one.
  std::string input_hook_point(std::string_view what = "this tool") const;
  std::string label_hook_point(std::string_view what = "this tool") const;
  /// Feature groups: 1, or L for a CLT (d_sae features per layer). The trainer, metrics and
  /// dead-feature tracking see n_features() = d_sae() · feature_layers() features.
  virtual std::int64_t feature_layers() const { return 1; }
  /// True when the dictionary mixes the tokens of a sequence (Lorsa's attention): it reads
  /// [batch, context, d_model] activations with their padding mask, never token rows.
  virtual bool reads_sequences() const { return false; }
  std::int64_t n_features() const { return d_sae() * feature_layers(); }

  /// The normalized input / label of RAW per-hook rows in the variant's own layout (the
  /// original's prepare_input / prepare_label): an SAE [n_tokens, d_model]; a CLT input
  /// [n_tokens, L, d_model] and label [L, n_tokens, d_model]. encode/hidden_pre take the input
  /// layout, decode returns the label layout.
  virtual at::Tensor prepare_input(const HookActs& raw) const;
  virtual at::Tensor prepare_label(const HookActs& raw) const;

  // ---- inference (activations already normalized, see normalize()) --------------------------
  /// x: [n_tokens, d_model] → f [n_tokens, d_sae] (decoder-norm gating per spec §2.1); a CLT:
  /// [n_tokens, L, d_model] → [n_tokens, L, d_sae]. k: TopK-family k (0 ⇒ cfg.top_k). No
  /// autograd graph is recorded.
  virtual at::Tensor encode(const at::Tensor& x, std::int64_t k = 0) const = 0;
  /// Pre-activation h [n_tokens, d_sae] (unscaled by decoder norms, GLU applied); a CLT
  /// [n_tokens, L, d_sae].
  virtual at::Tensor hidden_pre(const at::Tensor& x) const = 0;
  /// f (encode's layout) → x̂ (prepare_label's layout).
  virtual at::Tensor decode(const at::Tensor& f) const = 0;
  /// x̂ of features f (encode's layout) encoded from the normalized input x (prepare_input's
  /// layout), in prepare_label's layout: decode(f) for every variant that decodes from f alone;
  /// a MoLT's transforms act on x. Every generic caller reconstructs through this.
  virtual at::Tensor reconstruct(const at::Tensor& x, const at::Tensor& f) const;
  /// The per-token feature activations analysis, evaluation and the trainer's L0 read from
  /// encode's output: f itself by default; a crosscoder's maximum over its heads (the
  /// original's amax), [n_tokens, d_sae].
  virtual at::Tensor analysis_features(const at::Tensor& f) const { return f; }
  /// Decoder norms n_i (spec Appendix E), [d_sae]; a CLT [L, d_sae] (norm over all targets).
  virtual at::Tensor decoder_norm() const = 0;
  /// What each of this rank's features writes, as one d_model vector (the DLA vector of spec
  /// §2.7): [local features, d_model]. An SAE: W_D; a CLT: Σ_{t>=l} W_D[t][l, i] per feature
  /// (layer-major). Analysis reads decoder geometry and the logit lens from it.
  virtual at::Tensor feature_directions() const = 0;
  /// The direct-logit-attribution vectors of this rank's features of feature layer `layer`
  /// (spec §2.7 / §7.4): each [local_d_sae, d_model]; the logit lens of a feature is the sum over
  /// the terms of each term's row through ln_final and the unembedding. Default: one term, the
  /// layer's rows of feature_directions() (SAE W_D, Lorsa W_O); a CLT: W_D[t][layer] for every
  /// target t >= layer (each normalized alone, as the original's DLA does).
  virtual std::vector<at::Tensor> dla_terms(std::int64_t layer) const;

  // ---- circuit tracing (issue #19): the dictionary as a linear read / write of hook values ----
  // After fold_activation_scale (raw activations in and out); unsharded. Variants without these
  // throw UnsupportedError naming the variant.
  /// Rows e_i [indices.numel(), d_model] with pre-activation_i = e_i · x + (a constant), x the raw
  /// value of input_hooks()[layer] (`layer`: the source layer, 0 for a one-hook dictionary).
  virtual at::Tensor encoder_vectors(std::int64_t layer, const at::Tensor& indices) const;
  /// What feature i of source layer `layer` writes per unit of activation into label_hooks()
  /// [target]: [indices.numel(), d_model] (zeros when the feature does not reach that target).
  virtual at::Tensor decoder_vectors(std::int64_t layer, std::int64_t target,
                                     const at::Tensor& indices) const;
  /// How the pre-activations at `position` of features `indices` read the input's positions:
  /// [indices.numel(), context] float weights w with pre-activation_i(position) =
  /// Σ_k w[i][k]·(e_i · x[k]) + (a constant), e_i from encoder_vectors; x_normalized
  /// [1, context, d_model]. Default (per-token dictionaries): one-hot at `position`; Lorsa: its
  /// QK head's attention row (the replacement model freezes it at the prompt's value).
  virtual at::Tensor token_mixing(const at::Tensor& x_normalized, std::int64_t position,
                                  const at::Tensor& indices) const;
  /// One side of the attention score of feature `index`'s QK head at `position` as an affine
  /// map of the raw input there: score(q, k) = (U_q·x[q] + c_q) · (U_k·x[k] + c_k) with
  /// {map U [D, d_model], bias c [D]} of (q, query = true) and (k, false), the score's 1/scale
  /// split evenly between the sides (QK tracing). Default: UnsupportedError naming the variant.
  struct ScoreSide {
    at::Tensor map, bias;
  };
  virtual ScoreSide attention_score_side(std::int64_t index, std::int64_t position,
                                         bool query) const;
  /// Where the pre-activations of `features` (int64 [m], this rank's) at each position come
  /// from, for variants whose features read other tokens (reads_sequences(): Lorsa's z-pattern,
  /// spec §7.2): x [1, context, d_model] normalized → [m, context(q), context(k)], summing over k
  /// to the pre-activation at q. Default: UnsupportedError naming the variant.
  virtual at::Tensor source_contributions(const at::Tensor& x_normalized,
                                          const at::Tensor& features) const;
  /// ‖decoder of each of this rank's features into each label hook‖: [local features (layer-
  /// major), label_hooks().size()]. Default: decoder_norm() as one column (one label hook).
  virtual at::Tensor target_decoder_norms() const;
  /// The H×H decoder matrices of this rank's features (see DecoderHeadSimilarities); default
  /// undefined tensors (analysis then stores none).
  virtual DecoderHeadSimilarities decoder_head_similarities() const { return {}; }

  // ---- training ---------------------------------------------------------------------------
  /// One fused forward + manual backward on RAW activations: normalizes x and label (spec
  /// §2.1; dataset-wise needs set_dataset_norm first), computes loss = l_rec + l_s + l_p + l_aux
  /// (spec §2.1, §3.4, §3.5) and OVERWRITES every parameter's `grad` (no accumulation).
  /// Throws DataError naming both shapes if x/label do not match d_model.
  virtual StepResult forward_backward(const TrainBatch& batch, const LossSettings& s) = 0;

  // ---- initialization hooks (spec §4); variants that cannot do one throw UnsupportedError ---
  virtual void init_parameters(const RandomInit& init, at::Generator& gen) = 0;
  /// W_E ← factor·W_Dᵀ.
  virtual void init_encoder_with_decoder_transpose(double factor);
  /// exact: every decoder row norm = v; else rows with norm > v are scaled down to v.
  virtual void set_decoder_to_fixed_norm(double value, bool exact);
  /// b_D ← mean over tokens of the normalized label (spec §4 "geometric_median"); label in
  /// prepare_label's layout (a CLT: per layer).
  virtual void init_decoder_bias_with_mean(const at::Tensor& label_normalized);
  /// b_E ← b_E − mean_tokens(hidden_pre(x_normalized)); x in prepare_input's layout.
  virtual void init_encoder_bias_with_mean_hidden_pre(const at::Tensor& x_normalized);
  /// Mean over tokens (and label hooks) of Σ_d (decode(encode(x, k)) − label)² on normalized
  /// activations in the prepare_input / prepare_label layouts.
  virtual double reconstruction_loss(const at::Tensor& x_normalized,
                                     const at::Tensor& label_normalized, std::int64_t k) const;

  // ---- model-informed initialization (spec §4 steps 5, 7, 8; training/model_init.h) -------
  // Variants without one throw UnsupportedError naming the variant and the initializer key.
  /// initialize_lorsa_with_mhsa: the query/key side of the model's attention layer (Lorsa).
  virtual void init_with_attention(const AttentionLayer& attention);
  /// initialize_tc_with_mlp: decoder rows from the model's MLP at probe inputs built from one
  /// RAW input batch [n_tokens, d_model] (a transcoder).
  virtual void init_with_mlp(const MlpFunction& mlp, const at::Tensor& x_raw);
  /// initialize_W_D_with_active_subspace on one batch (normalized, prepare_input /
  /// prepare_label layouts): decoder rows confined to the label's top-`d_active` principal
  /// subspace (SAE), or W_V / W_O per model head of `attention` (Lorsa, which needs it).
  virtual void init_decoder_in_active_subspace(const at::Tensor& x_normalized,
                                               const at::Tensor& label_normalized,
                                               std::int64_t d_active,
                                               const AttentionLayer* attention);

  // ---- normalization (spec §2.1) ----------------------------------------------------------
  /// Records n̄_h = mean‖x‖ of hook `hook_point` (must be one of hook_points()).
  void set_dataset_norm(const std::string& hook_point, double norm);
  std::optional<double> dataset_norm(const std::string& hook_point) const;
  const std::map<std::string, double>& dataset_norms() const { return dataset_norms_; }
  /// x · s_h per cfg.norm_activation (token-wise, batch-wise, dataset-wise, inference ⇒ x).
  /// Returns a tensor in the dictionary's dtype/device. Throws ConfigError for dataset-wise
  /// without a recorded norm for `hook_point`.
  at::Tensor normalize(const at::Tensor& x, const std::string& hook_point) const;
  /// The factor normalize() multiplies RAW activations `x` of `hook_point` by: [n, 1] per token
  /// (token-wise), a [1, 1] batch factor (batch-wise), or a 0-d scalar (dataset-wise; 1 for
  /// inference); norms clamped at 1e-12. Dividing normalized outputs by it gives the model's scale.
  at::Tensor normalization_factor(const at::Tensor& x, const std::string& hook_point) const;
  /// Dataset-wise scale s_h = √d_model / n̄_h (1 when folded or not dataset-wise).
  double dataset_scale(const std::string& hook_point) const;

  /// Rewrites the weights to take raw activations (spec §2.1, JumpReLU thresholds rescaled) and
  /// switches norm_activation to inference. Idempotent: a no-op when already folded. Throws
  /// UnsupportedError for token-wise / batch-wise normalization, ConfigError without norms.
  void fold_activation_scale();
  /// Inverse of fold_activation_scale (a no-op when not folded); restores dataset-wise.
  void unfold_activation_scale();
  bool folded() const { return folded_; }

  // ---- checkpoints ------------------------------------------------------------------------
  /// Writes the native safetensors file: the original's tensor names, one 0-d
  /// `dataset_average_activation_norm.<hook>` per recorded norm, and metadata `version`,
  /// `saes_folded` ("true"/"false") and `saes_config` (JSON of the config). Atomic. The file
  /// always holds the whole dictionary: when sharded, every rank of the model group calls save
  /// (it gathers the features) and only ranks with `write` write.
  void save(const std::filesystem::path& path, bool write = true) const;
  /// Reads a file written by save() or by the original (names per spec §2.2/§15) into this
  /// dictionary's parameters (copied and cast in place); a sharded dictionary reads only its
  /// features' slice of each tensor (the file is mapped). Strict (cfg.strict_loading): missing
  /// or unexpected tensors are a DataError; shape mismatches always are. Fold state comes from
  /// `saes_folded` when present, else from cfg.norm_activation == inference.
  void load(const std::filesystem::path& path);

 protected:
  /// Variant-specific rewrite of the fold (spec §2.1) with the dataset scales of its hooks
  /// (dataset_scale(hook), still dataset-wise when called): fold, or its inverse.
  virtual void rescale_for_fold(bool fold) = 0;
  /// log θ ← init.log_jumprelu_threshold (ConfigError when it is missing), if `log_threshold`
  /// is defined (JumpReLU dictionaries).
  static void fill_log_threshold(const at::Tensor& log_threshold, const RandomInit& init);
  /// p ← this rank's part (along `feature_dim`) of U(-bound, bound) drawn on the generator's
  /// device for the whole dictionary's tensor: a seed gives the same dictionary on every mesh
  /// and device.
  void fill_uniform(const at::Tensor& p, int feature_dim, double bound, at::Generator& gen) const;
  /// Extra variant tensors (beyond parameters()) to save; default none.
  virtual std::vector<std::pair<std::string, at::Tensor>> buffers() const { return {}; }
  /// In place: the sum of `t` over the model group (partial decodes, per-token sums over
  /// features); a no-op when not sharded.
  void sum_over_features(at::Tensor& t) const;
  /// The sums of `values` over the model group (one collective); `values` when not sharded.
  std::vector<double> sum_over_features(std::vector<double> values) const;

  SparseDictionaryConfig cfg_;
  FeatureShard shard_;
  std::int64_t local_d_sae_ = 0;

 private:
  std::map<std::string, double> dataset_norms_;
  bool folded_ = false;
};

/// Mean over all tokens (rows) of ‖x‖₂ across `batches` ([n_tokens, d] each): n̄_h of spec §2.1,
/// computed by the caller over the first kDatasetNormBatches batches of the stream.
double average_activation_norm(const std::vector<at::Tensor>& batches);
inline constexpr int kDatasetNormBatches = 8;

}  // namespace saes::dictionaries
