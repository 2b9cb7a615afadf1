// Internal to dictionaries/: the parts of a dense training step (f as a [tokens, features]
// tensor, manual backward) that the variants sharing the generic loss (spec §2.1) have in common:
// the sparsity penalty on f with its gradient (spec §3.4) and the JumpReLU pre-activation loss
// L_p (spec §3.5). The SAE and the MoLT call them; the sparse steps use sparse_step_parts.h.
#pragma once

#include <cstdint>
#include <functional>
#include <utility>

#include <ATen/core/Tensor.h>

#include "saes/dictionaries/sparse_dictionary.h"

namespace saes::dictionaries::detail {

/// Per-token weights [n, 1] of a 1-D token mask ([n], nonzero = valid): mask / Σmask, or 1/n
/// without a mask; and the valid-token count. DataError for a mask of another shape or one
/// that selects no token.
std::pair<at::Tensor, double> token_weights(const at::Tensor& mask, std::int64_t n,
                                            const at::TensorOptions& opts);

/// λ·penalty of f [N, S] (f >= 0) with token weights w [N, 1] (summing to 1 over the valid
/// tokens); `ng` = the decoder norms [S] when the penalty reads f·n (gating), undefined else.
/// Adds ∂/∂f to `df` [N, S] and, with gating, ∂/∂n to `gn` [S]. `jump`: JumpReLU, whose
/// straight-through gradient reads ∂L/∂f at inactive entries too (the L1 term keeps sign(0) = 0
/// there). `sum_rows` completes per-token sums over the model group (identity when not sharded);
/// the power-p norm (p > 1), a whole-dictionary value, is returned by `counts_whole` only, every
/// other term is this rank's share. Returns 0 and changes nothing when the penalty is off.
double dense_penalty(const LossSettings& ls, const at::Tensor& f, const at::Tensor& w,
                     const at::Tensor& ng, bool jump, at::Tensor& df, at::Tensor& gn,
                     const std::function<void(at::Tensor&)>& sum_rows, bool counts_whole);

/// L_p = λ_p Σ_t w_t Σ_i ReLU(θ_i − h_ti)·n_i (spec §3.5; n_i always, as the original) for
/// pre-activations h [N, S], decoder norms n [S] and log θ [S]: returns its value and adds its
/// gradients into glog_threshold [S], gn [S] and dh [N, S].
double dense_lp(double lp_coefficient, const at::Tensor& h, const at::Tensor& w,
                const at::Tensor& n, const at::Tensor& log_threshold, at::Tensor& glog_threshold,
                at::Tensor& gn, at::Tensor& dh);

}  // namespace saes::dictionaries::detail
