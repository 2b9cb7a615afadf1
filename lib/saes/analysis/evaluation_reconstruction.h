// Reconstruction metrics of a dictionary (docs/evaluation.md): a streaming accumulator of a few
// float64 sums (MSE, FVU and both explained variances, cosine, shrinkage, L0/L1, dead/dense
// features) that ranks merge with one sum all-reduce.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include <ATen/core/Tensor.h>

namespace saes::distributed {
class Communicator;
}  // namespace saes::distributed

namespace saes::analysis {

class ReconstructionAccumulator {
 public:
  /// d_model: width of the label/reconstruction; d_sae: number of features.
  ReconstructionAccumulator(std::int64_t d_model, std::int64_t d_sae);

  /// Adds one batch of valid tokens: label and reconstructed [n, d_model], feature_acts
  /// [n, d_sae], any float dtype/device (summed in float64). Throws DataError on shape mismatch.
  void add(const at::Tensor& label, const at::Tensor& reconstructed,
           const at::Tensor& feature_acts);

  /// Sums over all ranks (every rank must call it, once, after its last add).
  void all_reduce(distributed::Communicator& comm);

  /// Metric name → value (formulas in docs/evaluation.md); dense = firing share > dense_threshold.
  /// With no token added every ratio is NaN.
  std::map<std::string, double> metrics(double dense_threshold) const;

  std::int64_t n_tokens() const;

 private:
  std::int64_t d_model_;
  std::int64_t d_sae_;
  at::Tensor sums_;  ///< [kScalarSums + d_model + d_sae] float64 CPU (layout in the .cpp)
};

}  // namespace saes::analysis
