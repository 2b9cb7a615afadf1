// SparseAutoEncoder's sparse training step for k-sparse activations (TopK, BatchTopK, sparse
// ReLU): the encoder GEMM is the only dense product; decode, ∂L/∂f, Aux-K and both weight
// gradients touch only the active entries (sparse_kernels.h). Same maths as the dense step.
#include <algorithm>
#include <functional>

#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/bincount.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/div.h>
#include <ATen/ops/gt.h>
#include <ATen/ops/nonzero.h>
#include <ATen/ops/pow.h>
#include <ATen/ops/sort.h>
#include <ATen/ops/sum.h>
#include <ATen/ops/tanh.h>
#include <ATen/ops/topk.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>

#include "saes/core/error.h"
#include "saes/dictionaries/activation_functions.h"
#include "saes/dictionaries/dense_kernels.h"
#include "saes/dictionaries/feature_parallel.h"
#include "saes/dictionaries/sae.h"
#include "saes/dictionaries/sparse_kernels.h"
#include "saes/dictionaries/sparse_step_parts.h"

namespace saes::dictionaries {

using detail::candidates;
using detail::finish;
using detail::penalty;
using detail::Selected;

StepResult SparseAutoEncoder::sparse_step(const StepState& st, const LossSettings& ls) {
  const at::Tensor &x = st.x, &y = st.y, &w = st.w, &n = st.n, &h = st.pre;
  const std::int64_t N = x.size(0), S = local_d_sae();
  distributed::Communicator* group = shard_.sharded() ? shard_.group : nullptr;
  const bool gating = cfg_.sparsity_include_decoder_norm;
  const bool relu = cfg_.act_fn == ActFn::kRelu;
  StepResult out;
  out.n_tokens = st.n_valid;

  // ---- forward: select (on s = h·n, computed in place: h is not needed again), decode ----
  const bool gated = gating && !relu;  // gating is a no-op for ReLU (§2.1)
  const at::Tensor score = gated ? h.mul_(n) : h;
  Selected m = finish(candidates(cfg_.act_fn, score, st.k, group), gated ? n : at::Tensor(), {});
  const SparseActs& a = m.a;
  const at::Tensor xhat = sparse_decode_sum(a, b_D_);
  const at::Tensor r = xhat - y;
  out.l_rec = at::sum(at::sum(r * r, {1}, true) * w).item<double>();
  at::Tensor G = r * (2.0 * w);

  // ---- Aux-K (spec §3.5) over the dead features' columns only ----
  Selected aux;
  at::Tensor Gq;
  if (ls.auxk_coefficient > 0 && is_topk_family(cfg_.act_fn) && st.dead.defined()) {
    const at::Tensor dead_idx =
        at::nonzero(st.dead.to(x.device()).to(at::kBool).reshape({S})).squeeze(1);
    const auto n_dead =
        static_cast<std::int64_t>(sum_over_features({static_cast<double>(dead_idx.numel())})[0]);
    if (n_dead > 0) {
      const at::Tensor s_aux = score.index_select(1, dead_idx);
      aux = finish(candidates(cfg_.act_fn, s_aux, std::min(ls.k_aux, n_dead), group),
                   gated ? n : at::Tensor(), dead_idx);
      aux.a.n_features = S;
      const at::Tensor q = sparse_decode_sum(aux.a, {}).add_(r);  // ê − e
      out.l_aux = ls.auxk_coefficient * at::sum(at::sum(q * q, {1}, true) * w).item<double>();
      Gq = q * (2.0 * ls.auxk_coefficient * w);
      if (!ls.auxk_detach_residual) G = G + Gq;
    }
  }

  // ---- backward into f's entries ----
  at::Tensor df = sparse_row_dot(a, G, W_D_);
  at::Tensor gn = at::zeros_like(n);
  const bool penalised = ls.sparsity != SparsityPenalty::kNone && ls.l1_coefficient != 0;
  const at::Tensor w_tok = w.view({N});
  out.l_sparsity = penalty(
      ls, a, w_tok, gating ? n.index_select(0, a.indices) : at::Tensor(), df, gn,
      [this](at::Tensor& t) { sum_over_features(t); }, shard_.rank() == 0);
  at::Tensor rows = a.rows, features = a.indices, dh = df.mul_(m.active);
  if (Gq.defined()) {
    rows = at::cat({rows, aux.a.rows});
    features = at::cat({features, aux.a.indices});
    dh = at::cat({dh, sparse_row_dot(aux.a, Gq, W_D_).mul_(aux.active)});
  }

  // ---- into the parameters: scatter-adds into the used rows/columns ----
  sparse_weight_grad(gW_E_.t(), rows, features, dh, x);
  gb_E_.copy_(sparse_feature_sum(features, dh, S));
  if (Gq.defined()) {
    sparse_weight_grad(gW_D_, at::cat({a.rows, aux.a.rows + N}),
                       at::cat({a.indices, aux.a.indices}), at::cat({a.values, aux.a.values}),
                       at::cat({G, Gq}));
  } else {
    sparse_weight_grad(gW_D_, a.rows, a.indices, a.values, G);
  }
  if (penalised && gating) {
    gW_D_.add_(W_D_ * at::where(at::gt(n, 0), gn / n, at::zeros_like(n)).unsqueeze(1));
  }
  if (b_D_.defined()) at::sum_out(gb_D_, G, {0});

  // ---- metrics ----
  const at::Tensor counted =
      st.mask.defined() ? m.active * (w_tok * st.n_valid).index_select(0, a.rows) : m.active;
  out.fired = sparse_feature_sum(a.indices, counted, S).round().to(at::kLong);
  finish_sums(out, st.n_valid);
  out.sparse_feature_acts = m.a;
  out.reconstructed = xhat;
  out.label = y;
  return out;
}

}  // namespace saes::dictionaries
