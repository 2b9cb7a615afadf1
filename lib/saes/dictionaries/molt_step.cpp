// MoLT's fused training step with a manual backward (spec §2.5 with the generic loss of §2.1,
// §3.4, §3.5). Per rank group g with c transforms of rank r, the decoder is two GEMMs over the
// c·r rows of V and U:
//   P = x Vᵀ [N, c·r] (row (i, j): (V_i x)_j),  A = P ⊙ f_i,  x̂ = Σ_g A U_rows + b_D,
// and the backward reuses P: with G = ∂L/∂x̂ and R = G U_rowsᵀ, ∂L/∂f_i = Σ_j (P ⊙ R)_(i, j),
// ∂L/∂U_rows = Aᵀ G, ∂L/∂V_rows = (f ⊙ R)ᵀ x. ‖U_i V_i‖_F's gradient comes from the r×r Grams.
#include <algorithm>
#include <tuple>

#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/addmm.h>
#include <ATen/ops/bmm.h>
#include <ATen/ops/count_nonzero.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/gt.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/mv.h>
#include <ATen/ops/relu.h>
#include <ATen/ops/sum.h>
#include <ATen/ops/threshold_backward.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>

#include "saes/core/error.h"
#include "saes/dictionaries/activation_functions.h"
#include "saes/dictionaries/dense_step_parts.h"
#include "saes/dictionaries/molt.h"

