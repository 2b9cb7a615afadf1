// CrossCoder's fused training step with a manual backward (spec §2.3 with the generic loss of
// §2.1, §3.4, §3.5). The heads share a = Σ_h (x_h W_E[h] + b_E[h]); head h selects on a·n_h and
// decodes f_h = a·mask_h with W_D[h]. Every term is averaged over the heads, so ∂L/∂a is the sum
// over heads of each head's share; the masked token mean (a 1-D mask over tokens) is the same
// token weighting as the SAE's — the original's mask-shape bug does not arise. Under head
// parallelism each rank runs its own heads: ∂L/∂a, the loss terms, log θ's gradient and the union
// of active features are summed (maxed) over the head group.
#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/amax.h>
#include <ATen/ops/bmm.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/count_nonzero.h>
#include <ATen/ops/gt.h>
#include <ATen/ops/matmul.h>
#include <ATen/ops/mv.h>
#include <ATen/ops/relu.h>
#include <ATen/ops/stack.h>
#include <ATen/ops/sum.h>
#include <ATen/ops/threshold_backward.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>

#include "saes/core/error.h"
#include "saes/dictionaries/activation_functions.h"
#include "saes/dictionaries/crosscoder.h"
#include "saes/dictionaries/dense_step_parts.h"
#include "saes/dictionaries/sparse_kernels.h"
#include "saes/dictionaries/sparse_step_parts.h"
#include "saes/distributed/communicator.h"

