// Downstream (spliced-model) metrics (docs/evaluation.md): next-token cross-entropy of the clean
// model and of the model with a hook replaced by the reconstruction / zeros / the mean, KL
// divergences to the clean model, and loss recovered, from float64 sums ranks merge by sum.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include <ATen/core/Tensor.h>

namespace saes::distributed {
class Communicator;
}  // namespace saes::distributed

namespace saes::analysis {

/// The logits [batch, seq, vocab] of one token batch under each model variant.
struct VariantLogits {
  at::Tensor clean;
  at::Tensor spliced;       ///< hook replaced by the reconstruction
  at::Tensor zero_ablated;  ///< hook replaced by zeros
  at::Tensor mean_ablated;  ///< hook replaced by its mean; undefined when not run
};

/// [batch, seq-1] bool: position t (predicting token t+1) counts when mask[t] != 0 (a spliced,
/// non-BOS position) and attention_mask[t+1] != 0 (the target is a real token).
at::Tensor scored_positions(const at::Tensor& mask, const at::Tensor& attention_mask);

class DownstreamAccumulator {
 public:
  DownstreamAccumulator();

  /// Adds one batch: tokens [batch, seq] int64, positions from scored_positions().
  void add(const VariantLogits& logits, const at::Tensor& tokens, const at::Tensor& positions);

  /// Sums over all ranks (every rank must call it, once, after its last add).
  void all_reduce(distributed::Communicator& comm);

  /// Metric name → value (docs/evaluation.md); mean-ablation metrics only when every batch had
  /// mean_ablated logits. With no position scored every value but n_ce_tokens is NaN.
  std::map<std::string, double> metrics() const;

  std::int64_t n_positions() const;

 private:
  at::Tensor sums_;  ///< [9] float64 CPU (layout in the .cpp)
};

}  // namespace saes::analysis