namespace saes::dictionaries {

StepResult MixtureOfLinearTransforms::forward_backward(const TrainBatch& batch,
                                                       const LossSettings& ls) {
  const at::Tensor x_raw = hook_rows(batch.acts, cfg_.hook_point_in);
  const at::Tensor y_raw = hook_rows(batch.acts, cfg_.hook_point_out);
  check_activations(x_raw, "x");
  check_activations(y_raw, "label");
  SAES_CHECK(x_raw.size(0) == y_raw.size(0), DataError, "x has {} tokens but label has {}",
             x_raw.size(0), y_raw.size(0));
  StepState st;
  st.x = normalize(x_raw, cfg_.hook_point_in);
  st.y = normalize(y_raw, cfg_.hook_point_out);
  st.mask = batch.mask.defined() ? batch.mask.flatten() : batch.mask;
  std::tie(st.w, st.n_valid) = detail::token_weights(st.mask, st.x.size(0), st.x.options());
  st.dead = batch.dead;
  st.k = is_topk_family(cfg_.act_fn) ? resolve_k(ls.current_k) : 0;
  st.gr = grams();
  st.h = at::addmm(b_E_, st.x, W_E_);
  return uses_sparse_step(st.h, st.k) ? sparse_step(st, ls) : dense_step(st, ls);
}

bool MixtureOfLinearTransforms::uses_sparse_step(const at::Tensor& h, std::int64_t k) const {
  const SparseKernels mode = cfg_.sparse_kernels;
  if (mode == SparseKernels::kOff || cfg_.act_fn == ActFn::kJumpRelu) return false;
  if (mode == SparseKernels::kOn) return true;
  if (auto_prefers_dense()) return false;
  if (is_topk_family(cfg_.act_fn)) {
    return static_cast<double>(k) / static_cast<double>(d_sae()) <= kSparseMaxDensity;
  }
  // ReLU: the density over the whole dictionary, so every rank of a model group agrees
  const std::vector<double> counts = sum_over_features(
      {static_cast<double>(at::count_nonzero(at::gt(h, 0)).item<std::int64_t>()),
       static_cast<double>(h.numel())});
  return counts[0] <= kSparseMaxDensity * std::max(counts[1], 1.0);
}

void MixtureOfLinearTransforms::add_norm_grads(const Grams& gr, const at::Tensor& gn) {
  // n_i = ‖U_i V_i‖_F ⇒ ∂n_i/∂U_i = U_i (V_i V_iᵀ)/n_i, ∂n_i/∂V_i = (U_iᵀ U_i) V_i / n_i
  // (0 for a zero transform, as torch's norm)
  const at::Tensor coef = at::where(at::gt(gr.n, 0), gn / gr.n, at::zeros_like(gr.n));
  for (std::size_t g = 0; g < groups_.size(); ++g) {
    const at::Tensor cg = coef.narrow(0, groups_[g].local_offset, groups_[g].local_count)
                              .view({-1, 1, 1});
    gU_[g].add_(at::bmm(U_[g], gr.gv[g]) * cg);
    gV_[g].add_(at::bmm(gr.gu[g], V_[g]) * cg);
  }
}

void MixtureOfLinearTransforms::finish_step(StepResult& out, const at::Tensor& fired,
                                            double n_valid) const {
  out.fired = fired;
  const std::vector<double> sums = sum_over_features(
      {out.l_sparsity, out.l_p, static_cast<double>(at::sum(out.fired).item<std::int64_t>())});
  out.l_sparsity = sums[0];
  out.l_p = sums[1];
  out.l0 = sums[2] / n_valid;
  out.loss = out.l_rec + out.l_sparsity + out.l_p + out.l_aux;
}

StepResult MixtureOfLinearTransforms::dense_step(const StepState& st, const LossSettings& ls) {
  const at::Tensor &x = st.x, &y = st.y, &w = st.w, &mask = st.mask, &h = st.h;
  const double n_valid = st.n_valid;
  const std::int64_t N = x.size(0), S = local_d_sae(), k = st.k;
  const bool gating = cfg_.sparsity_include_decoder_norm;
  const bool jump = cfg_.act_fn == ActFn::kJumpRelu;
  const Grams& gr = st.gr;
  const at::Tensor& n = gr.n;
  const at::Tensor ng = gating ? n : at::Tensor();
  StepResult out;
  out.n_tokens = n_valid;

  // ---- forward: encode as an SAE ----
  at::Tensor s, active, f;
  if (cfg_.act_fn == ActFn::kRelu) {
    f = at::relu(h);  // gating is a no-op for ReLU (§2.1)
  } else {
    s = gating ? h * n : h;
    active = select_mask(s, k);
    f = h * active;
  }

  // ---- Aux-K's selection (spec §3.5): the dead features' TopK on the gated scores ----
  at::Tensor f_aux, active_aux;
  if (ls.auxk_coefficient > 0 && is_topk_family(cfg_.act_fn) && st.dead.defined()) {
    const at::Tensor dead = st.dead.to(h.device()).to(at::kBool).reshape({S});
    const auto n_dead = static_cast<std::int64_t>(  // over the whole dictionary
        sum_over_features({static_cast<double>(at::sum(dead).item<std::int64_t>())})[0]);
    if (n_dead > 0) {
      const at::Tensor deadf = dead.to(h.scalar_type());
      active_aux = select_mask(gating ? h * (deadf * n) : h * deadf, std::min(ls.k_aux, n_dead));
      f_aux = h * active_aux;
    }
  }

  // ---- decode (and Aux-K's ê) from P = x V_rowsᵀ per group ----
  std::vector<at::Tensor> P(groups_.size()), Ur(groups_.size());
  at::Tensor xhat = at::zeros({N, cfg_.d_model}, x.options());
  at::Tensor ehat = f_aux.defined() ? at::zeros_like(xhat) : at::Tensor();
  const auto group_acts = [&](const at::Tensor& p, const at::Tensor& feats, const Group& G) {
    return (p.view({N, G.local_count, G.rank}) *
            feats.narrow(1, G.local_offset, G.local_count).unsqueeze(2))
        .view({N, -1});
  };
  for (std::size_t g = 0; g < groups_.size(); ++g) {
    P[g] = at::mm(x, v_rows(g).t());
    Ur[g] = u_rows(g);
    xhat.addmm_(group_acts(P[g], f, groups_[g]), Ur[g]);
    if (ehat.defined()) ehat.addmm_(group_acts(P[g], f_aux, groups_[g]), Ur[g]);
  }
  sum_over_features(xhat);
  if (b_D_.defined()) xhat.add_(b_D_);
  const at::Tensor r = xhat - y;
  // l_rec = Σ_t w_t Σ_d r², ∂/∂x̂ = 2 w_t r_t (spec §2.1)
  out.l_rec = at::sum(at::sum(r * r, {1}, true) * w).item<double>();
  at::Tensor G = r * (2.0 * w);
  at::Tensor Gq;
  if (ehat.defined()) {
    sum_over_features(ehat);
    const at::Tensor q = ehat + r;  // ê − e, e = label − x̂
    out.l_aux = ls.auxk_coefficient * at::sum(at::sum(q * q, {1}, true) * w).item<double>();
    Gq = q * (2.0 * ls.auxk_coefficient * w);  // ∂L_aux/∂ê
    if (!ls.auxk_detach_residual) G = G + Gq;  // e depends on x̂ too
  }

  // ---- backward through the decoder, per group ----
  at::Tensor df = at::empty({N, S}, x.options());
  at::Tensor df_aux = Gq.defined() ? at::empty({N, S}, x.options()) : at::Tensor();
  for (std::size_t g = 0; g < groups_.size(); ++g) {
    const Group& Gr = groups_[g];
    const std::int64_t c = Gr.local_count, rk = Gr.rank;
    const at::Tensor R = at::mm(G, Ur[g].t());  // [N, c·r]
    df.narrow(1, Gr.local_offset, c).copy_(at::sum((P[g] * R).view({N, c, rk}), {2}));
    at::Tensor dU = at::mm(group_acts(P[g], f, Gr).t(), G);  // [c·r, d]
    at::Tensor dP = group_acts(R, f, Gr);
    if (Gq.defined()) {
      const at::Tensor Rq = at::mm(Gq, Ur[g].t());
      df_aux.narrow(1, Gr.local_offset, c).copy_(at::sum((P[g] * Rq).view({N, c, rk}), {2}));
      dU.addmm_(group_acts(P[g], f_aux, Gr).t(), Gq);
      dP.add_(group_acts(Rq, f_aux, Gr));
    }
    gU_[g].copy_(dU.view({c, rk, cfg_.d_model}).transpose(1, 2));
    gV_[g].view({c * rk, cfg_.d_model}).copy_(at::mm(dP.t(), x));
  }

  // ---- the penalty, through the activation into h ----
  at::Tensor gn = at::zeros_like(n);  // ∂L/∂n (decoder norms)
  out.l_sparsity = detail::dense_penalty(
      ls, f, w, ng, jump, df, gn, [this](at::Tensor& t) { sum_over_features(t); },
      shard_.rank() == 0);
  if (jump) {
    glog_threshold_.copy_(jumprelu_log_threshold_grad(gating ? df / n : df, s, log_threshold_,
                                                      cfg_.jumprelu_threshold_window));
  }
  at::Tensor dh = cfg_.act_fn == ActFn::kRelu ? at::threshold_backward(df, f, 0) : df * active;
  if (df_aux.defined()) dh.add_(df_aux.mul_(active_aux));
  if (jump && ls.lp_coefficient > 0) {
    out.l_p = detail::dense_lp(ls.lp_coefficient, h, w, n, log_threshold_, glog_threshold_, gn, dh);
  }

  // ---- into the parameters ----
  at::mm_out(gW_E_, x.t(), dh);
  at::sum_out(gb_E_, dh, {0});
  add_norm_grads(gr, gn);
  if (b_D_.defined()) at::sum_out(gb_D_, G, {0});

  // ---- metrics ----
  finish_step(out,
              mask.defined()
                  ? at::mv(at::gt(f, 0).to(w.scalar_type()).t(), (w * n_valid).view({N}))
                        .round()
                        .to(at::kLong)
                  : at::count_nonzero(f, at::IntArrayRef{0}),
              n_valid);
  out.feature_acts = f;
  out.reconstructed = xhat;
  out.label = y;
  return out;
}

}  // namespace saes::dictionaries
