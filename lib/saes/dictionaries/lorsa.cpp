// Lorsa (spec §2.6): parameters, the attention forward (QK-norm, RoPE, causal softmax with a
// padding mask, scalar values per OV head), activation with decoder-norm gating, decode, the
// training step through autograd, initialization and the exact fold.
#include "saes/dictionaries/lorsa.h"

#include <ATen/TensorOperators.h>
#include <ATen/core/Generator.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/_backward.h>
#include <ATen/ops/abs.h>
#include <ATen/ops/pow.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/baddbmm.h>
#include <ATen/ops/cos.h>
#include <ATen/ops/detach.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/eye.h>
#include <ATen/ops/logical_and.h>
#include <ATen/ops/logical_not.h>
#include <ATen/ops/logical_or.h>
#include <ATen/ops/masked_fill.h>
#include <ATen/ops/ne.h>
#include <ATen/ops/outer.h>
#include <ATen/ops/round.h>
#include <ATen/ops/exp.h>
#include <ATen/ops/floor_divide.h>
#include <ATen/ops/full.h>
#include <ATen/ops/gt.h>
#include <ATen/ops/linalg_vector_norm.h>
#include <ATen/ops/log.h>
#include <ATen/ops/matmul.h>
#include <ATen/ops/mean.h>
#include <ATen/ops/normal.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/relu.h>
#include <ATen/ops/requires_grad.h>
#include <ATen/ops/retain_grad.h>
#include <ATen/ops/rsqrt.h>
#include <ATen/ops/scalar_tensor.h>
#include <ATen/ops/sin.h>
#include <ATen/ops/softmax.h>
#include <ATen/ops/sum.h>
#include <ATen/ops/tanh.h>
#include <ATen/ops/tensor.h>
#include <ATen/ops/tril.h>
#include <ATen/ops/triu.h>
#include <ATen/ops/uniform.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>
#include <c10/core/GradMode.h>
#include <fmt/format.h>

#include <cmath>
#include <limits>

#include "saes/core/dtype.h"
#include "saes/core/error.h"
#include "saes/dictionaries/activation_functions.h"
#include "saes/lm/transformer_rotary.h"

