// SparseAutoEncoder's dense training step on the CPU (float/double, no GLU encoder): the GEMMs as
// in dense_step, and everything element-wise over [tokens × d_sae] in the two fused sweeps of
// dense_kernels.h (f, fire counts and penalty; ∂h with the penalty, STE, L_p and Aux-K pieces).
#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/exp.h>
#include <ATen/ops/gt.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/sum.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros_like.h>

#include "saes/dictionaries/activation_functions.h"
#include "saes/dictionaries/dense_kernels.h"
#include "saes/dictionaries/sae.h"

namespace saes::dictionaries {

bool SparseAutoEncoder::fused_dense_applies() const {
  return dense_backend_ == SparseBackend::kAuto && !W_E_glu_.defined() && dense_kernels_apply(W_E_);
}

StepResult SparseAutoEncoder::fused_dense_step(const StepState& st, const LossSettings& ls) {
  const at::Tensor &x = st.x, &y = st.y, &n = st.n, &h = st.pre;
  const std::int64_t N = x.size(0);
  const bool gating = cfg_.sparsity_include_decoder_norm;
  const bool jump = cfg_.act_fn == ActFn::kJumpRelu;
  StepResult out;
  out.n_tokens = st.n_valid;

  // ---- forward: the selection (TopK family), then f, fire counts and penalty in one sweep ----
  DenseSweep sw;
  sw.act_fn = cfg_.act_fn;
  sw.h = h.contiguous();
  if (gating) sw.gate = n;  // ReLU's mask ignores it (§2.1); the penalty reads it
  if (jump) {
    sw.theta = at::exp(log_threshold_).to(h.scalar_type());
    if (ls.lp_coefficient > 0) sw.norms = n;
  }
  if (cfg_.act_fn == ActFn::kTopK && !shard_.sharded()) {
    sw.selected = scaled_top_k_mask(h, gating ? n : at::Tensor(), st.k);
  } else if (is_topk_family(cfg_.act_fn)) {
    sw.selected = select_mask(cfg_.act_fn, gating ? h * n : h, st.k);
  }
  sw.w = st.w.reshape({N}).contiguous();
  if (st.mask.defined()) sw.counts = sw.w * st.n_valid;
  sw.loss = &ls;
  sw.window = cfg_.jumprelu_threshold_window;
  const DenseForward fwd = dense_forward(sw);
  const at::Tensor& f = fwd.f;
  const at::Tensor xhat = dense_decode(f);
  const at::Tensor r = xhat - y;
  out.l_rec = at::sum(at::sum(r * r, {1}, true) * st.w).item<double>();
  at::Tensor G = r * (2.0 * st.w);
  const AuxK aux = dense_aux_k(st, h, r, ls);
  out.l_aux = aux.loss;
  if (aux.Gq.defined() && !ls.auxk_detach_residual) G = G + aux.Gq;

  // ---- backward: ∂f by GEMM, then ∂h (in place) and the column sums in one sweep ----
  at::Tensor dh = at::mm(G, W_D_.t());
  const DenseBackward bwd =
      dense_backward(sw, fwd, dh, aux.Gq.defined() ? at::mm(aux.Gq, W_D_.t()) : at::Tensor(),
                     aux.active.defined() ? aux.active.contiguous() : at::Tensor());
  out.l_sparsity = fwd.l_sparsity;
  out.l_p = bwd.l_p;
  if (jump) glog_threshold_.copy_(bwd.glog_threshold);
  at::mm_out(gW_E_, x.t(), dh);
  gb_E_.copy_(bwd.gb_E);
  at::mm_out(gW_D_, f.t(), G);
  if (aux.f.defined()) gW_D_.addmm_(aux.f.t(), aux.Gq);
  // n_i = ‖W_D,i‖ ⇒ ∂n_i/∂W_D,i = W_D,i / n_i (0 for a zero row, as torch)
  gW_D_.add_(W_D_ * at::where(at::gt(n, 0), bwd.gn / n, at::zeros_like(n)).unsqueeze(1));
  if (b_D_.defined()) at::sum_out(gb_D_, G, {0});

  out.fired = fwd.fired;
  finish_sums(out, st.n_valid);
  out.feature_acts = f;
  out.reconstructed = xhat;
  out.label = y;
  return out;
}

}  // namespace saes::dictionaries
