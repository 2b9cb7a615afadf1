// Node influence on the logits through an attribution graph's adjacency (circuit-tracer's
// definition): |A| normalised per target row, then w·Â + w·Â² + … (a DAG: the series ends).
#pragma once

#include <ATen/core/Tensor.h>

namespace saes::circuits {

/// [n, n] → float64 |A[t, s]| / max(Σ_s |A[t, s]|, 1e-10).
at::Tensor normalize_rows(const at::Tensor& adjacency);
/// w·Â + w·Â² + … for a nilpotent Â (float64 [n, n]) and weights w [n]: [n] float64. DataError
/// "the graph has a cycle" when the series has not ended after n steps.
at::Tensor influence(const at::Tensor& normalized, const at::Tensor& weights);
/// influence(normalize_rows(adjacency), weights): each node's influence on the weighted targets.
at::Tensor node_influence(const at::Tensor& adjacency, const at::Tensor& weights);

}  // namespace saes::circuits
