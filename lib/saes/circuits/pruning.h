// Pruning of an attribution graph (circuit-tracer's graph.py, docs/circuits.md "Pruning, JSON and
// the graph store"): row-normalised |adjacency|, influence as the sum of all path products, the
// cumulative-fraction thresholds, the kept nodes and edges, and the replacement / completeness
// scores. Everything runs on the CPU in float64; writing the result is graph_json.h's job.
#pragma once

#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>

#include "saes/circuits/graph.h"

namespace saes::circuits {

/// What prune() keeps. Tensors are on the CPU.
struct PruneResult {
  at::Tensor node_mask;  ///< [n_nodes] bool: kept nodes (embeddings, logits, target features always)
  /// [n_nodes, n_nodes] bool (rows = targets, columns = sources): kept edges, between kept nodes
  at::Tensor edge_mask;
  at::Tensor node_influence;  ///< [n_nodes] float64: influence(normalize_rows(A), w) of every node
  /// [n_nodes] float64 in [0, 1]: each node's cumulative influence rank value, the sum of the
  /// node influences of it and every node ranked before it (descending, stable), over their
  /// total (1 for every node when the total is 0). Lower = more important; the JSON `influence`.
  at::Tensor cumulative_influence;
  double node_threshold = 0.8;
  double edge_threshold = 0.98;
};

/// The two quality scores of circuit-tracer's compute_graph_scores, on the unpruned graph.
struct GraphScores {
  /// Σ inf[embeddings] / (Σ inf[embeddings] + Σ inf[errors]); 0 when both sums are 0.
  double replacement = 0.0;
  /// Σ_n (1 − Σ_{e∈errors} Â[n,e])·(inf_n + w_n) / Σ_n (inf_n + w_n); 0 when the total is 0.
  double completeness = 0.0;
};

/// |A| with every row divided by max(its sum, 1e-10).
/// adjacency: [n, n] floating point, CPU. Returns [n, n] float64.
at::Tensor normalize_rows(const at::Tensor& adjacency);

/// w·Â + w·Â² + w·Â³ + …, summed until the term is exactly zero (Â of a DAG is nilpotent).
/// Throws DataError "the graph has a cycle …" when the non-zero pattern of Â has a cycle.
/// normalized: [n, n] float64 (rows = targets); weights: [n] float64. Returns [n] float64.
at::Tensor influence(const at::Tensor& normalized, const at::Tensor& weights);

/// influence(normalize_rows(adjacency), weights). adjacency: [n, n] floating point;
/// weights: [n] float64 (Graph::target_weights()). Returns [n] float64.
at::Tensor node_influence(const at::Tensor& adjacency, const at::Tensor& weights);

/// node_influence(adjacency, weights) for an adjacency whose rows outside `rows` are zero (the
/// attribution's greedy budget: only the computed rows have edges), in O(|rows|·n) per path
/// length instead of O(n²): only those rows are read. DataError when the products do not end
/// (a cycle). rows: distinct indices in [0, n).
at::Tensor row_influence(const at::Tensor& adjacency, const std::vector<std::int64_t>& rows,
                         const at::Tensor& weights);

/// Â_p · (influence(Â_p, w) + w)[:, None] with Â_p = normalize_rows(pruned_adjacency): each edge's
/// share of its target's influence plus logit weight. Returns [n, n] float64.
at::Tensor edge_scores(const at::Tensor& pruned_adjacency, const at::Tensor& weights);

/// The smallest score s such that the scores ≥ s hold at least `threshold` of the total: sort
/// descending, first index whose cumulative fraction is ≥ threshold, clamped to the last non-zero
/// score. Returns +infinity when no score is positive (nothing is kept).
/// scores: any shape, non-negative, floating point (flattened); threshold in (0, 1].
double find_threshold(const at::Tensor& scores, double threshold);

/// circuit-tracer's prune_graph: nodes whose influence is ≥ find_threshold(…, node_threshold)
/// plus every embedding, logit and target feature; edges of the graph restricted to those nodes whose
/// edge_scores are ≥ find_threshold(…, edge_threshold); then, to a fixed point, features and
/// errors without a kept outgoing edge and features without a kept incoming edge are removed
/// with their edges. Throws ConfigError naming `node_threshold` / `edge_threshold` outside
/// (0, 1], DataError for a malformed graph (adjacency shape, non-finite values, a cycle).
PruneResult prune(const Graph& graph, double node_threshold = 0.8, double edge_threshold = 0.98);

/// An edge of the written graph: adjacency[target][source] (raw, signed).
struct KeptLink {
  std::int64_t source = 0;  ///< node index
  std::int64_t target = 0;  ///< node index
  double weight = 0.0;
};

/// What is written out of a pruned graph (circuit-tracer's create_used_nodes_and_edges): links
/// for the kept edges between kept nodes (target-major), and the kept nodes that some link
/// touches plus every embedding, logit and target feature, in graph order.
struct KeptGraph {
  std::vector<std::int64_t> nodes;
  std::vector<KeptLink> links;
};

/// Throws DataError when `pruned` does not belong to `graph` (shapes, dtypes) or when a node's
/// layer or position is out of range.
KeptGraph kept_graph(const Graph& graph, const PruneResult& pruned);

/// Replacement and completeness scores of the unpruned graph (see GraphScores).
GraphScores graph_scores(const Graph& graph);

/// Checks what pruning relies on: adjacency [n_nodes, n_nodes] floating point on the CPU with
/// finite values, and at least one logit node. Throws DataError naming the problem.
void check_graph(const Graph& graph);

}  // namespace saes::circuits
