// Reconstruction metrics: per-batch float64 sums and the metric formulas of docs/evaluation.md.
#include "saes/analysis/evaluation_reconstruction.h"

#include <cmath>
#include <limits>

#include <ATen/ops/cat.h>
#include <ATen/ops/ones_like.h>
#include <ATen/ops/scalar_tensor.h>
#include <ATen/ops/stack.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "saes/core/error.h"
#include "saes/distributed/communicator.h"

namespace saes::analysis {
namespace {

// Layout of the scalar part of the sums; Σy per dimension and per-feature firing counts follow.
enum Sum : std::int64_t {
  kTokens,     // N
  kErrSq,      // Σ‖y−ŷ‖²
  kLabelSq,    // Σ‖y‖²
  kReconSq,    // Σ‖ŷ‖²
  kDot,        // Σ⟨y,ŷ⟩
  kCosine,     // Σ cos(y,ŷ)
  kL2Ratio,    // Σ ‖ŷ‖/‖y‖ (‖y‖ < 1e-4 ⇒ denominator 1)
  kLabelNorm,  // Σ‖y‖
  kReconNorm,  // Σ‖ŷ‖
  kErrNorm,    // Σ‖y−ŷ‖
  kLegacyEv,   // Σ (1 − ‖y−ŷ‖²/‖y−ȳ_batch‖²)
  kL0,         // Σ #(f > 0)
  kL1,         // Σ Σ|f|
  kScalarSums,
};

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

double ratio(double num, double den) { return den != 0.0 ? num / den : kNaN; }

}  // namespace

ReconstructionAccumulator::ReconstructionAccumulator(std::int64_t d_model, std::int64_t d_sae)
    : d_model_(d_model),
      d_sae_(d_sae),
      sums_(at::zeros({kScalarSums + d_model + d_sae}, at::kDouble)) {}

void ReconstructionAccumulator::add(const at::Tensor& label, const at::Tensor& reconstructed,
                                    const at::Tensor& feature_acts) {
  SAES_CHECK(
      label.dim() == 2 && label.size(1) == d_model_ && reconstructed.sizes() == label.sizes(),
      DataError, "evaluation: expected label and reconstruction [n, {}], got [{}] and [{}]",
      d_model_, fmt::join(label.sizes(), ", "), fmt::join(reconstructed.sizes(), ", "));
  SAES_CHECK(feature_acts.dim() == 2 && feature_acts.size(0) == label.size(0) &&
                 feature_acts.size(1) == d_sae_,
             DataError, "evaluation: expected feature activations [{}, {}], got [{}]",
             label.size(0), d_sae_, fmt::join(feature_acts.sizes(), ", "));
  if (label.size(0) == 0) return;
  const at::Tensor y = label.to(at::kDouble);
  const at::Tensor y_hat = reconstructed.to(y.device(), at::kDouble);
  const at::Tensor f = feature_acts.to(y.device());  // [n, d_sae] stays in its dtype: large
  const at::Tensor err_sq = y.sub(y_hat).pow(2).sum(1);
  const at::Tensor label_sq = y.pow(2).sum(1);
  const at::Tensor recon_sq = y_hat.pow(2).sum(1);
  const at::Tensor dot = y.mul(y_hat).sum(1);
  const at::Tensor y_norm = label_sq.sqrt();
  const at::Tensor y_hat_norm = recon_sq.sqrt();
  const at::Tensor cosine = dot.div(y_norm.mul(y_hat_norm).clamp_min(1e-12));
  const at::Tensor safe_norm = at::where(y_norm.lt(1e-4), at::ones_like(y_norm), y_norm);
  const at::Tensor batch_var = y.sub(y.mean(0)).pow(2).sum(1);
  const at::Tensor legacy = err_sq.div(batch_var.clamp_min(1e-12)).neg().add(1.0);
  const at::Tensor fired = f.gt(0).sum(0).to(at::kDouble);  // exact int64 counts per feature
  const at::Tensor scalars = at::stack({
      at::scalar_tensor(static_cast<double>(y.size(0)), y.options()),
      err_sq.sum(),
      label_sq.sum(),
      recon_sq.sum(),
      dot.sum(),
      cosine.sum(),
      y_hat_norm.div(safe_norm).sum(),
      y_norm.sum(),
      y_hat_norm.sum(),
      err_sq.sqrt().sum(),
      legacy.sum(),
      fired.sum(),
      f.abs().sum(at::kDouble),
  });
  sums_.add_(at::cat({scalars, y.sum(0), fired}).cpu());
}

void ReconstructionAccumulator::all_reduce(distributed::Communicator& comm) {
  comm.all_reduce(sums_, distributed::ReduceOp::kSum);
}

std::int64_t ReconstructionAccumulator::n_tokens() const {
  return static_cast<std::int64_t>(sums_[kTokens].item<double>());
}

std::map<std::string, double> ReconstructionAccumulator::metrics(double dense_threshold) const {
  const at::Tensor s = sums_.contiguous();
  const double* v = s.data_ptr<double>();
  const double n = v[kTokens];
  const double d = static_cast<double>(d_model_);
  const at::Tensor label_sum = s.slice(0, kScalarSums, kScalarSums + d_model_);
  const at::Tensor fired = s.slice(0, kScalarSums + d_model_);
  // Σ‖y − ȳ‖² = Σ‖y‖² − ‖Σy‖²/N (ȳ: per-dimension mean over all evaluated tokens).
  const double total_var = v[kLabelSq] - ratio(label_sum.pow(2).sum().item<double>(), n);
  const double fvu = ratio(v[kErrSq], total_var);
  // SAELens' quirk (peers.md §2.5): the subtracted term is the squared scalar mean of y².
  const double mean_sq_per_dim = ratio(v[kLabelSq], n * d);
  const double saelens_var = ratio(v[kLabelSq], n) - mean_sq_per_dim * mean_sq_per_dim;
  const double l2_norm_error = ratio(v[kErrNorm], n);
  const double n_features = static_cast<double>(d_sae_);
  return {
      {"n_tokens", n},
      {"mse", ratio(v[kErrSq], n * d)},
      {"fvu", fvu},
      {"explained_variance", 1.0 - fvu},
      {"explained_variance_saelens", 1.0 - ratio(ratio(v[kErrSq], n), saelens_var)},
      {"explained_variance_legacy", ratio(v[kLegacyEv], n)},
      {"l2_norm_error", l2_norm_error},
      {"l2_norm_error_ratio", ratio(l2_norm_error, ratio(v[kLabelNorm], n))},
      {"cossim", ratio(v[kCosine], n)},
      {"l2_norm_in", ratio(v[kLabelNorm], n)},
      {"l2_norm_out", ratio(v[kReconNorm], n)},
      {"l2_ratio", ratio(v[kL2Ratio], n)},
      {"relative_reconstruction_bias", ratio(v[kReconSq], v[kDot])},
      {"l0", ratio(v[kL0], n)},
      {"l1", ratio(v[kL1], n)},
      {"dead_fraction", n > 0 ? fired.eq(0).sum().item<double>() / n_features : kNaN},
      {"dense_fraction",
       n > 0 ? fired.div(n).gt(dense_threshold).sum().item<double>() / n_features : kNaN},
  };
}

}  // namespace saes::analysis
