// Lorsa's sparse training step: the attention side (Q, K, V → z) through autograd, the decoder
// side on f's active entries only with the sparse kernels of the SAE step (sparse_kernels.h,
// sparse_step_parts.h), then ∂L/∂z at those entries back through the autograd graph.
#include <ATen/TensorOperators.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/gt.h>
#include <ATen/ops/nonzero.h>
#include <ATen/ops/linalg_vector_norm.h>
#include <ATen/ops/sum.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>
#include <c10/core/GradMode.h>

#include "saes/core/error.h"
#include "saes/dictionaries/lorsa.h"
#include "saes/dictionaries/sparse_kernels.h"
#include "saes/dictionaries/sparse_step_parts.h"

namespace saes::dictionaries {

StepResult LowRankSparseAttention::sparse_step(const at::Tensor& x, const at::Tensor& y,
                                               const at::Tensor& w_tok, double n_valid,
                                               const at::Tensor& mask, const at::Tensor& dead,
                                               const LossSettings& ls) {
  const std::int64_t N = x.size(0) * x.size(1), S = local_d_sae(), d = cfg_.d_model;
  distributed::Communicator* group = shard_.sharded() ? shard_.group : nullptr;
  const auto opt = x.options();
  const bool gating = cfg_.sparsity_include_decoder_norm;
  const bool gated = gating && cfg_.act_fn != ActFn::kRelu;  // gating is a no-op for ReLU (§2.1)

  const c10::AutoGradMode grad_mode(true);
  const auto leaf = [](const at::Tensor& t) {
    return t.defined() ? t.detach().requires_grad_(true) : t;
  };
  const Weights w{leaf(W_Q_), leaf(W_K_), leaf(b_Q_), leaf(b_K_), leaf(W_V_),
                  leaf(b_V_), W_O_,       b_D_,       leaf(ln_q_), leaf(ln_k_)};
  const at::Tensor z = attend(w, x, mask).first.reshape({N, S});

  // ---- select on the gated scores (padding rows zeroed: they never fire), decode ----
  const at::NoGradGuard no_grad;
  const at::Tensor n = at::linalg_vector_norm(W_O_, 2, {1}, false);
  at::Tensor score = z.detach() * w_tok.gt(0).to(opt).unsqueeze(1);
  if (gated) score = score * n;
  const detail::Selected m =
      detail::finish(detail::candidates(cfg_.act_fn, score, resolve_k(ls.current_k), group),
                     gated ? n : at::Tensor(), {});
  const SparseActs& a = m.a;
  at::Tensor xhat = sparse_decode(a, W_O_, {});
  sum_over_features(xhat);  // partial decodes of each rank's OV heads
  if (b_D_.defined()) xhat = xhat + b_D_;
  const at::Tensor yr = y.reshape({N, d});
  const at::Tensor r = xhat - yr;
  const at::Tensor wt = w_tok.unsqueeze(1);
  StepResult out;
  out.n_tokens = n_valid;
  out.l_rec = at::sum(at::sum(r * r, {1}, true) * wt).item<double>();
  at::Tensor G = r * (2.0 * wt);  // ∂L/∂x̂

  // ---- Aux-K (spec §3.5) over the dead OV heads' columns only ----
  detail::Selected aux;
  at::Tensor Gq;
  if (ls.auxk_coefficient > 0 && is_topk_family(cfg_.act_fn) && dead.defined()) {
    const at::Tensor dead_idx = at::nonzero(dead.to(x.device()).to(at::kBool).reshape({S})).squeeze(1);
    const auto n_dead =
        static_cast<std::int64_t>(sum_over_features({static_cast<double>(dead_idx.numel())})[0]);
    if (n_dead > 0) {
      aux = detail::finish(detail::candidates(cfg_.act_fn, score.index_select(1, dead_idx),
                                              std::min(ls.k_aux, n_dead), group),
                           gated ? n : at::Tensor(), dead_idx);
      aux.a.n_features = S;
      at::Tensor q = sparse_decode(aux.a, W_O_, {});
      sum_over_features(q);
      q = q + r;  // ê − e
      out.l_aux = ls.auxk_coefficient * at::sum(at::sum(q * q, {1}, true) * wt).item<double>();
      Gq = q * (2.0 * ls.auxk_coefficient * wt);
      if (!ls.auxk_detach_residual) G = G + Gq;
    }
  }

  // ---- backward into f's entries, then z through the attention graph ----
  at::Tensor df = sparse_row_dot(a, G, W_O_);
  at::Tensor gn = at::zeros_like(n);
  const bool penalised = ls.sparsity != SparsityPenalty::kNone && ls.l1_coefficient != 0;
  const double l_s_share = detail::penalty(
      ls, a, w_tok, gating ? n.index_select(0, a.indices) : at::Tensor(), df, gn,
      [this](at::Tensor& t) { sum_over_features(t); }, shard_.rank() == 0, n_valid);
  const at::Tensor dz_entries = df.mul_(m.active);
  at::Tensor dz = at::zeros({N, S}, opt);
  dz.index_put_({a.rows, a.indices}, dz_entries);
  if (Gq.defined()) {  // a dead head may also be among the main entries: accumulate
    dz.index_put_({aux.a.rows, aux.a.indices},
                  sparse_row_dot(aux.a, Gq, W_O_).mul_(aux.active), /*accumulate=*/true);
  }
  {
    const c10::AutoGradMode backward_mode(true);
    z.backward(dz);
  }
  take_grads(w);  // the attention side's leaves (W_O is no leaf here: written below)

  // ---- the decoder's gradients by scatter-add over the active entries ----
  if (Gq.defined()) {
    sparse_weight_grad(gW_O_, at::cat({a.rows, aux.a.rows + N}), at::cat({a.indices, aux.a.indices}),
                       at::cat({a.values, aux.a.values}), at::cat({G, Gq}));
  } else {
    sparse_weight_grad(gW_O_, a.rows, a.indices, a.values, G);
  }
  if (penalised && gating) {
    gW_O_.add_(W_O_ * at::where(at::gt(n, 0), gn / n, at::zeros_like(n)).unsqueeze(1));
  }
  if (b_D_.defined()) at::sum_out(gb_D_, G, {0});

  // ---- results ----
  const at::Tensor counted = m.active * (w_tok * n_valid).index_select(0, a.rows);
  out.fired = sparse_feature_sum(a.indices, counted, S).round().to(at::kLong);
  finish_sums(out, n_valid, l_s_share, 0.0, 0.0);
  out.sparse_feature_acts = m.a;
  out.reconstructed = xhat;
  out.label = yr;
  return out;
}

}  // namespace saes::dictionaries
