// Transformer: one architecture-neutral decoder-only forward pass with TransformerLens hook points
// (capture, replace, early stop). Weights come in engine names from a loader (llama2c_loader,
// hf_*); this file knows no file format.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <map>
#include <string>
#include <vector>

#include "saes/core/dtype.h"
#include "saes/lm/hooks.h"
#include "saes/lm/model_config.h"
#include "saes/lm/weight_source.h"

namespace saes::lm {

struct TransformerOptions {
  DType dtype = DType::kFloat32;  ///< float32, float16 or bfloat16; weights are converted on load
  c10::Device device = c10::Device(c10::DeviceType::CPU);
};

enum class GradMode {
  kInference,  ///< c10::InferenceMode: fastest; outputs are inference tensors (clone() them before
               ///< using them in an autograd graph that saves them)
  kNoGrad,     ///< at::NoGradGuard: ordinary tensors without history
  kEnabled,    ///< autograd records the forward (e.g. attribution through the model)
};

/// The prompt-dependent nonlinear parts of a forward that circuit tracing holds fixed (issue #19,
/// the local replacement model): every attention layer's probabilities and every norm's
/// 1/denominator. A forward with `record` fills `values`; later forwards with record false use
/// them (for any batch size when they were recorded on one row), so that, apart from the MLPs, the
/// forward is linear in the residual stream (LayerNorm still subtracts the mean, a linear map).
/// Keys: "blocks.L.attn.pattern" [batch, heads, seq, seq] float32 (after the mask and softmax),
/// "<norm>.scale" [batch, seq, 1] float32 for every norm of the forward (blocks.L.ln1, ln2, the
/// post norms, ln_final). Values carry no autograd history. QK-norms only feed the patterns, so
/// they need no entry.
struct FrozenState {
  bool record = true;
  std::map<std::string, at::Tensor> values;
};

/// Engine weight names (shapes with d_q = n_heads*d_head, d_kv = n_kv_heads*d_head; matrices in
/// nn.Linear orientation [out, in]); entries marked "opt" exist only when the spec says so:
///   embed.W_E [d_vocab, d_model]; pos_embed.W_pos [n_ctx, d_model] (learned positions)
///   blocks.L.ln1.w [d_model], blocks.L.ln1.b (LayerNorm); same for ln2 and ln_final
///   blocks.L.attn.W_Q [d_q, d_model], W_K/W_V [d_kv, d_model], b_Q/b_K/b_V (opt, qkv_bias)
///   blocks.L.attn.W_O [d_model, d_q], b_O (opt, attn_out_bias)
///   blocks.L.mlp.W_in [d_mlp, d_model], W_gate [d_mlp, d_model] (gated act), W_out [d_model,
///   d_mlp], b_in/b_out (+ b_gate when gated) (opt, mlp_bias); unembed.W_U [d_vocab, d_model]
///   (absent when tied), b_U (opt); blocks.L.attn.q_norm.w / k_norm.w [d_head] (qk_norm);
///   blocks.L.ln1_post.w / ln2_post.w (post_norms). Norm weights (*.w) hold offset + w where the
///   spec has a norm_weight_offset (Gemma), in float32.
/// Rotary q/k rows are in the layout the spec's rope_style expects.
std::vector<std::pair<std::string, std::vector<int64_t>>> expected_weights(
    const TransformerSpec& spec);

class Transformer {
 public:
  /// Reads every weight in expected_weights(spec) from `source` (error naming a missing tensor or a
  /// wrong shape), converts to options.dtype/device. Throws ConfigError for an invalid spec.
  Transformer(TransformerSpec spec, WeightSource& source, TransformerOptions options = {});

  /// tokens: [batch, seq_len] int64 (any device; moved to device()). attention_mask: null (all
  /// real) or [batch, seq_len] integer/bool, 1 = real token. Padding may be on the right or the
  /// left; real tokens never attend to padding, and rotary/learned positions count from each row's
  /// first real token (HF's position_ids = cumsum(mask) - 1), so padding does not change real
  /// tokens' values. Returns captured hook name -> value ([batch, seq_len, ...] in dtype(), on
  /// device()). Hook names are validated first (ConfigError listing the valid ones); the forward
  /// stops after the deepest captured hook; with nothing captured nothing runs.
  /// `frozen` (optional): record the patterns and norm scales into it, or run with them (see
  /// FrozenState); the sequence length must then match the recorded one (DataError otherwise).
  std::map<std::string, at::Tensor> forward(const at::Tensor& tokens,
                                            const at::Tensor* attention_mask, const HookSet& hooks,
                                            GradMode grad_mode = GradMode::kInference,
                                            FrozenState* frozen = nullptr) const;

  /// Convenience: forward capturing only "logits" [batch, seq_len, d_vocab].
  at::Tensor logits(const at::Tensor& tokens, const at::Tensor* attention_mask = nullptr) const;

  /// All hook names of this model, in execution order.
  std::vector<std::string> hook_names() const { return hook_names_for(spec_); }
  const TransformerSpec& spec() const { return spec_; }
  DType dtype() const { return options_.dtype; }
  c10::Device device() const { return options_.device; }
  /// An engine weight by name (see expected_weights); throws ConfigError when absent.
  const at::Tensor& weight(const std::string& name) const;
  const std::map<std::string, at::Tensor>& weights() const { return weights_; }
  /// blocks.`layer`.hook_mlp_out for `normalized`, values of blocks.`layer`.ln2.hook_normalized
  /// ([..., d_model], before the norm's weight): the norm's weight and bias, then the MLP. Runs
  /// no hooks (model-informed dictionary inits probe the MLP with it).
  at::Tensor mlp_of_normalized(int64_t layer, const at::Tensor& normalized) const;
  /// The logit lens of residual-stream vectors [..., d_model]: each vector through ln_final as the
  /// model applies it to one position (normalized by its own RMS / LayerNorm statistics, then the
  /// norm's weight and bias) and the unembedding with its bias; no final soft-capping (the
  /// original's DLA: TransformerLens' ln_final + unembed). Runs no hooks.
  at::Tensor logits_of_residual(const at::Tensor& residual) const;

 private:
  struct Run;
  void run_forward(Run& run) const;
  at::Tensor attention(Run& run, int64_t layer, const at::Tensor& normalized) const;
  /// The MLP block's output: mlp_core, then ln2_post where the model has sandwich norms.
  at::Tensor mlp(Run& run, int64_t layer, const at::Tensor& normalized) const;
  at::Tensor mlp_core(Run& run, int64_t layer, const at::Tensor& normalized) const;
  /// ln_final-normalized rows → logits (with the final soft-capping when `softcap`).
  at::Tensor unembed(const at::Tensor& final_normalized, bool softcap = true) const;
  /// RMSNorm over the last dim of per-head q or k with the weight `name` (QK-norm).
  at::Tensor head_norm(const std::string& name, const at::Tensor& x) const;
  at::Tensor normalize(Run& run, const std::string& prefix, const at::Tensor& x) const;
  at::Tensor apply_norm_weight(const std::string& prefix, const at::Tensor& normalized) const;
  at::Tensor optional_weight(const std::string& name) const;

  TransformerSpec spec_;
  TransformerOptions options_;
  std::map<std::string, at::Tensor> weights_;
  at::Tensor inv_freq_;  ///< [rotary_dim / 2] float32 on device(), rotary models only
  at::Tensor inv_freq_local_;  ///< the sliding layers' own frequencies (spec.local_rope)
  double embed_scale_ = 1.0;   ///< spec.embed_scale rounded to the model dtype
};

}  // namespace saes::lm
