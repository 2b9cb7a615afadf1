// MoLT's sparse training step for k-sparse activations (TopK, BatchTopK, sparse ReLU): the
// encoder GEMM is the only dense product; the transforms, ∂L/∂f, Aux-K and every weight gradient
// touch only f's active entries (molt_kernels.h, sparse_kernels.h). Same maths as the dense step.
#include <algorithm>
#include <utility>

#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/nonzero.h>
#include <ATen/ops/sum.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>

#include "saes/dictionaries/molt.h"
#include "saes/dictionaries/molt_kernels.h"
#include "saes/dictionaries/sparse_kernels.h"
#include "saes/dictionaries/sparse_step_parts.h"

namespace saes::dictionaries {

StepResult MixtureOfLinearTransforms::sparse_step(const StepState& st, const LossSettings& ls) {
  const at::Tensor &x = st.x, &y = st.y, &w = st.w, &n = st.gr.n;
  const std::int64_t N = x.size(0), S = local_d_sae();
  distributed::Communicator* group = shard_.sharded() ? shard_.group : nullptr;
  const bool gating = cfg_.sparsity_include_decoder_norm;
  const bool gated = gating && cfg_.act_fn != ActFn::kRelu;  // a no-op for ReLU (§2.1)
  detail::MoltTransforms T0{U_, V_, {}, {}};
  for (const Group& g : groups_) T0.offset.push_back(g.local_offset);
  const detail::MoltTransforms T = detail::with_transposed(std::move(T0));  // once per step
  StepResult out;
  out.n_tokens = st.n_valid;

  // ---- forward: select on the gated scores, the active transforms only ----
  const at::Tensor score = gated ? st.h * n : st.h;
  const detail::Selected m =
      detail::finish(detail::candidates(cfg_.act_fn, score, st.k, group), gated ? n : at::Tensor(), {});
  const SparseActs& a = m.a;
  at::Tensor xhat = at::zeros_like(x);
  const at::Tensor p = detail::molt_sparse_forward(a, x, T, xhat);
  sum_over_features(xhat);
  if (b_D_.defined()) xhat.add_(b_D_);
  const at::Tensor r = xhat - y;
  out.l_rec = at::sum(at::sum(r * r, {1}, true) * w).item<double>();
  at::Tensor G = r * (2.0 * w);

  // ---- Aux-K (spec §3.5) over the dead features' columns only ----
  detail::Selected aux;
  at::Tensor Gq, p_aux;
  if (ls.auxk_coefficient > 0 && is_topk_family(cfg_.act_fn) && st.dead.defined()) {
    const at::Tensor dead_idx =
        at::nonzero(st.dead.to(x.device()).to(at::kBool).reshape({S})).squeeze(1);
    const auto n_dead =
        static_cast<std::int64_t>(sum_over_features({static_cast<double>(dead_idx.numel())})[0]);
    if (n_dead > 0) {
      aux = detail::finish(detail::candidates(cfg_.act_fn, score.index_select(1, dead_idx),
                                              std::min(ls.k_aux, n_dead), group),
                           gated ? n : at::Tensor(), dead_idx);
      aux.a.n_features = S;
      at::Tensor q = at::zeros_like(x);
      p_aux = detail::molt_sparse_forward(aux.a, x, T, q);
      sum_over_features(q);
      q.add_(r);  // ê − e
      out.l_aux = ls.auxk_coefficient * at::sum(at::sum(q * q, {1}, true) * w).item<double>();
      Gq = q * (2.0 * ls.auxk_coefficient * w);
      if (!ls.auxk_detach_residual) G = G + Gq;
    }
  }

  // ---- backward into f's entries and the transforms ----
  for (std::size_t g = 0; g < groups_.size(); ++g) {
    gU_[g].zero_();
    gV_[g].zero_();
  }
  at::Tensor df = detail::molt_sparse_backward(a, p, x, G, T, gU_, gV_);
  at::Tensor gn = at::zeros_like(n);
  out.l_sparsity = detail::penalty(
      ls, a, w.view({N}), gating ? n.index_select(0, a.indices) : at::Tensor(), df, gn,
      [this](at::Tensor& t) { sum_over_features(t); }, shard_.rank() == 0);
  at::Tensor rows = a.rows, features = a.indices, dh = df.mul_(m.active);
  if (Gq.defined()) {
    const at::Tensor df_aux = detail::molt_sparse_backward(aux.a, p_aux, x, Gq, T, gU_, gV_);
    rows = at::cat({rows, aux.a.rows});
    features = at::cat({features, aux.a.indices});
    dh = at::cat({dh, df_aux.mul_(aux.active)});
  }

  // ---- into the encoder by scatter-add over the active entries ----
  sparse_weight_grad(gW_E_.t(), rows, features, dh, x);
  gb_E_.copy_(sparse_feature_sum(features, dh, S));
  if (gating) add_norm_grads(st.gr, gn);
  if (b_D_.defined()) at::sum_out(gb_D_, G, {0});

  // ---- metrics ----
  const at::Tensor counted =
      st.mask.defined() ? m.active * (w.view({N}) * st.n_valid).index_select(0, a.rows) : m.active;
  finish_step(out, sparse_feature_sum(a.indices, counted, S).round().to(at::kLong), st.n_valid);
  out.sparse_feature_acts = m.a;
  out.reconstructed = xhat;
  out.label = y;
  return out;
}

}  // namespace saes::dictionaries
