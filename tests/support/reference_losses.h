// Plain-formula pieces of the generic loss (spec §3.2, §3.4) for the autograd references of the
// dictionaries' manual-backward tests (SAE, MoLT, crosscoder): written once, from the spec.
#pragma once

#include <ATen/ATen.h>

#include "saes/dictionaries/sparse_dictionary.h"

namespace saes::testing {

/// λ·penalty of u (f·n with gating, else f) [N, S] with token weights w [N, 1], by `ls.sparsity`
/// (power-p norm, tanh, tanh-quad over the rows): a differentiable scalar, 0 for none.
inline at::Tensor reference_penalty(const dictionaries::LossSettings& ls, const at::Tensor& u,
                                    const at::Tensor& w, double lam) {
  const double c = ls.tanh_stretch_coefficient;
  switch (ls.sparsity) {
    case dictionaries::SparsityPenalty::kNone:
      break;
    case dictionaries::SparsityPenalty::kPower:
      return lam * (at::linalg_vector_norm(u, static_cast<double>(ls.p), {1}, true) * w).sum();
    case dictionaries::SparsityPenalty::kTanh:
      return lam * (at::tanh(c * u).sum(1, true) * w).sum();
    case dictionaries::SparsityPenalty::kTanhQuad: {
      const at::Tensor ph = at::tanh(c * u).mean(0);
      return lam * (ph * (1 + ph / ls.frequency_scale)).sum();
    }
  }
  return at::zeros({}, u.options());
}

/// s·A plus the JumpReLU straight-through term for log θ (spec §3.2), written as
/// c·(θ − θ.detach()) with c = −θ/ε on the rectangle |s − θ| < ε/2, s > 0.
inline at::Tensor reference_jumprelu_ste(const at::Tensor& s, const at::Tensor& A,
                                         const at::Tensor& log_threshold, double eps) {
  const at::Tensor theta = at::exp(log_threshold);
  const at::Tensor K = ((at::abs(s - theta) < eps / 2) & (s > 0)).to(s.scalar_type());
  return s * A + (-theta / eps * K).detach() * (theta - theta.detach());
}

}  // namespace saes::testing
