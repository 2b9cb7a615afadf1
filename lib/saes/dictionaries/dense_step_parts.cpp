// The dense penalty and L_p of the generic loss with their manual gradients (spec §3.4, §3.5).
#include "saes/dictionaries/dense_step_parts.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/exp.h>
#include <ATen/ops/full.h>
#include <ATen/ops/full_like.h>
#include <ATen/ops/gt.h>
#include <ATen/ops/mv.h>
#include <ATen/ops/pow.h>
#include <ATen/ops/relu.h>
#include <ATen/ops/sum.h>
#include <ATen/ops/tanh.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros_like.h>

#include <fmt/ranges.h>  // fmt::join

#include "saes/core/error.h"

namespace saes::dictionaries::detail {

std::pair<at::Tensor, double> token_weights(const at::Tensor& mask, std::int64_t n,
                                            const at::TensorOptions& opts) {
  if (!mask.defined()) return {at::full({n, 1}, 1.0 / static_cast<double>(n), opts), double(n)};
  SAES_CHECK(mask.dim() == 1 && mask.size(0) == n, DataError,
             "mask has shape [{}], expected [{}] (one entry per token)",
             fmt::join(mask.sizes(), ", "), n);
  const at::Tensor m = mask.to(opts.device(), opts.dtype().toScalarType()).reshape({n, 1});
  const double valid = at::sum(m).item<double>();
  SAES_CHECK(valid > 0, DataError, "mask selects no tokens");
  return {m / valid, valid};
}

double dense_penalty(const LossSettings& ls, const at::Tensor& f, const at::Tensor& w,
                     const at::Tensor& ng, bool jump, at::Tensor& df, at::Tensor& gn,
                     const std::function<void(at::Tensor&)>& sum_rows, bool counts_whole) {
  if (ls.sparsity == SparsityPenalty::kNone || ls.l1_coefficient == 0) return 0.0;
  const bool gating = ng.defined();
  const double lam = ls.l1_coefficient;
  const std::int64_t N = f.size(0);
  if (ls.sparsity == SparsityPenalty::kPower && ls.p == 1) {
    // L = λ Σ_t w_t Σ_i f_ti n_i (f ≥ 0): one GEMV gives both the value and ∂/∂n
    const at::Tensor fw = at::mv(f.t(), w.view({N}));
    const double value = lam * at::sum(gating ? fw * ng : fw).item<double>();
    if (jump) {  // the STE reads ∂L/∂f at inactive entries too: keep sign(0) = 0 there
      const at::Tensor gf = at::gt(f, 0).to(f.scalar_type()).mul_(lam * w);
      df.add_(gating ? gf * ng : gf);
    } else {  // only active entries reach h (ReLU/TopK mask afterwards): one rank-1 update
      df.addr_(w.view({N}), gating ? ng * lam : at::full_like(fw, lam));
    }
    if (gating) gn.add_(fw, lam);
    return value;
  }
  const at::Tensor u = gating ? f * ng : f;
  at::Tensor du;
  double value = 0.0;
  if (ls.sparsity == SparsityPenalty::kPower) {
    SAES_CHECK(ls.p >= 1, ConfigError, "trainer.p: expected >= 1, got {}", ls.p);
    const double p = static_cast<double>(ls.p);
    at::Tensor P = at::sum(at::pow(u, p), {1}, true);  // [N,1], Σ over all features
    sum_rows(P);
    P = at::pow(P, 1.0 / p);
    value = counts_whole ? lam * at::sum(P * w).item<double>() : 0.0;
    du = at::where(at::gt(P, 0), at::pow(u, p - 1) * at::pow(P, 1 - p), at::zeros_like(u));
    du.mul_(lam * w);
  } else {
    const double c = ls.tanh_stretch_coefficient;
    const at::Tensor T = at::tanh(u * c);
    const at::Tensor dT = (1 - T * T) * c;
    if (ls.sparsity == SparsityPenalty::kTanh) {
      value = lam * at::sum(at::sum(T, {1}, true) * w).item<double>();
      du = dT * (lam * w);
    } else {  // tanh-quad: a batch-level scalar over all tokens, no mask (spec §3.4 fix)
      const double sc = ls.frequency_scale;
      const at::Tensor ph = at::sum(T, {0}) / static_cast<double>(N);
      value = lam * at::sum(ph * (1 + ph / sc)).item<double>();
      du = dT * ((1 + ph * (2.0 / sc)) * (lam / static_cast<double>(N)));
    }
  }
  df.add_(gating ? du * ng : du);
  if (gating) gn.add_(at::sum(du * f, {0}));
  return value;
}

double dense_lp(double lp_coefficient, const at::Tensor& h, const at::Tensor& w,
                const at::Tensor& n, const at::Tensor& log_threshold, at::Tensor& glog_threshold,
                at::Tensor& gn, at::Tensor& dh) {
  const at::Tensor theta = at::exp(log_threshold);
  const at::Tensor gap = theta - h;
  const at::Tensor ind = at::gt(gap, 0).to(h.scalar_type());
  const at::Tensor relu_w = at::sum(at::relu(gap) * w, {0});  // [S]
  const double value = lp_coefficient * at::sum(relu_w * n).item<double>();
  const at::Tensor ind_w = at::sum(ind * w, {0});
  glog_threshold.add_(ind_w * n * theta, lp_coefficient);
  gn.add_(relu_w, lp_coefficient);
  dh.sub_(ind * w * (n * lp_coefficient));
  return value;
}

}  // namespace saes::dictionaries::detail
