// Data-parallel synchronisation for the trainer: gradients averaged over the data ranks through
// bucketed flat buffers (one all-reduce per bucket), step scalars and firing counts reduced in one
// float64 buffer, parameters broadcast from rank 0, and the ranks' agreement on stopping.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "saes/training/optimizer.h"

namespace saes::distributed {
class Communicator;
}

namespace saes::training {

struct BatchStats;

/// Default bucket size of the gradient all-reduce (bytes of one flat buffer).
inline constexpr std::int64_t kDefaultBucketBytes = std::int64_t{32} << 20;

/// One rank's view of the data-parallel group. Every call is a collective over `data`.
///
/// Loss normalisation: each rank's loss is a token-weighted mean over its n_r valid tokens, so the
/// single-process loss over the global batch is Σ_r (n_r / N) · loss_r with N = Σ_r n_r, and the
/// same weights apply to the gradients (the loss is linear in the per-token terms). That holds for
/// every loss of the SAE except the batch-level ones (tanh-quad sparsity, BatchTopK selection).
class GradientSync {
 public:
  /// `data` (non-owning) must outlive this object.
  explicit GradientSync(distributed::Communicator& data,
                        std::int64_t bucket_bytes = kDefaultBucketBytes);

  int size() const;
  int rank() const;

  /// Rank 0's value of every parameter on every rank (identical initialisation).
  void broadcast_parameters(std::span<const Parameter> params);
  /// Every defined gradient becomes Σ_r (local_valid_r / global_valid) · grad_r: the gradient of
  /// the global batch's loss. Gradients are packed per dtype into flat buffers of at most
  /// bucket_bytes; one all-reduce per buffer.
  void reduce_gradients(std::span<const Parameter> params, double local_valid, double global_valid);
  /// Sum over ranks (one float64 all-reduce).
  std::vector<double> sum(const std::vector<double>& values);
  /// Whether any rank says yes (stop signals must be acted on by all ranks at the same step).
  bool any(bool flag);
  /// All ranks' strings; throws DistributedError naming `what` unless they are all equal.
  std::string agree(const std::string& text, const std::string& what);

  /// Payload bytes this rank sent in the gradient all-reduces of the last reduce_gradients.
  std::int64_t last_gradient_bytes() const { return last_gradient_bytes_; }

 private:
  distributed::Communicator& data_;
  std::int64_t bucket_bytes_;
  std::int64_t last_gradient_bytes_ = 0;
  std::vector<at::Tensor> buffers_;  // reused flat buffers, one per bucket
};

/// What one dictionary's step contributes to the global batch, after reduce_step: losses as the
/// global token-weighted means, batch statistics and firing counts over the global batch.
struct ReducedStep {
  std::map<std::string, double> losses;
  double global_valid = 0;
};

/// Reduces the losses (weighted by `local_valid`), `stats` (when non-null: sums are summed, means
/// are token-weighted, fired counts summed) and `fired` (when defined: summed in place into a new
/// tensor returned through `fired`) in one collective.
ReducedStep reduce_step(GradientSync& sync, const std::map<std::string, double>& losses,
                        double local_valid, BatchStats* stats, at::Tensor* fired);

}  // namespace saes::training
