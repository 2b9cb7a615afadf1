// normalize_rows / influence / node_influence: the power series of the normalised adjacency.
#include "saes/circuits/influence.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/abs.h>
#include <ATen/ops/clamp_min.h>
#include <ATen/ops/matmul.h>
#include <ATen/ops/sum.h>

#include "saes/core/error.h"

namespace saes::circuits {

at::Tensor normalize_rows(const at::Tensor& adjacency) {
  const at::Tensor a = at::abs(adjacency.to(at::kDouble));
  return a / at::clamp_min(at::sum(a, {1}, true), 1e-10);
}

at::Tensor influence(const at::Tensor& normalized, const at::Tensor& weights) {
  const std::int64_t n = normalized.size(0);
  at::Tensor cur = at::matmul(weights.to(at::kDouble), normalized);
  at::Tensor total = cur.clone();
  for (std::int64_t i = 0; i <= n; ++i) {
    if (!cur.ne(0).any().item<bool>()) return total;
    cur = at::matmul(cur, normalized);
    total += cur;
  }
  SAES_THROW(DataError, "attribution graph: the graph has a cycle (influence did not converge in "
             "{} steps)", n);
}

at::Tensor node_influence(const at::Tensor& adjacency, const at::Tensor& weights) {
  return influence(normalize_rows(adjacency), weights);
}

}  // namespace saes::circuits