namespace saes::dictionaries {

StepResult CrossCoder::forward_backward(const TrainBatch& batch, const LossSettings& ls) {
  SAES_CHECK(ls.auxk_coefficient <= 0, UnsupportedError,
             "trainer.auxk_coefficient: Aux-K is not defined for a crosscoder");
  const at::Tensor x = prepare_input(batch.acts);  // [N, H, d]
  const at::Tensor y = prepare_label(batch.acts);  // [H, N, d]
  const std::int64_t N = x.size(0), H = n_local_heads();
  const at::Tensor mask = batch.mask.defined() ? batch.mask.flatten() : batch.mask;
  const auto [w, n_valid] = detail::token_weights(mask, N, x.options());  // [N, 1]
  const bool jump = cfg_.act_fn == ActFn::kJumpRelu;
  const bool relu = cfg_.act_fn == ActFn::kRelu;
  const std::int64_t k = is_topk_family(cfg_.act_fn) ? resolve_k(ls.current_k) : 0;
  const at::Tensor n = decoder_norm();  // [H, S], differentiable (spec §2.1)
  StepResult out;
  out.n_tokens = n_valid;

  // ---- forward ----
  const at::Tensor a = hidden_pre(x);  // [N, S]
  if (uses_sparse_step(k)) return sparse_step(x, y, a, n, w, n_valid, mask, ls, k);
  std::vector<at::Tensor> scores(H), actives(H), fs(H);
  for (std::int64_t h = 0; h < H; ++h) {
    if (relu) {  // gating is a no-op for ReLU (§2.1): every head has relu(a)
      fs[h] = at::relu(a);
    } else {
      scores[h] = a * n[h];
      actives[h] = select(scores[h], k);
      fs[h] = a * actives[h];
    }
  }
  const at::Tensor F = at::stack(fs);  // [H, N, S]
  at::Tensor xhat = at::bmm(F, W_D_);
  sum_over_features(xhat);
  xhat.add_(b_D_.unsqueeze(1));
  const at::Tensor r = xhat - y;
  // l_rec = (1/H) Σ_h Σ_t w_t Σ_d r², ∂/∂x̂_h = 2 w_t r / H (H: all heads)
  const double inv_h = 1.0 / static_cast<double>(n_heads());
  const at::Tensor l_rec_h = at::sum(at::sum(r * r, {2}, true) * w, {1, 2});  // [H]
  const at::Tensor G = r * (w * (2.0 * inv_h));

  // ---- backward into each head's f, through its activation into a ----
  const at::Tensor dF = at::bmm(G, W_D_.transpose(1, 2));  // [H, N, S]
  at::Tensor gn = at::zeros_like(n);
  LossSettings per_head = ls;  // each head's terms count 1/H
  per_head.l1_coefficient = ls.l1_coefficient * inv_h;
  const auto sum_rows = [this](at::Tensor& t) { sum_over_features(t); };
  at::Tensor da = at::zeros_like(a);
  at::Tensor l0_h = at::zeros({H}, a.options());
  if (jump) glog_threshold_.zero_();
  for (std::int64_t h = 0; h < H; ++h) {
    at::Tensor df = dF[h];
    at::Tensor gn_h = gn[h];
    out.l_sparsity += detail::dense_penalty(per_head, fs[h], w, n[h], jump, df, gn_h, sum_rows,
                                            shard_.rank() == 0);
    if (jump) {
      glog_threshold_.add_(jumprelu_log_threshold_grad(df / n[h], scores[h], log_threshold_,
                                                       cfg_.jumprelu_threshold_window));
    }
    at::Tensor dh = relu ? at::threshold_backward(df, fs[h], 0) : df * actives[h];
    if (jump && ls.lp_coefficient > 0) {
      out.l_p += detail::dense_lp(ls.lp_coefficient * inv_h, a, w, n[h], log_threshold_,
                                  glog_threshold_, gn_h, dh);
    }
    da.add_(dh);
    l0_h[h] = at::sum(at::sum(at::gt(fs[h], 0).to(w.scalar_type()), {1}, true) * w);
  }
  sum_over_heads(da);  // a is shared by all heads: every head rank's share of ∂L/∂a
  if (jump) sum_over_heads(glog_threshold_);

  // ---- into the parameters: a's gradient reaches every head's encoder ----
  gW_E_.copy_(at::matmul(x.transpose(0, 1).transpose(1, 2), da));  // [H, d, S]
  gb_E_.copy_(at::sum(da, {0}).unsqueeze(0).expand_as(gb_E_));
  at::bmm_out(gW_D_, F.transpose(1, 2), G);
  // n_h,i = ‖W_D[h, i]‖ ⇒ ∂n/∂W_D[h, i] = W_D[h, i] / n (0 for a zero row, as torch)
  gW_D_.add_(W_D_ * at::where(at::gt(n, 0), gn / n, at::zeros_like(n)).unsqueeze(2));
  at::sum_out(gb_D_, G, {1});

  // ---- metrics: a feature is active when it is in any head ----
  const at::Tensor f_any = analysis_features(F.transpose(0, 1));  // [N, S]
  const at::Tensor fired =
      mask.defined() ? at::mv(at::gt(f_any, 0).to(w.scalar_type()).t(), (w * n_valid).view({N}))
                           .round()
                           .to(at::kLong)
                     : at::count_nonzero(f_any, at::IntArrayRef{0});
  out.fired = fired;
  const std::vector<double> sums =
      reduce_step_terms(at::sum(l_rec_h).item<double>() * inv_h, {out.l_sparsity, out.l_p},
                        static_cast<double>(at::sum(fired).item<std::int64_t>()));
  out.l_rec = sums[0];
  out.l_sparsity = sums[1];
  out.l_p = sums[2];
  out.l0 = sums[3] / n_valid;
  out.loss = out.l_rec + out.l_sparsity + out.l_p;
  out.metrics = head_metrics(l_rec_h, l0_h);
  out.feature_acts = f_any;
  out.reconstructed = xhat;
  out.label = y;
  return out;
}

}  // namespace saes::dictionaries