namespace saes::dictionaries {
namespace {

void validate(const SparseDictionaryConfig& cfg, const FeatureShard& shard) {
  SAES_CHECK(cfg.sae_type == SaeType::kLorsa, ConfigError,
             "LowRankSparseAttention needs sae_type lorsa");
  SAES_CHECK(cfg.d_model > 0 && cfg.d_sae() >= 1, ConfigError,
             "sae.d_model / expansion_factor: d_sae must be >= 1");
  SAES_CHECK(cfg.n_qk_heads >= 1 && cfg.d_qk_head >= 1, ConfigError,
             "sae.n_qk_heads and sae.d_qk_head: required for lorsa (>= 1), got {} and {}",
             cfg.n_qk_heads, cfg.d_qk_head);
  SAES_CHECK(cfg.d_sae() % cfg.n_qk_heads == 0, ConfigError,
             "sae.n_qk_heads: d_sae {} must be divisible by n_qk_heads {} (ov_group_size = d_sae / "
             "n_qk_heads)",
             cfg.d_sae(), cfg.n_qk_heads);
  SAES_CHECK(cfg.n_ctx >= 1, ConfigError, "sae.n_ctx: required for lorsa (>= 1), got {}",
             cfg.n_ctx);
  SAES_CHECK(!cfg.hook_point_in.empty() && !cfg.hook_point_out.empty() &&
                 cfg.hook_point_in != cfg.hook_point_out,
             ConfigError,
             "sae.hook_point_out: lorsa reads hook_point_in (e.g. blocks.L.ln1.hook_normalized) "
             "and reconstructs another hook (blocks.L.hook_attn_out); got \"{}\" and \"{}\"",
             cfg.hook_point_in, cfg.hook_point_out);
  SAES_CHECK(cfg.positional_embedding_type == "rotary" || cfg.positional_embedding_type == "none",
             ConfigError, "sae.positional_embedding_type: expected rotary or none, got \"{}\"",
             cfg.positional_embedding_type);
  if (cfg.positional_embedding_type == "rotary") {
    SAES_CHECK(cfg.rotary_dim >= 2 && cfg.rotary_dim % 2 == 0 && cfg.rotary_dim <= cfg.d_qk_head,
               ConfigError, "sae.rotary_dim: expected an even number in [2, d_qk_head {}], got {}",
               cfg.d_qk_head, cfg.rotary_dim);
  }
  SAES_CHECK(cfg.rotary_scale == 1, UnsupportedError,
             "sae.rotary_scale: only 1 is supported, got {}", cfg.rotary_scale);
  SAES_CHECK(!cfg.use_post_qk_ln || cfg.normalization_type == std::optional<std::string>("RMS"),
             UnsupportedError,
             "sae.normalization_type: use_post_qk_ln needs normalization_type RMS (the only one the "
             "original implements), got {}",
             cfg.normalization_type.value_or("null"));
  SAES_CHECK(!is_topk_family(cfg.act_fn) || cfg.act_fn == ActFn::kTopK ||
                 cfg.act_fn == ActFn::kBatchTopK,
             ConfigError, "sae.act_fn: lorsa takes relu, jumprelu, topk or batchtopk");
  SAES_CHECK(!is_topk_family(cfg.act_fn) || (cfg.top_k >= 1 && cfg.top_k <= cfg.d_sae()),
             ConfigError, "sae.top_k: expected 1 <= top_k <= d_sae ({}), got {}", cfg.d_sae(),
             cfg.top_k);
  SAES_CHECK(!shard.sharded() || cfg.n_qk_heads % shard.size() == 0, ConfigError,
             "sae.n_qk_heads: {} QK heads do not split over model_parallel_size {} (each rank "
             "holds whole QK heads with their OV heads)",
             cfg.n_qk_heads, shard.size());
}

at::TensorOptions options_of(const SparseDictionaryConfig& cfg) {
  return at::TensorOptions().dtype(to_torch(cfg.dtype)).device(c10::Device(cfg.device));
}

/// ω_j of the rotary tables: base^(-2j/rotary_dim), NTK-by-parts (Llama 3) when enabled.
std::vector<double> inverse_frequencies(const SparseDictionaryConfig& cfg) {
  lm::TransformerSpec spec;
  spec.rotary_dim = cfg.rotary_dim;
  spec.rope_theta = cfg.rotary_base;
  spec.llama3_scaling.enabled = cfg.use_NTK_by_parts_rope;
  spec.llama3_scaling.factor = cfg.NTK_by_parts_factor;
  spec.llama3_scaling.low_freq_factor = cfg.NTK_by_parts_low_freq_factor;
  spec.llama3_scaling.high_freq_factor = cfg.NTK_by_parts_high_freq_factor;
  spec.llama3_scaling.original_max_position_embeddings = cfg.old_context_len;
  return lm::rotary_inverse_frequencies_f64(spec);
}

/// [N] float weights (valid / n_valid) and n_valid of a [B, T] or [B·T] mask (undefined: all).
std::pair<at::Tensor, double> token_weights(const at::Tensor& mask, std::int64_t B, std::int64_t T,
                                            const at::TensorOptions& opt) {
  at::Tensor valid = mask.defined() ? mask.reshape({B * T}).to(opt).ne(0).to(opt)
                                    : at::ones({B * T}, opt);
  const double n_valid = valid.sum().item<double>();
  SAES_CHECK(n_valid > 0, DataError, "lorsa: the batch has no valid token (mask is all zero)");
  return {valid / n_valid, n_valid};
}

}  // namespace

LowRankSparseAttention::LowRankSparseAttention(SparseDictionaryConfig cfg, FeatureShard shard)
    : SparseDictionary(std::move(cfg), shard) {
  validate(cfg_, shard_);
  const auto opt = options_of(cfg_);
  const std::int64_t H = local_qk_heads(), D = cfg_.d_qk_head, S = local_d_sae(), d = cfg_.d_model;
  const auto alloc = [&](at::Tensor& value, at::Tensor& grad, at::IntArrayRef shape) {
    value = at::zeros(shape, opt);
    grad = at::zeros(shape, opt);
  };
  alloc(W_Q_, gW_Q_, {H, d, D});
  alloc(W_K_, gW_K_, {H, d, D});
  alloc(b_Q_, gb_Q_, {H, D});
  alloc(b_K_, gb_K_, {H, D});
  alloc(W_V_, gW_V_, {S, d});
  alloc(b_V_, gb_V_, {S});
  alloc(W_O_, gW_O_, {S, d});
  if (cfg_.use_decoder_bias) alloc(b_D_, gb_D_, {d});
  if (cfg_.use_post_qk_ln) {
    alloc(ln_q_, gln_q_, {H, D});
    alloc(ln_k_, gln_k_, {H, D});
    ln_q_.fill_(1.0);
    ln_k_.fill_(1.0);
  }
  if (cfg_.act_fn == ActFn::kJumpRelu) alloc(log_threshold_, glog_threshold_, {S});
  if (cfg_.positional_embedding_type == "rotary") {
    // computed in float64 and kept so; each forward casts them to the activations' dtype
    const std::vector<double> inv = inverse_frequencies(cfg_);
    const auto f64 = at::TensorOptions().dtype(at::kDouble);
    const at::Tensor omega = at::tensor(at::ArrayRef<double>(inv), f64);
    const at::Tensor pos = at::arange(cfg_.n_ctx, f64);
    const at::Tensor angle = at::outer(pos, omega);  // [n_ctx, rotary_dim / 2]
    rotary_cos_ = at::cos(angle).to(c10::Device(cfg_.device));
    rotary_sin_ = at::sin(angle).to(c10::Device(cfg_.device));
  }
}

double LowRankSparseAttention::attn_scale() const {
  return cfg_.attn_scale.value_or(std::sqrt(static_cast<double>(cfg_.d_qk_head)));
}

std::vector<ParameterRef> LowRankSparseAttention::parameters() {
  std::vector<ParameterRef> out = {
      {"W_Q", W_Q_, gW_Q_, ParamGroup::kOthers, true, 0},
      {"W_K", W_K_, gW_K_, ParamGroup::kOthers, true, 0},
      {"b_Q", b_Q_, gb_Q_, ParamGroup::kOthers, true, 0},
      {"b_K", b_K_, gb_K_, ParamGroup::kOthers, true, 0},
      {"W_V", W_V_, gW_V_, ParamGroup::kOthers, true, 0},
      {"b_V", b_V_, gb_V_, ParamGroup::kOthers, true, 0},
      {"W_O", W_O_, gW_O_, ParamGroup::kOthers, true, 0},
  };
  // feature_dim: the OV-head (feature) axis, and the QK-head axis, which a rank splits with
  // its OV heads (rank r holds QK heads [r·H/M, (r+1)·H/M) and their OV groups)
  if (b_D_.defined()) out.push_back({"b_D", b_D_, gb_D_, ParamGroup::kOthers, true, -1});
  if (ln_q_.defined()) {
    out.push_back({"ln_q.w", ln_q_, gln_q_, ParamGroup::kOthers, true, 0});
    out.push_back({"ln_k.w", ln_k_, gln_k_, ParamGroup::kOthers, true, 0});
  }
  if (log_threshold_.defined()) {
    out.push_back({"activation_function.log_jumprelu_threshold", log_threshold_, glog_threshold_,
                   ParamGroup::kJumpRelu, false, 0});
  }
  return out;
}

std::vector<std::pair<std::string, at::Tensor>> LowRankSparseAttention::buffers() const {
  const auto opt = options_of(cfg_);
  std::vector<std::pair<std::string, at::Tensor>> out;
  const at::Tensor ones = at::ones({cfg_.n_ctx, cfg_.n_ctx}, at::TensorOptions().dtype(at::kBool));
  out.emplace_back("mask", at::tril(ones));
  out.emplace_back("IGNORE", at::scalar_tensor(-std::numeric_limits<double>::infinity(), opt));
  if (rotary_cos_.defined()) {
    // The original's tables repeat each frequency: (d 2) for adjacent pairs, (2 d) for halves.
    const std::int64_t half = cfg_.rotary_dim / 2;
    const auto wide = [&](const at::Tensor& t) {
      const at::Tensor cpu = t.cpu();
      return (cfg_.rotary_adjacent_pairs ? cpu.unsqueeze(-1).expand({cfg_.n_ctx, half, 2})
                                         : cpu.unsqueeze(1).expand({cfg_.n_ctx, 2, half}))
          .reshape({cfg_.n_ctx, cfg_.rotary_dim})
          .to(opt);
    };
    out.emplace_back("rotary_sin", wide(rotary_sin_));
    out.emplace_back("rotary_cos", wide(rotary_cos_));
  }
  return out;
}

void LowRankSparseAttention::check_input(const at::Tensor& x, const char* what) const {
  SAES_CHECK(x.dim() == 3 && x.size(2) == cfg_.d_model, DataError,
             "lorsa {}: expected [batch, context, d_model {}] (Lorsa trains on sequences: "
             "activation_factory.target activations-2d), got shape [{}]",
             what, cfg_.d_model, fmt::join(x.sizes(), ", "));
  SAES_CHECK(x.size(1) <= cfg_.n_ctx, DataError,
             "lorsa {}: context {} is longer than sae.n_ctx {}", what, x.size(1), cfg_.n_ctx);
}

at::Tensor LowRankSparseAttention::prepare_input(const HookActs& raw) const {
  const auto it = raw.find(cfg_.hook_point_in);
  SAES_CHECK(it != raw.end(), DataError, "the activation batch has no hook \"{}\"",
             cfg_.hook_point_in);
  check_input(it->second, "input");
  return normalize(it->second, cfg_.hook_point_in);
}

at::Tensor LowRankSparseAttention::prepare_label(const HookActs& raw) const {
  const auto it = raw.find(cfg_.hook_point_out);
  SAES_CHECK(it != raw.end(), DataError, "the activation batch has no hook \"{}\"",
             cfg_.hook_point_out);
  check_input(it->second, "label");
  return normalize(it->second, cfg_.hook_point_out);
}

LowRankSparseAttention::Weights LowRankSparseAttention::weights() const {
  return {W_Q_, W_K_, b_Q_, b_K_, W_V_, b_V_, W_O_, b_D_, ln_q_, ln_k_};
}

std::pair<at::Tensor, at::Tensor> LowRankSparseAttention::attend(const Weights& w,
                                                                 const at::Tensor& x,
                                                                 const at::Tensor& mask) const {
  check_input(x, "input");
  const std::int64_t B = x.size(0), T = x.size(1), d = cfg_.d_model;
  const std::int64_t H = local_qk_heads(), D = cfg_.d_qk_head, S = local_d_sae(),
                     G = ov_group_size();
  const at::Tensor rows = x.reshape({B * T, d});
  const auto project = [&](const at::Tensor& W, const at::Tensor& b, const at::Tensor& ln) {
    // [B·T, d] · [d, H·D] → [B, T, H, D]
    at::Tensor out = at::matmul(rows, W.permute({1, 0, 2}).reshape({d, H * D})).view({B, T, H, D});
    out = out + b;
    if (ln.defined()) {  // RMS QK-norm per head, with its weight
      out = out * at::rsqrt(at::mean(out * out, {-1}, true) + cfg_.eps) * ln;
    }
    if (rotary_cos_.defined()) {
      const std::int64_t half = cfg_.rotary_dim / 2;
      const at::Tensor cos = rotary_cos_.narrow(0, 0, T).view({1, T, 1, half}).to(out.dtype());
      const at::Tensor sin = rotary_sin_.narrow(0, 0, T).view({1, T, 1, half}).to(out.dtype());
      out = lm::apply_rotary(out, cos, sin, cfg_.rotary_dim,
                             cfg_.rotary_adjacent_pairs ? lm::RopeStyle::kInterleaved
                                                        : lm::RopeStyle::kHalfSplit);
    }
    return out.permute({0, 2, 1, 3});  // [B, H, T, D]
  };
  const at::Tensor q = project(w.W_Q, w.b_Q, w.ln_q);
  const at::Tensor k = project(w.W_K, w.b_K, w.ln_k);
  // scores = causal bias + q·kᵀ / attn_scale in one batched GEMM (no extra passes over the
  // [B, H, T, T] scores, forward or backward)
  const double inf = std::numeric_limits<double>::infinity();
  const at::Tensor causal =
      at::zeros({1, T, T}, x.options()).masked_fill_(at::ones({1, T, T}, x.options().dtype(at::kBool)).triu_(1), -inf);
  at::Tensor scores = at::baddbmm(causal, q.reshape({B * H, T, D}),
                                  k.reshape({B * H, T, D}).transpose(1, 2), 1.0, 1.0 / attn_scale())
                          .view({B, H, T, T});
  if (mask.defined()) {
    // keys that are padding are blocked too, except each query itself (a padding query then
    // stays finite)
    const auto bool_opt = at::TensorOptions().dtype(at::kBool).device(x.device());
    const at::Tensor pad = mask.reshape({B, 1, 1, T}).to(x.device()).eq(0);
    const at::Tensor blocked = pad.logical_and(at::eye(T, bool_opt).view({1, 1, T, T}).logical_not());
    scores = scores.masked_fill(blocked, -inf);
  }
  const at::Tensor A = at::softmax(scores, -1);
  const at::Tensor v = (at::matmul(rows, w.W_V.t()) + w.b_V).view({B, T, H, G});
  const at::Tensor z = at::matmul(A, v.permute({0, 2, 1, 3}))  // [B, H, T, G]
                           .permute({0, 2, 1, 3})
                           .reshape({B, T, S});
  return {z, A};
}

at::Tensor LowRankSparseAttention::attention_pattern(const at::Tensor& x,
                                                     const at::Tensor& mask) const {
  const at::NoGradGuard no_grad;
  return attend(weights(), x.to(device(), dtype()), mask).second;
}

at::Tensor LowRankSparseAttention::z_pattern(const at::Tensor& x, std::int64_t head,
                                             const at::Tensor& mask) const {
  SAES_CHECK(head >= 0 && head < local_d_sae(), DataError,
             "lorsa z_pattern: head {} not in [0, {})", head, local_d_sae());
  const at::NoGradGuard no_grad;
  const at::Tensor xs = x.to(device(), dtype());
  const at::Tensor A = attend(weights(), xs, mask).second;
  const std::int64_t B = xs.size(0), T = xs.size(1);
  const at::Tensor v = (at::matmul(xs.reshape({B * T, cfg_.d_model}), W_V_[head]) + b_V_[head])
                           .view({B, 1, T});
  return A.select(1, head / ov_group_size()) * v;
}

at::Tensor LowRankSparseAttention::source_contributions(const at::Tensor& x,
                                                        const at::Tensor& features) const {
  const at::NoGradGuard no_grad;
  const at::Tensor xs = x.to(device(), dtype());
  SAES_CHECK(xs.dim() == 3 && xs.size(0) == 1, DataError,
             "lorsa source_contributions: expected one context [1, context, d_model], got [{}]",
             fmt::join(xs.sizes(), ", "));
  const at::Tensor ids = features.to(device()).to(at::kLong);
  const at::Tensor A = attend(weights(), xs, at::Tensor()).second[0];  // [H, T, T]
  const at::Tensor rows = xs[0];                                       // [T, d]
  const at::Tensor v = at::matmul(rows, W_V_.index_select(0, ids).t()) + b_V_.index_select(0, ids);
  // [m, T(q), T(k)]: the pattern of each head's QK head times its value at the key
  return A.index_select(0, at::floor_divide(ids, ov_group_size())) * v.t().unsqueeze(1);
}

at::Tensor LowRankSparseAttention::hidden_pre(const at::Tensor& x) const {
  const at::NoGradGuard no_grad;
  return attend(weights(), x.to(device(), dtype()), at::Tensor()).first;
}

at::Tensor LowRankSparseAttention::decoder_norm() const {
  return at::linalg_vector_norm(W_O_, 2, {1}, false);
}

at::Tensor LowRankSparseAttention::active_entries(const at::Tensor& z, const at::Tensor& n,
                                                  std::int64_t k) const {
  if (cfg_.act_fn == ActFn::kRelu) return at::gt(z, 0);  // gating is a no-op for ReLU (§2.1)
  const at::Tensor s = cfg_.sparsity_include_decoder_norm ? z * n : z;
  if (shard_.sharded() && is_topk_family(cfg_.act_fn)) {  // over every rank's OV heads
    return sharded_activation_mask(cfg_.act_fn, s, resolve_k(k), *shard_.group);
  }
  return activation_mask(cfg_.act_fn, s, log_threshold_, resolve_k(k));
}

at::Tensor LowRankSparseAttention::encode(const at::Tensor& x, std::int64_t k) const {
  const at::NoGradGuard no_grad;
  const at::Tensor z = hidden_pre(x);
  const at::Tensor rows = z.reshape({-1, local_d_sae()});
  return (rows * active_entries(rows, decoder_norm(), k)).view(z.sizes());
}

at::Tensor LowRankSparseAttention::decode(const at::Tensor& f) const {
  const at::NoGradGuard no_grad;
  at::Tensor out = at::matmul(f.to(device(), dtype()), W_O_);
  sum_over_features(out);  // partial decodes of each rank's OV heads
  if (b_D_.defined()) out = out + b_D_;
  return out;
}

StepResult LowRankSparseAttention::forward_backward(const TrainBatch& batch,
                                                    const LossSettings& ls) {
  const at::Tensor x = prepare_input(batch.acts);
  const at::Tensor y = prepare_label(batch.acts);
  SAES_CHECK(x.sizes() == y.sizes(), DataError,
             "lorsa: input {} and label {} have shapes [{}] and [{}]", cfg_.hook_point_in,
             cfg_.hook_point_out, fmt::join(x.sizes(), ", "), fmt::join(y.sizes(), ", "));
  const std::int64_t B = x.size(0), T = x.size(1), N = B * T, S = local_d_sae();
  const auto opt = x.options();
  const auto [w_tok, n_valid] = token_weights(batch.mask, B, T, opt);
  if (uses_sparse_step(ls.current_k)) {
    return sparse_step(x, y, w_tok, n_valid, batch.mask, batch.dead, ls);
  }
  const bool gating = cfg_.sparsity_include_decoder_norm;
  const bool jump = cfg_.act_fn == ActFn::kJumpRelu;

  const c10::AutoGradMode grad_mode(true);
  const auto leaf = [](const at::Tensor& t) {
    return t.defined() ? t.detach().requires_grad_(true) : t;
  };
  const Weights w{leaf(W_Q_), leaf(W_K_), leaf(b_Q_), leaf(b_K_), leaf(W_V_),
                  leaf(b_V_), leaf(W_O_), b_D_,       leaf(ln_q_), leaf(ln_k_)};
  const at::Tensor log_theta = leaf(log_threshold_);

  // ---- forward: this rank's OV heads; x̂ is the sum of every rank's partial decode ----
  const at::Tensor z = attend(w, x, batch.mask).first.reshape({N, S});
  const at::Tensor n = at::linalg_vector_norm(w.W_O, 2, {1}, false);  // differentiable (§2.1)
  at::Tensor active, zs;
  {
    const at::NoGradGuard no_grad;
    // padding positions never fire: their scores are zeroed before the selection
    zs = z.detach() * w_tok.gt(0).to(opt).unsqueeze(1);
    active = active_entries(zs, n.detach(), ls.current_k);
  }
  at::Tensor f = z * active.to(opt);
  if (jump) f.retain_grad();
  const at::Tensor xhat_part = at::matmul(f, w.W_O);
  at::Tensor xhat = xhat_part.detach().clone();
  sum_over_features(xhat);
  if (b_D_.defined()) xhat = xhat + b_D_;
  const at::Tensor yr = y.reshape({N, cfg_.d_model});
  const at::Tensor r = xhat - yr;
  const at::Tensor wt = w_tok.unsqueeze(1);
  const at::Tensor G = r * (2.0 * wt);  // ∂l_rec/∂x̂, the same on every rank
  StepResult out;
  out.n_tokens = n_valid;
  out.l_rec = at::sum(at::sum(r * r, {1}, true) * wt).item<double>();
  // The gradients come from a surrogate whose gradient is the loss's: ⟨x̂_part, G⟩ for l_rec,
  // plus this rank's penalty terms (the p-norm's per-token sum is completed over the ranks).
  at::Tensor surrogate = at::sum(xhat_part * G);
  double l_s_local = 0.0, l_s_whole = 0.0, l_p_local = 0.0;
  at::Tensor G_bias = G;  // ∂L/∂b_D

  // ---- Aux-K (spec §3.5): the TopK of the dead OV heads fits the residual e = y − x̂ ----
  if (ls.auxk_coefficient > 0 && is_topk_family(cfg_.act_fn) && batch.dead.defined()) {
    const at::Tensor dead = batch.dead.to(z.device()).to(at::kBool).reshape({S});
    const auto n_dead = static_cast<std::int64_t>(  // over the whole dictionary
        sum_over_features({static_cast<double>(at::sum(dead).item<std::int64_t>())})[0]);
    if (n_dead > 0) {
      at::Tensor aux_active;
      {
        const at::NoGradGuard no_grad;
        aux_active = active_entries(zs * dead.to(opt), n.detach(), std::min(ls.k_aux, n_dead));
      }
      const at::Tensor e_part = at::matmul(z * aux_active.to(opt), w.W_O);
      at::Tensor q = e_part.detach().clone();
      sum_over_features(q);
      q = q + r;  // ê − e
      out.l_aux = ls.auxk_coefficient * at::sum(at::sum(q * q, {1}, true) * wt).item<double>();
      const at::Tensor Gq = q * (2.0 * ls.auxk_coefficient * wt);
      surrogate = surrogate + at::sum(e_part * Gq);
      if (!ls.auxk_detach_residual) {  // e depends on x̂: the Aux-K gradient reaches it too
        surrogate = surrogate + at::sum(xhat_part * Gq);
        G_bias = G + Gq;
      }
    }
  }

  if (ls.sparsity != SparsityPenalty::kNone && ls.l1_coefficient != 0) {
    const double lam = ls.l1_coefficient;
    const at::Tensor u = gating ? f * n : f;
    if (ls.sparsity == SparsityPenalty::kPower) {
      SAES_CHECK(ls.p >= 1, ConfigError, "trainer.p: expected >= 1, got {}", ls.p);
      const double p = static_cast<double>(ls.p);
      // ‖u_t‖_p over every rank's OV heads; its gradient at a zero entry is 0 (the JumpReLU
      // STE reads inactive entries)
      const at::Tensor P_part = at::sum(at::pow(at::abs(u), p), {1}, true);
      at::Tensor P = P_part.detach().clone();
      sum_over_features(P);
      l_s_whole = lam * at::sum(at::pow(P, 1.0 / p) * wt).item<double>();
      const at::Tensor coef =
          at::where(at::gt(P, 0), at::pow(P, 1.0 / p - 1.0) * (lam / p), at::zeros_like(P)) * wt;
      surrogate = surrogate + at::sum(P_part * coef);
    } else {
      const at::Tensor Tu = at::tanh(u * ls.tanh_stretch_coefficient);
      at::Tensor l_s;
      if (ls.sparsity == SparsityPenalty::kTanh) {
        l_s = lam * at::sum(at::sum(Tu, {1}, true) * wt);
      } else {  // tanh-quad: p̂ over the real tokens of the batch, per OV head
        const at::Tensor ph = at::sum(Tu * wt, {0});
        l_s = lam * at::sum(ph * (1 + ph / ls.frequency_scale));
      }
      l_s_local = l_s.item<double>();
      surrogate = surrogate + l_s;
    }
  }
  if (jump && ls.lp_coefficient > 0) {
    // L_p = λ_p Σ_t w_t Σ_i ReLU(θ_i − z_ti)·n_i (spec §3.5)
    const at::Tensor l_p =
        ls.lp_coefficient * at::sum(at::sum(at::relu(at::exp(log_theta) - z) * n, {1}, true) * wt);
    l_p_local = l_p.item<double>();
    surrogate = surrogate + l_p;
  }
  surrogate.backward();

  // ---- gradients into the buffers ----
  take_grads(w);
  if (b_D_.defined()) at::sum_out(gb_D_, G_bias, {0});
  if (jump) {
    take_grad(glog_threshold_, log_theta);  // L_p's part
    const at::Tensor df = f.grad().defined() ? f.grad() : at::zeros_like(f);
    const at::Tensor nd = n.detach();
    const at::Tensor s = gating ? z.detach() * nd : z.detach();
    glog_threshold_.add_(jumprelu_log_threshold_grad(gating ? df / nd : df, s, log_threshold_,
                                                     cfg_.jumprelu_threshold_window));
  }

  // ---- results ----
  const at::Tensor fd = f.detach();
  const at::Tensor fired_w = at::matmul(at::gt(fd, 0).to(opt).t(), w_tok * n_valid);
  out.fired = fired_w.round().to(at::kLong);
  finish_sums(out, n_valid, l_s_local, l_s_whole, l_p_local);
  out.feature_acts = fd;
  out.reconstructed = xhat;
  out.label = yr;
  return out;
}

void LowRankSparseAttention::finish_sums(StepResult& out, double n_valid, double l_s_local,
                                         double l_s_whole, double l_p_local) const {
  // terms of the whole dictionary (l_s_whole) are counted by model rank 0 only
  const std::vector<double> sums = sum_over_features(
      {l_s_local + (shard_.rank() == 0 ? l_s_whole : 0.0), l_p_local,
       static_cast<double>(at::sum(out.fired).item<std::int64_t>())});
  out.l_sparsity = sums[0];
  out.l_p = sums[1];
  out.l0 = sums[2] / n_valid;
  out.loss = out.l_rec + out.l_sparsity + out.l_p + out.l_aux;
}

void LowRankSparseAttention::take_grad(at::Tensor& grad, const at::Tensor& leaf) {
  if (!leaf.defined() || !leaf.requires_grad()) return;
  if (leaf.grad().defined()) {
    grad.copy_(leaf.grad());
  } else {
    grad.zero_();
  }
}

void LowRankSparseAttention::take_grads(const Weights& w) {
  take_grad(gW_Q_, w.W_Q);
  take_grad(gW_K_, w.W_K);
  take_grad(gb_Q_, w.b_Q);
  take_grad(gb_K_, w.b_K);
  take_grad(gW_V_, w.W_V);
  take_grad(gb_V_, w.b_V);
  take_grad(gW_O_, w.W_O);
  take_grad(gln_q_, w.ln_q);
  take_grad(gln_k_, w.ln_k);
}

bool LowRankSparseAttention::uses_sparse_step(std::int64_t k) const {
  const SparseKernels mode = cfg_.sparse_kernels;
  if (mode == SparseKernels::kOff || cfg_.act_fn == ActFn::kJumpRelu) return false;
  if (mode == SparseKernels::kOn) return true;
  if (auto_prefers_dense() || !is_topk_family(cfg_.act_fn)) return false;
  return static_cast<double>(resolve_k(k)) / static_cast<double>(d_sae()) <= kSparseMaxDensity;
}

}  // namespace saes::dictionaries
