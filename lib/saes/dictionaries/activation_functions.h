// Activation functions of the sparse dictionaries (spec §3.1–3.3): ReLU, JumpReLU (with its
// rectangle straight-through estimator), TopK and BatchTopK, as forward masks plus the backward
// pieces the fused training step needs. Decoder-norm gating and the losses live in the dictionary.
#pragma once

#include <cstdint>
#include <tuple>

#include "saes/dictionaries/config.h"
#include "saes/dictionaries/sparse_kernels.h"

namespace saes::dictionaries {

/// Which entries of the gating scores `s` are active, as a bool tensor of s's shape:
///  - relu:      s > 0
///  - jumprelu:  s > θ, θ = exp(log_threshold) broadcast over the last dim
///  - topk:      the k largest entries of ReLU(s) per row (last dim), and only where s > 0
///               (exactly k per row when the row has at least k positive entries; CPU
///               float/double: a per-row radix select, ties at the threshold to the lower column)
///  - batchtopk: the k·rows largest entries of ReLU(s) over all rows jointly, only where s > 0
///               (batch_top_k_mask)
/// s: [rows, d_sae] float (any float dtype); log_threshold: [d_sae] (jumprelu only, else ignored);
/// k: 1..d_sae (TopK family only). The layer variants of the CLT are rejected (UnsupportedError).
/// backend kOps forces the LibTorch ops (at::topk) where the CPU kernels would run (tests).
at::Tensor activation_mask(ActFn act_fn, const at::Tensor& s, const at::Tensor& log_threshold,
                           std::int64_t k, SparseBackend backend = SparseBackend::kAuto);

/// The TopK selection of each row of `scores` [rows, m]: (values, int64 column indices), both
/// [rows, k]. Every entry among a row's k largest positive entries is picked; the rest of the k
/// picks are entries <= 0 (rows with fewer than k positive entries), which TopK leaves inactive.
/// CPU float/double: a per-row radix select (ties at the threshold go to the lower column; picks
/// in column order, then the padding); else at::topk (its order and ties).
std::tuple<at::Tensor, at::Tensor> row_top_k(const at::Tensor& scores, std::int64_t k);

/// activation_mask(kTopK, h·scale, ..., k) without forming h·scale ([rows, m]) on the CPU kernels:
/// each row is scaled into a row buffer and selected there (the gated TopK of the fused dense step).
/// h: [rows, m]; scale: [m] or undefined (no scaling).
at::Tensor scaled_top_k_mask(const at::Tensor& h, const at::Tensor& scale, std::int64_t k);

/// Bool mask of the kk largest positive entries of `scores` (any shape) over all entries jointly:
/// the BatchTopK selection. CPU float/double (kAuto): a parallel radix select of the threshold,
/// ties at the threshold go to the lower flat (row-major) index; else at::topk over the flattened
/// scores. kk ≥ 1; fewer than kk positive entries ⇒ all of them.
at::Tensor batch_top_k_mask(const at::Tensor& scores, std::int64_t kk,
                            SparseBackend backend = SparseBackend::kAuto);

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
