// Activation functions of the sparse dictionaries (spec §3.1–3.3): ReLU, JumpReLU (with its
// rectangle straight-through estimator), TopK and BatchTopK, as forward masks plus the backward
// pieces the fused training step needs. Decoder-norm gating and the losses live in the dictionary.
#pragma once

#include <cstdint>

#include "saes/dictionaries/config.h"

namespace at {
class Tensor;
}  // namespace at

namespace saes::dictionaries {

/// Which entries of the gating scores `s` are active, as a bool tensor of s's shape:
///  - relu:      s > 0
///  - jumprelu:  s > θ, θ = exp(log_threshold) broadcast over the last dim
///  - topk:      the k largest entries of ReLU(s) per row (last dim), and only where s > 0;
///               ties at the k-th value are broken by index order of at::topk (exactly k per row
///               when the row has at least k positive entries)
///  - batchtopk: the k·rows largest entries of ReLU(s) over all rows jointly, only where s > 0
/// s: [rows, d_sae] float (any float dtype); log_threshold: [d_sae] (jumprelu only, else ignored);
/// k: 1..d_sae (TopK family only). The layer variants of the CLT are rejected (UnsupportedError).
at::Tensor activation_mask(ActFn act_fn, const at::Tensor& s, const at::Tensor& log_threshold,
                           std::int64_t k);

/// f = s · activation_mask(s) (spec §3.1–3.3).
at::Tensor apply_activation(ActFn act_fn, const at::Tensor& s, const at::Tensor& log_threshold,
                            std::int64_t k);

/// JumpReLU straight-through gradient to log θ (spec §3.2): with θ = exp(log_threshold),
///   ∂L/∂θ_i = Σ_rows g·(−θ_i/ε)·1[|s−θ_i| < ε/2]·1[s > 0],   ∂L/∂logθ_i = θ_i·∂L/∂θ_i.
/// grad_out: ∂L/∂(JumpReLU output) [rows, d_sae]; s: the JumpReLU input [rows, d_sae];
/// window: ε (`jumprelu_threshold_window`). Returns [d_sae] in log_threshold's dtype.
/// (The gradient to s is grad_out·1[s > θ]: no pseudo-gradient through the jump.)
at::Tensor jumprelu_log_threshold_grad(const at::Tensor& grad_out, const at::Tensor& s,
                                       const at::Tensor& log_threshold, double window);

}  // namespace saes::dictionaries
