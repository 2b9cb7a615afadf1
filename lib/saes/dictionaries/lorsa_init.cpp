// Lorsa's initialization: the random init, decoder norm and bias inits, the exact fold, and the
// model-informed inits of spec §4 steps 5 and 8 — Q/K copied from the model's attention layer
// (initialize_lorsa_with_mhsa) and W_V / W_O in each model head's active subspace
// (initialize_W_D_with_active_subspace).
#include <ATen/TensorOperators.h>
#include <ATen/core/grad_mode.h>
#include <ATen/core/Generator.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/linalg_svd.h>
#include <ATen/ops/linalg_vector_norm.h>
#include <ATen/ops/matmul.h>
#include <ATen/ops/repeat_interleave.h>
#include <ATen/ops/tensor.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "saes/core/error.h"
#include "saes/dictionaries/lorsa.h"

namespace saes::dictionaries {
namespace {

at::Tensor cpu_double(const at::Tensor& t) { return t.to(at::kCPU).to(at::kDouble); }

/// Rows of `t` [n, d] scaled to norm 1 (zero rows stay zero).
at::Tensor unit_rows(const at::Tensor& t) {
  return t / at::linalg_vector_norm(t, 2, {1}, true).clamp_min(1e-12);
}

/// Index of the model's head dim that each Lorsa head dim takes: both RoPE layouts rotate the
/// pairs (a, b) with frequency j the same way, adjacent pairs at (2j, 2j+1), halves at
/// (j, j + R/2), so converting one into the other permutes the first R dims of q and k alike.
at::Tensor rope_permutation(std::int64_t d_head, std::int64_t rotary_dim, bool from_adjacent,
                            bool to_adjacent) {
  std::vector<std::int64_t> perm(static_cast<std::size_t>(d_head));
  for (std::int64_t i = 0; i < d_head; ++i) perm[static_cast<std::size_t>(i)] = i;
  if (from_adjacent != to_adjacent) {
    const std::int64_t half = rotary_dim / 2;
    for (std::int64_t j = 0; j < half; ++j) {
      const std::int64_t a = to_adjacent ? 2 * j : j, b = to_adjacent ? 2 * j + 1 : j + half;
      perm[static_cast<std::size_t>(a)] = from_adjacent ? 2 * j : j;
      perm[static_cast<std::size_t>(b)] = from_adjacent ? 2 * j + 1 : j + half;
    }
  }
  return at::tensor(perm, at::TensorOptions().dtype(at::kLong));
}

}  // namespace

void LowRankSparseAttention::init_with_attention(const AttentionLayer& a) {
  static constexpr const char* kKey = "initializer.initialize_lorsa_with_mhsa";
  const std::int64_t H = cfg_.n_qk_heads, D = cfg_.d_qk_head;
  SAES_CHECK(H % a.n_heads() == 0, ConfigError,
             "{}: sae.n_qk_heads {} must be a multiple of the {} heads of {} (each model head is "
             "repeated n_qk_heads / n_heads times)",
             kKey, H, a.n_heads(), a.source);
  SAES_CHECK(D == a.d_head(), ConfigError, "{}: sae.d_qk_head {} must equal the head width {} of {}",
             kKey, D, a.d_head(), a.source);
  const bool model_qk_norm = a.q_norm.defined();
  SAES_CHECK(!cfg_.use_post_qk_ln || model_qk_norm, ConfigError,
             "{}: {} has no QK-norm to copy; set sae.use_post_qk_ln: false", kKey, a.source);
  SAES_CHECK(cfg_.use_post_qk_ln || !model_qk_norm, ConfigError,
             "{}: {} normalizes q and k per head (QK-norm); set sae.use_post_qk_ln: true and "
             "sae.normalization_type: RMS",
             kKey, a.source);
  SAES_CHECK(!model_qk_norm || cfg_.eps == a.qk_norm_eps, ConfigError,
             "{}: sae.eps {} differs from the QK-norm epsilon {} of {}", kKey, cfg_.eps,
             a.qk_norm_eps, a.source);
  if (a.rotary) {
    SAES_CHECK(cfg_.positional_embedding_type == "rotary" && cfg_.rotary_dim == a.rotary_dim,
               ConfigError,
               "{}: {} rotates {} dims of each head (RoPE); set sae.positional_embedding_type: "
               "rotary and sae.rotary_dim: {}",
               kKey, a.source, a.rotary_dim, a.rotary_dim);
    SAES_CHECK(cfg_.rotary_base == a.rotary_base, ConfigError,
               "{}: sae.rotary_base {} differs from the RoPE base {} of {}", kKey, cfg_.rotary_base,
               a.rotary_base, a.source);
    const bool same_ntk =
        cfg_.use_NTK_by_parts_rope == a.ntk_by_parts &&
        (!a.ntk_by_parts ||
         (cfg_.NTK_by_parts_factor == a.ntk_factor &&
          cfg_.NTK_by_parts_low_freq_factor == a.ntk_low_freq_factor &&
          cfg_.NTK_by_parts_high_freq_factor == a.ntk_high_freq_factor &&
          cfg_.old_context_len == a.ntk_old_context_len));
    SAES_CHECK(same_ntk, ConfigError,
               "{}: sae.use_NTK_by_parts_rope and its factors must match {} (use_NTK_by_parts_rope "
               "{}, factor {}, low {}, high {}, old_context_len {})",
               kKey, a.source, a.ntk_by_parts, a.ntk_factor, a.ntk_low_freq_factor,
               a.ntk_high_freq_factor, a.ntk_old_context_len);
  } else {
    SAES_CHECK(cfg_.positional_embedding_type == "none", ConfigError,
               "{}: {} has no RoPE (its positions are in the residual stream); set "
               "sae.positional_embedding_type: none",
               kKey, a.source);
  }
  SAES_CHECK(std::abs(attn_scale() - a.attn_scale) <= 1e-9 * a.attn_scale, ConfigError,
             "{}: sae.attn_scale {} differs from the {} that {} divides its scores by", kKey,
             attn_scale(), a.attn_scale, a.source);
  const at::NoGradGuard no_grad;
  const at::Tensor perm = rope_permutation(D, a.rotary_dim, a.rotary_adjacent_pairs,
                                           cfg_.rotary_adjacent_pairs);
  const std::int64_t repeat = H / a.n_heads();
  // q = x̂·W + b on the model's input x̂; this Lorsa reads x = f_in·x̂.
  const double f_in = dataset_scale(cfg_.hook_point_in);
  const auto heads = [&](const at::Tensor& t, int dim) {  // this rank's QK heads
    return local_features(at::repeat_interleave(cpu_double(t).index_select(dim, perm), repeat, 0),
                          0);
  };
  W_Q_.copy_(heads(a.W_Q, 2) / f_in);
  W_K_.copy_(heads(a.W_K, 2) / f_in);
  b_Q_.copy_(heads(a.b_Q, 1));
  b_K_.copy_(heads(a.b_K, 1));
  if (model_qk_norm) {  // q and k before the norm equal the model's: its weights copy as they are
    ln_q_.copy_(heads(a.q_norm, 1));
    ln_k_.copy_(heads(a.k_norm, 1));
  }
}

void LowRankSparseAttention::init_decoder_in_active_subspace(const at::Tensor& x_normalized,
                                                             const at::Tensor& /*label*/,
                                                             std::int64_t /*d_active*/,
                                                             const AttentionLayer* attention) {
  static constexpr const char* kKey = "initializer.initialize_W_D_with_active_subspace";
  SAES_CHECK(attention != nullptr, ConfigError,
             "{}: a lorsa's subspaces come from the model's attention heads (set "
             "initializer.model_layer and model)",
             kKey);
  const AttentionLayer& a = *attention;
  const std::int64_t H = cfg_.n_qk_heads, G = ov_group_size(), d = cfg_.d_model;
  SAES_CHECK(H % a.n_heads() == 0, ConfigError,
             "{}: sae.n_qk_heads {} must be a multiple of the {} heads of {} (the OV heads of QK "
             "head g belong to model head g / (n_qk_heads / n_heads))",
             kKey, H, a.n_heads(), a.source);
  const at::NoGradGuard no_grad;
  const at::Tensor x = cpu_double(x_normalized.reshape({-1, d}));
  // the model head's value space has rank d_head: directions past it carry no data
  const std::int64_t k = std::min(cfg_.d_qk_head, a.d_head());
  SAES_CHECK(x.size(0) >= k, DataError, "{}: the first batch has {} tokens, fewer than {}", kKey,
             x.size(0), k);
  at::Tensor W_V = cpu_double(W_V_), W_O = cpu_double(W_O_);
  const std::int64_t per_head = (H / a.n_heads()) * G;  // OV heads per model head
  // this rank's OV heads [first, last) of the whole dictionary's
  const std::int64_t first = feature_offset(), last = first + local_d_sae();
  for (std::int64_t h = first / per_head; h * per_head < last; ++h) {
    const at::Tensor Vh = cpu_double(a.W_V[h]);  // [d, d_head]
    at::Tensor projected = at::matmul(at::matmul(x, Vh), Vh.t());
    projected = projected - projected.mean({0}, true);
    const at::Tensor basis = std::get<2>(at::linalg_svd(projected, false)).narrow(0, 0, k);
    const std::int64_t begin = std::max(first, h * per_head) - first;
    const std::int64_t count = std::min(last, (h + 1) * per_head) - first - begin;
    const at::Tensor v = at::matmul(W_V.narrow(0, begin, count).narrow(1, 0, k), basis);
    const at::Tensor o = at::matmul(at::matmul(v, Vh), cpu_double(a.W_O[h]));
    W_V.narrow(0, begin, count).copy_(unit_rows(v));
    W_O.narrow(0, begin, count).copy_(unit_rows(o));
  }
  W_V_.copy_(W_V);
  W_O_.copy_(W_O);
}

void LowRankSparseAttention::init_parameters(const RandomInit& init, at::Generator& gen) {
  const at::NoGradGuard no_grad;
  const double d = static_cast<double>(cfg_.d_model), S = static_cast<double>(d_sae());
  const double H = static_cast<double>(cfg_.n_qk_heads), D = static_cast<double>(cfg_.d_qk_head);
  // torch's xavier_uniform_ on [H, d, D]: fan_in = d·D, fan_out = H·D
  const double xavier = std::sqrt(6.0 / (d * D + H * D));
  const auto draw_cpu = [&](at::Tensor& p, auto&& fill) {
    // drawn in float32 on the generator's device for the whole dictionary, then cast and this
    // rank's heads taken: the same weights for every dtype, device and mesh
    std::vector<std::int64_t> whole = p.sizes().vec();
    whole[0] *= shard_.sharded() ? shard_.size() : 1;
    at::Tensor t = at::empty(whole, at::TensorOptions().dtype(at::kFloat).device(gen.device()));
    fill(t);
    p.copy_(local_features(t, 0));
  };
  draw_cpu(W_Q_, [&](at::Tensor& t) { t.uniform_(-xavier, xavier, gen); });
  draw_cpu(W_K_, [&](at::Tensor& t) { t.uniform_(-xavier, xavier, gen); });
  draw_cpu(W_V_, [&](at::Tensor& t) { t.normal_(0.0, 1.0 / std::sqrt(S), gen); });
  draw_cpu(W_O_, [&](at::Tensor& t) { t.normal_(0.0, 1.0 / std::sqrt(d), gen); });
  b_Q_.zero_();
  b_K_.zero_();
  b_V_.zero_();
  if (b_D_.defined()) b_D_.zero_();
  if (ln_q_.defined()) {
    ln_q_.fill_(1.0);
    ln_k_.fill_(1.0);
  }
  if (log_threshold_.defined()) fill_log_threshold(log_threshold_, init);
}

void LowRankSparseAttention::set_decoder_to_fixed_norm(double value, bool /*exact*/) {
  const at::NoGradGuard no_grad;
  const double mean =
      sum_over_features({decoder_norm().sum().item<double>()})[0] / static_cast<double>(d_sae());
  SAES_CHECK(mean > 0, DataError, "lorsa set_decoder_to_fixed_norm: W_O is zero");
  W_O_.mul_(value / mean);
}

void LowRankSparseAttention::init_decoder_bias_with_mean(const at::Tensor& label_normalized) {
  SAES_CHECK(b_D_.defined(), ConfigError,
             "init_decoder_bias_with_mean needs use_decoder_bias: true");
  const at::NoGradGuard no_grad;
  b_D_.copy_(label_normalized.reshape({-1, cfg_.d_model}).mean({0}));
}

void LowRankSparseAttention::init_encoder_bias_with_mean_hidden_pre(
    const at::Tensor& x_normalized) {
  const at::NoGradGuard no_grad;
  b_V_.sub_(hidden_pre(x_normalized).reshape({-1, local_d_sae()}).mean({0}));
}

void LowRankSparseAttention::rescale_for_fold(bool fold) {
  const at::NoGradGuard no_grad;
  const double f_in = dataset_scale(cfg_.hook_point_in);
  const double f_out = dataset_scale(cfg_.hook_point_out);
  const double a = fold ? f_in : 1.0 / f_in;
  const double b = fold ? 1.0 / f_out : f_out;
  W_Q_.mul_(a);
  W_K_.mul_(a);
  W_V_.mul_(a);
  W_O_.mul_(b);
  if (b_D_.defined()) b_D_.mul_(b);
  if (log_threshold_.defined() && cfg_.sparsity_include_decoder_norm) {
    log_threshold_.add_(std::log(b));  // θ·n unchanged: n scaled by b
  }
}

}  // namespace saes::dictionaries
