// Fused CPU sweeps of the dense SAE training step (float/double): after the encoder GEMM one
// pass gives f, the fire counts and the sparsity penalty; after the ∂f GEMM one pass turns ∂f into
// ∂h in place with the penalty, JumpReLU threshold, L_p and Aux-K pieces and the b_E column sum.
#pragma once

#include <cstdint>

#include <ATen/core/Tensor.h>

#include "saes/dictionaries/config.h"
#include "saes/dictionaries/sparse_dictionary.h"

namespace saes::dictionaries {

/// Inputs shared by both sweeps (CPU, contiguous, one float dtype; N tokens, S features).
struct DenseSweep {
  ActFn act_fn = ActFn::kRelu;
  at::Tensor h;         ///< [N, S] pre-activations
  at::Tensor gate;      ///< [S] decoder norms of the gating s = h·n, or undefined (no gating)
  at::Tensor norms;     ///< [S] decoder norms (L_p weights; JumpReLU with lp > 0 only)
  at::Tensor theta;     ///< [S] exp(log θ) (JumpReLU only)
  at::Tensor selected;  ///< [N, S] bool selection of activation_mask (TopK family only)
  at::Tensor w;         ///< [N] token weights (Σ = 1 over valid tokens)
  at::Tensor counts;    ///< [N] fire-count weight of each token, or undefined (all 1)
  const LossSettings* loss = nullptr;  ///< penalty and L_p settings (never null)
  double window = 0.0;                 ///< JumpReLU ε
};

/// What the forward sweep gives: f = h·active (active ⇔ f > 0 for every activation function).
struct DenseForward {
  at::Tensor f;           ///< [N, S]
  at::Tensor fired;       ///< [S] int64: Σ_t counts_t·1[f_ti > 0], rounded
  double l_sparsity = 0;  ///< λ·penalty (spec §3.4)
  at::Tensor row_coef;    ///< [N] power p ≥ 2: λ·w_t·P_t^(1−p) (0 where P_t = 0)
  at::Tensor col_coef;    ///< [S] tanh-quad: λ/N·(1 + 2·ph_i/s)
};

/// Parameter gradients the backward sweep reduces over tokens.
struct DenseBackward {
  at::Tensor gb_E;            ///< [S] Σ_t ∂h
  at::Tensor gn;              ///< [S] ∂L/∂n of the penalty (with gating) and of L_p
  at::Tensor glog_threshold;  ///< [S] JumpReLU: straight-through + L_p gradient to log θ
  double l_p = 0;             ///< λ_p·L_p (JumpReLU with lp > 0)
};

/// Whether the fused sweeps run for parameters like `t` (CPU, float or double).
bool dense_kernels_apply(const at::Tensor& t);

/// f, fire counts and the penalty (same maths as the op path of SparseAutoEncoder's dense step).
DenseForward dense_forward(const DenseSweep& sw);

/// ∂L/∂f (`df`, [N, S], from the reconstruction GEMM) → ∂L/∂h in place: adds the penalty
/// gradient (times the gate), takes the JumpReLU straight-through threshold gradient, masks by
/// f > 0, subtracts the L_p gradient and adds aux_df where aux_selected (Aux-K; both optional).
DenseBackward dense_backward(const DenseSweep& sw, const DenseForward& fwd, const at::Tensor& df,
                             const at::Tensor& aux_df, const at::Tensor& aux_selected);

}  // namespace saes::dictionaries