namespace saes::dictionaries {

bool CrossCoder::uses_sparse_step(std::int64_t k) const {
  const SparseKernels mode = cfg_.sparse_kernels;
  if (mode == SparseKernels::kOff || !is_topk_family(cfg_.act_fn)) return false;
  if (mode == SparseKernels::kOn) return true;
  if (auto_prefers_dense()) return false;
  return static_cast<double>(k) / static_cast<double>(d_sae()) <= kSparseMaxDensity;
}

StepResult CrossCoder::sparse_step(const at::Tensor& x, const at::Tensor& y, const at::Tensor& a,
                                   const at::Tensor& n, const at::Tensor& w, double n_valid,
                                   const at::Tensor& mask, const LossSettings& ls, std::int64_t k) {
  const std::int64_t N = x.size(0), H = n_local_heads(), S = local_d_sae();
  distributed::Communicator* group = shard_.sharded() ? shard_.group : nullptr;
  const double inv_h = 1.0 / static_cast<double>(n_heads());
  StepResult out;
  out.n_tokens = n_valid;

  // ---- forward: each head's TopK on a·n_h, decoded from its active rows ----
  std::vector<detail::Selected> sel(static_cast<std::size_t>(H));
  std::vector<at::Tensor> heads;
  for (std::int64_t h = 0; h < H; ++h) {
    auto& m = sel[static_cast<std::size_t>(h)];
    m = detail::finish(detail::candidates(cfg_.act_fn, a * n[h], k, group), n[h], {});
    heads.push_back(sparse_decode(m.a, W_D_[h], {}));
  }
  at::Tensor xhat = at::stack(heads);
  sum_over_features(xhat);
  xhat.add_(b_D_.unsqueeze(1));
  const at::Tensor r = xhat - y;
  const at::Tensor l_rec_h = at::sum(at::sum(r * r, {2}, true) * w, {1, 2});  // [H]
  const at::Tensor G = r * (w * (2.0 * inv_h));

  // ---- backward at the active entries of every head ----
  LossSettings per_head = ls;
  per_head.l1_coefficient = ls.l1_coefficient * inv_h;
  const auto sum_rows = [this](at::Tensor& t) { sum_over_features(t); };
  at::Tensor gn = at::zeros_like(n);
  std::vector<at::Tensor> rows, features, dhs;
  // f_h = a·mask_h: a feature's value is a wherever it is active, so the maximum over heads is
  // a on the union of the heads' active entries
  at::Tensor any_active = at::zeros({N * S}, a.options());
  at::Tensor l0_h = at::zeros({H}, a.options());
  const at::Tensor w_flat = w.view({N});
  for (std::int64_t h = 0; h < H; ++h) {
    const auto& m = sel[static_cast<std::size_t>(h)];
    l0_h[h] = at::sum(w_flat.index_select(0, m.a.rows) * m.active);
    at::Tensor df = sparse_row_dot(m.a, G[h], W_D_[h]);
    at::Tensor gn_h = gn[h];
    out.l_sparsity += detail::penalty(per_head, m.a, w.view({N}), n[h].index_select(0, m.a.indices),
                                      df, gn_h, sum_rows, shard_.rank() == 0);
    sparse_weight_grad(gW_D_[h], m.a.rows, m.a.indices, m.a.values, G[h]);
    rows.push_back(m.a.rows);
    features.push_back(m.a.indices);
    dhs.push_back(df.mul_(m.active));
    any_active.index_fill_(0, (m.a.rows * S + m.a.indices).masked_select(m.active.gt(0)), 1.0);
  }
  at::Tensor rows_all = at::cat(rows), features_all = at::cat(features), dh = at::cat(dhs);
  if (shard_.heads_sharded()) {  // ∂L/∂a of every head rank's heads (sparse: their entries)
    rows_all = shard_.head_group->all_gather_variable(rows_all);
    features_all = shard_.head_group->all_gather_variable(features_all);
    dh = shard_.head_group->all_gather_variable(dh);
    shard_.head_group->all_reduce(any_active, distributed::ReduceOp::kMax);
  }
  const at::Tensor gb = sparse_feature_sum(features_all, dh, S);
  for (std::int64_t h = 0; h < H; ++h) {  // a is shared: every head's encoder gets ∂L/∂a
    sparse_weight_grad(gW_E_[h].t(), rows_all, features_all, dh, x.select(1, h));
    gb_E_[h].copy_(gb);
  }
  gW_D_.add_(W_D_ * at::where(at::gt(n, 0), gn / n, at::zeros_like(n)).unsqueeze(2));
  at::sum_out(gb_D_, G, {1});

  // ---- metrics: a feature is active when it is in any head ----
  const at::Tensor fa = a * any_active.view({N, S});
  const at::Tensor fired =
      mask.defined() ? at::mv(at::gt(fa, 0).to(w.scalar_type()).t(), (w * n_valid).view({N}))
                           .round()
                           .to(at::kLong)
                     : at::count_nonzero(fa, at::IntArrayRef{0});
  out.fired = fired;
  const std::vector<double> sums =
      reduce_step_terms(at::sum(l_rec_h).item<double>() * inv_h, {out.l_sparsity},
                        static_cast<double>(at::sum(fired).item<std::int64_t>()));
  out.l_rec = sums[0];
  out.l_sparsity = sums[1];
  out.l0 = sums[2] / n_valid;
  out.loss = out.l_rec + out.l_sparsity;
  out.metrics = head_metrics(l_rec_h, l0_h);
  out.feature_acts = fa;
  out.reconstructed = xhat;
  out.label = y;
  return out;
}

}  // namespace saes::dictionaries
