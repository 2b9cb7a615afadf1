// Downstream metrics: per-position cross-entropy and KL sums in float64, and the ratios.
#include "saes/analysis/evaluation_downstream.h"

#include <limits>

#include <ATen/ops/exp.h>
#include <ATen/ops/log_softmax.h>
#include <ATen/ops/logical_and.h>
#include <ATen/ops/ones_like.h>
#include <ATen/ops/stack.h>
#include <ATen/ops/zeros.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "saes/core/error.h"
#include "saes/distributed/communicator.h"

namespace saes::analysis {
namespace {

enum Sum : std::int64_t {
  kPositions,
  kCeClean,
  kCeSpliced,
  kCeZero,
  kCeMean,
  kKlSpliced,
  kKlZero,
  kKlMean,
  kNoMeanBatches,  // batches without mean-ablated logits (their positions are not in kCeMean)
  kSums,
};

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

double ratio(double num, double den) { return den != 0.0 ? num / den : kNaN; }

/// log p(· | prefix) for the positions that predict a next token: [batch, seq-1, vocab] float32.
at::Tensor next_token_log_probs(const at::Tensor& logits) {
  return at::log_softmax(logits.slice(1, 0, logits.size(1) - 1).to(at::kFloat), -1);
}

/// Σ over scored positions of −log p(target).
at::Tensor cross_entropy_sum(const at::Tensor& log_probs, const at::Tensor& targets,
                             const at::Tensor& positions) {
  return log_probs.gather(-1, targets.unsqueeze(-1))
      .squeeze(-1)
      .masked_select(positions)
      .sum()
      .neg();
}

/// Σ over scored positions of KL(clean ‖ other) = Σ_v p_clean (log p_clean − log p_other).
at::Tensor kl_sum(const at::Tensor& clean, const at::Tensor& other, const at::Tensor& positions) {
  return clean.exp().mul(clean.sub(other)).sum(-1).masked_select(positions).sum();
}

}  // namespace

at::Tensor scored_positions(const at::Tensor& mask, const at::Tensor& attention_mask) {
  const std::int64_t seq = mask.size(1);
  return at::logical_and(mask.slice(1, 0, seq - 1).ne(0), attention_mask.slice(1, 1, seq).ne(0));
}

DownstreamAccumulator::DownstreamAccumulator() : sums_(at::zeros({kSums}, at::kDouble)) {}

void DownstreamAccumulator::add(const VariantLogits& logits, const at::Tensor& tokens,
                                const at::Tensor& positions) {
  SAES_CHECK(logits.clean.dim() == 3 && logits.spliced.sizes() == logits.clean.sizes() &&
                 logits.zero_ablated.sizes() == logits.clean.sizes(),
             DataError,
             "evaluation: expected clean/spliced/zero-ablated logits of one [batch, seq, vocab] "
             "shape, got [{}], [{}], [{}]",
             fmt::join(logits.clean.sizes(), ", "), fmt::join(logits.spliced.sizes(), ", "),
             fmt::join(logits.zero_ablated.sizes(), ", "));
  if (logits.clean.size(1) < 2) return;
  const c10::Device device = logits.clean.device();
  const at::Tensor targets = tokens.to(device).slice(1, 1, tokens.size(1));
  const at::Tensor scored = positions.to(device);
  const at::Tensor clean = next_token_log_probs(logits.clean);
  const at::Tensor spliced = next_token_log_probs(logits.spliced);
  const at::Tensor zero = next_token_log_probs(logits.zero_ablated);
  const at::Tensor none = at::zeros({}, clean.options());
  const bool has_mean = logits.mean_ablated.defined();
  const at::Tensor mean = has_mean ? next_token_log_probs(logits.mean_ablated) : at::Tensor();
  const at::Tensor sums = at::stack({
      scored.sum().to(at::kFloat),
      cross_entropy_sum(clean, targets, scored),
      cross_entropy_sum(spliced, targets, scored),
      cross_entropy_sum(zero, targets, scored),
      has_mean ? cross_entropy_sum(mean, targets, scored) : none,
      kl_sum(clean, spliced, scored),
      kl_sum(clean, zero, scored),
      has_mean ? kl_sum(clean, mean, scored) : none,
      has_mean ? none : at::ones_like(none),
  });
  sums_.add_(sums.to(at::kDouble).cpu());
}

void DownstreamAccumulator::all_reduce(distributed::Communicator& comm) {
  comm.all_reduce(sums_, distributed::ReduceOp::kSum);
}

std::int64_t DownstreamAccumulator::n_positions() const {
  return static_cast<std::int64_t>(sums_[kPositions].item<double>());
}

std::map<std::string, double> DownstreamAccumulator::metrics() const {
  const at::Tensor s = sums_.contiguous();
  const double* v = s.data_ptr<double>();
  const double n = v[kPositions];
  const double clean = ratio(v[kCeClean], n);
  const double spliced = ratio(v[kCeSpliced], n);
  const double zero = ratio(v[kCeZero], n);
  const double kl_spliced = ratio(v[kKlSpliced], n);
  const double kl_zero = ratio(v[kKlZero], n);
  std::map<std::string, double> m = {
      {"n_ce_tokens", n},
      {"ce_loss_clean", clean},
      {"ce_loss_spliced", spliced},
      {"ce_loss_zero_ablated", zero},
      {"ce_loss_delta", spliced - clean},
      {"loss_recovered", ratio(zero - spliced, zero - clean)},
      {"kl_div_spliced", kl_spliced},
      {"kl_div_zero_ablated", kl_zero},
      {"kl_div_score", ratio(kl_zero - kl_spliced, kl_zero)},
  };
  if (v[kNoMeanBatches] == 0.0) {
    const double mean = ratio(v[kCeMean], n);
    m["ce_loss_mean_ablated"] = mean;
    m["kl_div_mean_ablated"] = ratio(v[kKlMean], n);
    m["loss_recovered_mean_ablation"] = ratio(mean - spliced, mean - clean);
  }
  return m;
}

}  // namespace saes::analysis
