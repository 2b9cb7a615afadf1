// CrossLayerTranscoder's training step: forward, the CLT loss (spec §2.4, §3.4) and the manual
// backward. The decoder norms N that gate the selection and weight the penalty are constants of
// the step (computed without gradient, as upstream).
#include <cmath>

#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/addmm.h>
#include <ATen/ops/bmm.h>
#include <ATen/ops/count_nonzero.h>
#include <ATen/ops/exp.h>
#include <ATen/ops/full.h>
#include <ATen/ops/gt.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/mv.h>
#include <ATen/ops/pow.h>
#include <ATen/ops/sum.h>
#include <ATen/ops/tanh.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>
#include <fmt/ranges.h>

#include "saes/core/error.h"
#include "saes/dictionaries/activation_functions.h"
#include "saes/dictionaries/clt.h"

namespace saes::dictionaries {

StepResult CrossLayerTranscoder::forward_backward(const TrainBatch& batch, const LossSettings& ls) {
  SAES_CHECK(ls.lp_coefficient <= 0, UnsupportedError,
             "trainer.lp_coefficient: the JumpReLU L_p loss is not defined for a clt (as "
             "upstream); set it to 0 or null");
  SAES_CHECK(ls.auxk_coefficient <= 0, UnsupportedError,
             "trainer.auxk_coefficient: Aux-K is not defined for a clt (as upstream); set it to 0 "
             "or null");
  StepState st;
  st.x = prepare_input(batch.acts);  // [N, L, d]
  st.y = prepare_label(batch.acts);  // [L, N, d]
  check_input(st.x, "x");
  const std::int64_t N = st.x.size(0);
  SAES_CHECK(st.y.size(1) == N, DataError, "the input hooks have {} tokens but the labels {}", N,
             st.y.size(1));
  const auto opts = W_E_.options();

  // Token weights w [N] summing to 1 over valid tokens.
  st.n_valid = static_cast<double>(N);
  if (batch.mask.defined()) {
    const at::Tensor m = batch.mask.flatten().to(opts);
    SAES_CHECK(m.numel() == N, DataError, "mask has {} entries, expected {} (one per token)",
               m.numel(), N);
    st.n_valid = at::sum(m).item<double>();
    SAES_CHECK(st.n_valid > 0, DataError, "mask selects no tokens");
    st.w = m / st.n_valid;
    st.mask = batch.mask;
  } else {
    st.w = at::full({N}, 1.0 / static_cast<double>(N), opts);
  }
  st.n = decoder_norm();  // [L, S], a constant of the step
  st.h = hidden_pre(st.x);  // [N, L, S]
  st.s = cfg_.sparsity_include_decoder_norm ? st.h * st.n : st.h;
  st.k = is_topk_family(cfg_.act_fn) ? resolve_k(ls.current_k) : 0;
  return uses_sparse_step(st.s, st.k) ? sparse_step(st, ls) : dense_step(st, ls);
}

StepResult CrossLayerTranscoder::dense_step(const StepState& st, const LossSettings& ls) {
  const at::Tensor &x = st.x, &y = st.y, &w = st.w, &n = st.n, &h = st.h, &s = st.s;
  const std::int64_t N = x.size(0), L = n_layers(), S = local_d_sae(), d = cfg_.d_model;
  const double n_valid = st.n_valid;
  const auto opts = W_E_.options();
  const at::Tensor w3 = w.view({N, 1, 1});

  // ---- forward ----
  const bool gating = cfg_.sparsity_include_decoder_norm;
  const bool jump = cfg_.act_fn == ActFn::kJumpRelu;
  const at::Tensor active = activation_mask(s, st.k);
  const at::Tensor f = h * active;
  const at::Tensor yhat = decode(f);  // [L, N, d]
  const at::Tensor r = yhat - y;
  StepResult out;
  out.n_tokens = n_valid;
  // l_rec = (1/L) Σ_t Σ_n w_n ‖r_tn‖²; ∂/∂ŷ[t] = 2 w r / L
  out.l_rec = at::sum(at::sum(r * r, {2}) * w).item<double>() / static_cast<double>(L);
  const at::Tensor G = r * (w.view({1, N, 1}) * (2.0 / static_cast<double>(L)));

  // ---- backward into f: ∂f[:, l] = Σ_{t>=l} G[t]·W_D[t][l]ᵀ ----
  at::Tensor df = at::zeros({N, L, S}, opts);
  for (std::int64_t t = 0; t < L; ++t) {
    df.narrow(1, 0, t + 1)
        .add_(at::mm(G[t], W_D_[t].view({(t + 1) * S, d}).t()).view({N, t + 1, S}));
  }
  // ---- sparsity penalty on u = f·N (N constant), mean over tokens and layers ----
  if (ls.sparsity != SparsityPenalty::kNone && ls.l1_coefficient != 0) {
    const double lam = ls.l1_coefficient;
    const at::Tensor u = gating ? f * n : f;
    at::Tensor du;
    if (ls.sparsity == SparsityPenalty::kPower) {
      SAES_CHECK(ls.p >= 1, ConfigError, "trainer.p: expected >= 1, got {}", ls.p);
      const double p = static_cast<double>(ls.p);
      at::Tensor P = at::sum(at::pow(u, p), {2}, true);  // [N, L, 1], over the whole layer
      sum_over_features(P);
      P = at::pow(P, 1.0 / p);
      out.l_sparsity = shard_.rank() == 0  // counted once over the model group
                           ? lam * at::sum(P * w3).item<double>() / static_cast<double>(L)
                           : 0.0;
      // ∂‖u‖_p/∂u = u^{p-1}·P^{1-p} at u > 0 (0 at u = 0, as torch's norm)
      du = at::where(at::gt(u, 0), at::pow(u, p - 1) * at::pow(P, 1 - p), at::zeros_like(u));
      du.mul_(w3 * (lam / static_cast<double>(L)));
    } else {
      const double c = ls.tanh_stretch_coefficient;
      const at::Tensor T = at::tanh(u * c);
      const at::Tensor dT = (1 - T * T) * c;
      if (ls.sparsity == SparsityPenalty::kTanh) {
        out.l_sparsity =
            lam * at::sum(at::sum(T, {2}, true) * w3).item<double>() / static_cast<double>(L);
        du = dT * (w3 * (lam / static_cast<double>(L)));
      } else {  // tanh-quad: p̂_i over all tokens and layers jointly, a batch-level scalar
        const double sc = ls.frequency_scale;
        const double cells = static_cast<double>(N * L);
        const at::Tensor ph = at::sum(T, at::IntArrayRef{0, 1}) / cells;  // [S]
        out.l_sparsity = lam * at::sum(ph * (1 + ph / sc)).item<double>();
        du = dT * ((1 + ph * (2.0 / sc)) * (lam / cells));
      }
    }
    df.add_(gating ? du * n : du);
  }

  // ---- through the activation into h ----
  if (jump) {
    const at::Tensor g_sig = gating ? df / n : df;  // ∂L/∂σ(s), σ the JumpReLU of s = h·N
    for (std::int64_t l = 0; l < L; ++l) {
      glog_threshold_[l].copy_(jumprelu_log_threshold_grad(
          g_sig.select(1, l), s.select(1, l), log_threshold_[l], cfg_.jumprelu_threshold_window));
    }
  }
  const at::Tensor dh = df * active;  // [N, L, S]

  // ---- into the parameters ----
  const at::Tensor dh_l = dh.transpose(0, 1);               // [L, N, S]
  at::bmm_out(gW_E_, x.to(opts).permute({1, 2, 0}), dh_l);  // [L, d, N] × [L, N, S]
  at::sum_out(gb_E_, dh, {0});
  const at::Tensor fc = f.contiguous();
  for (std::int64_t t = 0; t < L; ++t) {
    at::Tensor g = gW_D_[t].view({(t + 1) * S, d});
    at::mm_out(g, fc.narrow(1, 0, t + 1).reshape({N, (t + 1) * S}).t(), G[t]);
    if (b_D_[t].defined()) at::sum_out(gb_D_[t], G[t], {0});
  }

  // ---- metrics ----
  const at::Tensor f2 = fc.view({N, L * S});
  out.fired = st.mask.defined()
                  ? at::mv(at::gt(f2, 0).to(opts).t(), w * n_valid).round().to(at::kLong)
                  : at::count_nonzero(f2, at::IntArrayRef{0});
  const std::vector<double> sums = sum_over_features(
      {out.l_sparsity, static_cast<double>(at::sum(out.fired).item<std::int64_t>())});
  out.l_sparsity = sums[0];
  out.l0 = sums[1] / n_valid;
  out.loss = out.l_rec + out.l_sparsity;
  out.feature_acts = f2;
  out.reconstructed = yhat;
  out.label = y;
  return out;
}

}  // namespace saes::dictionaries
