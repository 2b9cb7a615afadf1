// ReLU, JumpReLU, TopK and BatchTopK as activation masks, and the JumpReLU straight-through
// threshold gradient (spec §3.1–3.3).
#include "saes/dictionaries/activation_functions.h"

#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/abs.h>
#include <ATen/ops/exp.h>
#include <ATen/ops/gt.h>
#include <ATen/ops/logical_and.h>
#include <ATen/ops/lt.h>
#include <ATen/ops/relu.h>
#include <ATen/ops/sum.h>
#include <ATen/ops/topk.h>
#include <ATen/ops/zeros.h>

#include "saes/core/error.h"

namespace saes::dictionaries {
namespace {

/// Mask of the k largest entries of ReLU(s) along the last dim of `s2` ([rows, n]), and s > 0.
at::Tensor top_entries(const at::Tensor& s2, std::int64_t k) {
  const std::int64_t n = s2.size(-1);
  SAES_CHECK(k >= 1 && k <= n, ConfigError, "top-k: k must be in 1..{}, got {}", n, k);
  const at::Tensor idx = std::get<1>(at::topk(at::relu(s2), k, -1, true, false));
  at::Tensor mask = at::zeros(s2.sizes(), s2.options().dtype(at::kBool));
  mask.scatter_(-1, idx, true);
  return at::logical_and(mask, at::gt(s2, 0));
}

}  // namespace

at::Tensor activation_mask(ActFn act_fn, const at::Tensor& s, const at::Tensor& log_threshold,
                           std::int64_t k) {
  switch (act_fn) {
    case ActFn::kRelu:
      return at::gt(s, 0);
    case ActFn::kJumpRelu:
      return at::gt(s, at::exp(log_threshold).to(s.scalar_type()));
    case ActFn::kTopK:
      return top_entries(s, k);
    case ActFn::kBatchTopK: {
      const std::int64_t rows = s.numel() / s.size(-1);
      return top_entries(s.reshape({1, s.numel()}), std::min(k * rows, s.numel())).view(s.sizes());
    }
    case ActFn::kBatchLayerTopK:
    case ActFn::kLayerTopK:
      break;
  }
  SAES_THROW(UnsupportedError, "act_fn {} is only defined for cross-layer transcoders",
             kActFnNames[static_cast<std::size_t>(act_fn)]);
}

at::Tensor apply_activation(ActFn act_fn, const at::Tensor& s, const at::Tensor& log_threshold,
                            std::int64_t k) {
  return s * activation_mask(act_fn, s, log_threshold, k);
}

at::Tensor jumprelu_log_threshold_grad(const at::Tensor& grad_out, const at::Tensor& s,
                                       const at::Tensor& log_threshold, double window) {
  const at::Tensor theta = at::exp(log_threshold).to(s.scalar_type());
  const at::Tensor in_window =
      at::logical_and(at::lt(at::abs(s - theta), window / 2.0), at::gt(s, 0));
  const at::Tensor g = at::sum(grad_out * in_window, {0});
  // ∂L/∂logθ = θ·∂L/∂θ = θ·(−θ/ε)·Σ g·1[window]
  return (g * theta * theta * (-1.0 / window)).to(log_threshold.scalar_type());
}

}  // namespace saes::dictionaries
