// Pruning and graph scores (circuit-tracer graph.py: normalize_matrix, compute_influence,
// find_threshold, prune_graph, compute_graph_scores), in float64 on the CPU.
#include "saes/circuits/pruning.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <numeric>
#include <vector>

#include <ATen/ops/empty.h>
#include <ATen/ops/tensor.h>
#include <ATen/ops/zeros.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "saes/core/error.h"

namespace saes::circuits {
namespace {

/// [n, n] float64, contiguous, on the CPU (a copy only when needed).
at::Tensor as_double_matrix(const at::Tensor& m, const char* what) {
  SAES_CHECK(m.defined() && m.dim() == 2 && m.size(0) == m.size(1), DataError,
             "{}: expected a square [n, n] matrix, got {}", what,
             m.defined() ? fmt::format("[{}]", fmt::join(m.sizes(), ", "))
                         : std::string("an undefined tensor"));
  SAES_CHECK(m.device().is_cpu() && m.is_floating_point(), DataError,
             "{}: expected a floating-point tensor on the CPU", what);
  return m.to(at::kDouble).contiguous();
}

at::Tensor as_double_vector(const at::Tensor& v, std::int64_t n, const char* what) {
  SAES_CHECK(v.defined() && v.dim() == 1 && v.size(0) == n, DataError,
             "{}: expected a [{}] vector, got {}", what, n,
             v.defined() ? fmt::format("[{}]", fmt::join(v.sizes(), ", "))
                         : std::string("an undefined tensor"));
  SAES_CHECK(v.device().is_cpu() && v.is_floating_point(), DataError,
             "{}: expected a floating-point tensor on the CPU", what);
  return v.to(at::kDouble).contiguous();
}

/// Kahn's algorithm from the sinks: an edge s → t is a non-zero m[t][s]. Throws DataError when
/// some nodes never become sinks, i.e. the pattern has a cycle.
void check_acyclic(const double* m, std::int64_t n) {
  std::vector<std::int64_t> out_degree(static_cast<std::size_t>(n), 0);
  for (std::int64_t t = 0; t < n; ++t) {
    const double* row = m + t * n;
    for (std::int64_t s = 0; s < n; ++s) out_degree[static_cast<std::size_t>(s)] += row[s] != 0.0;
  }
  std::vector<std::int64_t> sinks;
  for (std::int64_t i = 0; i < n; ++i)
    if (out_degree[static_cast<std::size_t>(i)] == 0) sinks.push_back(i);
  std::int64_t removed = 0;
  while (!sinks.empty()) {
    const std::int64_t t = sinks.back();
    sinks.pop_back();
    ++removed;
    const double* row = m + t * n;
    for (std::int64_t s = 0; s < n; ++s)
      if (row[s] != 0.0 && --out_degree[static_cast<std::size_t>(s)] == 0) sinks.push_back(s);
  }
  if (removed == n) return;
  std::int64_t example = 0;
  while (out_degree[static_cast<std::size_t>(example)] == 0) ++example;
  SAES_THROW(DataError,
             "influence: the graph has a cycle ({} of its {} nodes lie on a cycle or lead into "
             "one, e.g. node {}); an attribution graph must be acyclic",
             n - removed, n, example);
}

bool any_nonzero(const at::Tensor& v) {
  const double* p = v.data_ptr<double>();
  return std::any_of(p, p + v.numel(), [](double x) { return x != 0.0; });
}

void check_threshold(double value, const char* key) {
  SAES_CHECK(value > 0.0 && value <= 1.0, ConfigError, "{}: expected a value in (0, 1], got {}",
             key, value);
}

/// Embeddings, logits and chosen target features stay whatever their influence.
bool always_kept(const Node& node) {
  return node.kind == NodeKind::kEmbedding || node.kind == NodeKind::kLogit || node.target;
}

/// Removes, until nothing changes, features and errors without a kept outgoing edge and features
/// without a kept incoming edge, clearing the edges of every removed node.
void prune_to_fixed_point(const Graph& graph, bool* node, bool* edge) {
  const std::int64_t n = graph.n_nodes();
  std::vector<char> has_out(static_cast<std::size_t>(n));
  std::vector<char> has_in(static_cast<std::size_t>(n));
  for (bool changed = true; changed;) {
    changed = false;
    std::fill(has_out.begin(), has_out.end(), 0);
    std::fill(has_in.begin(), has_in.end(), 0);
    for (std::int64_t t = 0; t < n; ++t) {
      bool* row = edge + t * n;
      for (std::int64_t s = 0; s < n; ++s) {
        if (!row[s]) continue;
        if (!node[t] || !node[s]) {
          row[s] = false;
          continue;
        }
        has_in[static_cast<std::size_t>(t)] = 1;
        has_out[static_cast<std::size_t>(s)] = 1;
      }
    }
    for (std::int64_t i = 0; i < n; ++i) {
      const NodeKind kind = graph.nodes[static_cast<std::size_t>(i)].kind;
      if (!node[i] || always_kept(graph.nodes[static_cast<std::size_t>(i)])) continue;
      const bool keep = has_out[static_cast<std::size_t>(i)] &&
                        (kind != NodeKind::kFeature || has_in[static_cast<std::size_t>(i)]);
      if (!keep) {
        node[i] = false;
        changed = true;
      }
    }
  }
}

/// Each node's cumulative share of the total influence, in descending order of influence.
at::Tensor cumulative_influence(const at::Tensor& inf) {
  const std::int64_t n = inf.numel();
  const double* v = inf.data_ptr<double>();
  std::vector<std::int64_t> order(static_cast<std::size_t>(n));
  std::iota(order.begin(), order.end(), std::int64_t{0});
  std::stable_sort(order.begin(), order.end(), [&](auto a, auto b) { return v[a] > v[b]; });
  const double total = std::accumulate(v, v + n, 0.0);
  at::Tensor out = at::empty({n}, at::kDouble);
  double* o = out.data_ptr<double>();
  double running = 0.0;
  for (const std::int64_t i : order) {
    running += v[i];
    o[i] = total > 0.0 ? running / total : 1.0;
  }
  return out;
}

}  // namespace

void check_graph(const Graph& graph) {
  const std::int64_t n = graph.n_nodes();
  const at::Tensor& a = graph.adjacency;
  SAES_CHECK(a.defined() && a.dim() == 2 && a.size(0) == n && a.size(1) == n, DataError,
             "graph: adjacency must be [{}, {}] (one row and column per node), got {}", n, n,
             a.defined() ? fmt::format("[{}]", fmt::join(a.sizes(), ", "))
                         : std::string("an undefined tensor"));
  SAES_CHECK(a.device().is_cpu() && a.is_floating_point(), DataError,
             "graph: adjacency must be a floating-point tensor on the CPU");
  SAES_CHECK(graph.count(NodeKind::kLogit) > 0, DataError, "graph: it has no logit node");
  for (const Node& node : graph.nodes) {
    SAES_CHECK(!node.attention || graph.interleaved, DataError,
               "graph: it has attention nodes but is not marked interleaved");
  }
  const at::Tensor d = a.to(at::kDouble).contiguous();
  const double* p = d.data_ptr<double>();
  for (std::int64_t i = 0; i < n * n; ++i)
    SAES_CHECK(std::isfinite(p[i]), DataError,
               "graph: adjacency[{}][{}] is {}; every edge must be finite", i / n, i % n, p[i]);
}

at::Tensor normalize_rows(const at::Tensor& adjacency) {
  at::Tensor m = as_double_matrix(adjacency, "normalize_rows").abs();
  return m.div_(m.sum(1, /*keepdim=*/true).clamp_min_(1e-10));
}

at::Tensor influence(const at::Tensor& normalized, const at::Tensor& weights) {
  const at::Tensor m = as_double_matrix(normalized, "influence");
  const std::int64_t n = m.size(0);
  const at::Tensor w = as_double_vector(weights, n, "influence weights");
  check_acyclic(m.data_ptr<double>(), n);
  at::Tensor current = w.matmul(m);
  at::Tensor total = current.clone();
  // A DAG of n nodes has no path longer than n − 1 edges, so at most n products are non-zero.
  for (std::int64_t step = 0; any_nonzero(current); ++step) {
    SAES_CHECK(step <= n, DataError, "influence: the graph has a cycle (no end after {} steps)",
               step);
    current = current.matmul(m);
    total.add_(current);
  }
  return total;
}

at::Tensor row_influence(const at::Tensor& adjacency, const std::vector<std::int64_t>& rows,
                         const at::Tensor& weights) {
  SAES_CHECK(adjacency.defined() && adjacency.dim() == 2 && adjacency.size(0) == adjacency.size(1),
             DataError, "row_influence: expected a square adjacency");
  const std::int64_t n = adjacency.size(0);
  const at::Tensor w = as_double_vector(weights, n, "row_influence weights");
  if (rows.empty()) return at::zeros({n}, at::kDouble);
  const at::Tensor idx = at::tensor(rows, at::kLong);
  at::Tensor sub = adjacency.index_select(0, idx).to(at::kDouble).abs_();  // [m, n]
  sub.div_(sub.sum(1, /*keepdim=*/true).clamp_min_(1e-10));
  at::Tensor current = w.index_select(0, idx).matmul(sub);
  at::Tensor total = current.clone();
  for (std::int64_t step = 0; any_nonzero(current); ++step) {
    SAES_CHECK(step <= n, DataError, "influence: the graph has a cycle (no end after {} steps)",
               step);
    current = current.index_select(0, idx).matmul(sub);
    total.add_(current);
  }
  return total;
}

at::Tensor node_influence(const at::Tensor& adjacency, const at::Tensor& weights) {
  return influence(normalize_rows(adjacency), weights);
}

at::Tensor edge_scores(const at::Tensor& pruned_adjacency, const at::Tensor& weights) {
  at::Tensor normalized = normalize_rows(pruned_adjacency);
  const at::Tensor w = as_double_vector(weights, normalized.size(0), "edge_scores weights");
  const at::Tensor reach = influence(normalized, w).add_(w);
  return normalized.mul_(reach.unsqueeze(1));
}

double find_threshold(const at::Tensor& scores, double threshold) {
  check_threshold(threshold, "threshold");
  SAES_CHECK(scores.defined() && scores.device().is_cpu() && scores.is_floating_point(), DataError,
             "find_threshold: expected floating-point scores on the CPU");
  const at::Tensor flat = scores.to(at::kDouble).contiguous().view(-1);
  const double* p = flat.data_ptr<double>();
  std::vector<double> positive;
  for (std::int64_t i = 0; i < flat.numel(); ++i) {
    SAES_CHECK(p[i] >= 0.0, DataError, "find_threshold: scores must be non-negative, got {} at {}",
               p[i], i);
    if (p[i] > 0.0) positive.push_back(p[i]);
  }
  if (positive.empty()) return std::numeric_limits<double>::infinity();
  std::sort(positive.begin(), positive.end(), std::greater<>());
  const double total = std::accumulate(positive.begin(), positive.end(), 0.0);
  // searchsorted(cumsum / sum, threshold): the first index whose cumulative fraction reaches it;
  // rounding can leave the last fraction just below 1, hence the clamp to the last non-zero.
  double running = 0.0;
  for (const double s : positive) {
    running += s;
    if (running / total >= threshold) return s;
  }
  return positive.back();
}

PruneResult prune(const Graph& graph, double node_threshold, double edge_threshold) {
  check_threshold(node_threshold, "node_threshold");
  check_threshold(edge_threshold, "edge_threshold");
  check_graph(graph);
  const std::int64_t n = graph.n_nodes();
  const at::Tensor w = graph.target_weights();
  const at::Tensor a = graph.adjacency.to(at::kDouble).contiguous();

  PruneResult r;
  r.node_threshold = node_threshold;
  r.edge_threshold = edge_threshold;
  r.node_influence = node_influence(a, w);
  r.cumulative_influence = cumulative_influence(r.node_influence);
  const double node_cut = find_threshold(r.node_influence, node_threshold);
  r.node_mask = at::zeros({n}, at::kBool);
  bool* node = r.node_mask.data_ptr<bool>();
  const double* inf = r.node_influence.data_ptr<double>();
  for (std::int64_t i = 0; i < n; ++i)
    node[i] = inf[i] >= node_cut || always_kept(graph.nodes[static_cast<std::size_t>(i)]);

  at::Tensor pruned = a.clone();
  double* pa = pruned.data_ptr<double>();
  for (std::int64_t t = 0; t < n; ++t)
    for (std::int64_t s = 0; s < n; ++s)
      if (!node[t] || !node[s]) pa[t * n + s] = 0.0;
  const at::Tensor scores = edge_scores(pruned, w);
  pruned.reset();
  const double edge_cut = find_threshold(scores, edge_threshold);
  r.edge_mask = at::zeros({n, n}, at::kBool);
  bool* edge = r.edge_mask.data_ptr<bool>();
  const double* sc = scores.data_ptr<double>();
  for (std::int64_t i = 0; i < n * n; ++i) edge[i] = sc[i] >= edge_cut;
  prune_to_fixed_point(graph, node, edge);
  return r;
}

KeptGraph kept_graph(const Graph& graph, const PruneResult& pruned) {
  const std::int64_t n = graph.n_nodes();
  const auto ok = [&](const at::Tensor& t, std::int64_t dims, at::ScalarType type) {
    return t.defined() && t.dim() == dims && t.size(0) == n && (dims == 1 || t.size(1) == n) &&
           t.scalar_type() == type && t.device().is_cpu();
  };
  SAES_CHECK(ok(pruned.node_mask, 1, at::kBool) && ok(pruned.edge_mask, 2, at::kBool) &&
                 ok(pruned.node_influence, 1, at::kDouble) &&
                 ok(pruned.cumulative_influence, 1, at::kDouble),
             DataError, "graph: the prune result does not belong to this {}-node graph", n);
  check_graph(graph);
  for (std::int64_t i = 0; i < n; ++i) {
    const Node& node = graph.nodes[static_cast<std::size_t>(i)];
    const bool layered = node.kind == NodeKind::kFeature || node.kind == NodeKind::kError;
    SAES_CHECK(!layered || (node.layer >= 0 && node.layer < graph.n_layers), DataError,
               "graph: node {} has layer {}, expected 0..{}", i, node.layer, graph.n_layers - 1);
    SAES_CHECK(node.position >= 0 && node.position < graph.n_positions(), DataError,
               "graph: node {} has position {}, expected 0..{}", i, node.position,
               graph.n_positions() - 1);
  }
  const bool* keep = pruned.node_mask.data_ptr<bool>();
  const bool* edge = pruned.edge_mask.data_ptr<bool>();
  const at::Tensor a = graph.adjacency.to(at::kDouble).contiguous();
  const double* w = a.data_ptr<double>();
  KeptGraph out;
  std::vector<char> touched(static_cast<std::size_t>(n), 0);
  for (std::int64_t t = 0; t < n; ++t) {
    if (!keep[t]) continue;
    for (std::int64_t s = 0; s < n; ++s) {
      if (!edge[t * n + s] || !keep[s]) continue;
      out.links.push_back({s, t, w[t * n + s]});
      touched[static_cast<std::size_t>(t)] = touched[static_cast<std::size_t>(s)] = 1;
    }
  }
  for (std::int64_t i = 0; i < n; ++i) {
    const bool always = always_kept(graph.nodes[static_cast<std::size_t>(i)]);
    if (always || (keep[i] && touched[static_cast<std::size_t>(i)])) out.nodes.push_back(i);
  }
  return out;
}

GraphScores graph_scores(const Graph& graph) {
  check_graph(graph);
  const std::int64_t n = graph.n_nodes();
  const at::Tensor w = graph.target_weights();
  const at::Tensor normalized = normalize_rows(graph.adjacency);
  const at::Tensor inf = influence(normalized, w);
  const double* m = normalized.data_ptr<double>();
  const double* iv = inf.data_ptr<double>();
  const double* wv = w.data_ptr<double>();
  double token = 0.0, error = 0.0, covered = 0.0, weight = 0.0;
  std::vector<std::int64_t> errors;
  for (std::int64_t i = 0; i < n; ++i) {
    const NodeKind kind = graph.nodes[static_cast<std::size_t>(i)].kind;
    token += kind == NodeKind::kEmbedding ? iv[i] : 0.0;
    error += kind == NodeKind::kError ? iv[i] : 0.0;
    if (kind == NodeKind::kError) errors.push_back(i);
  }
  for (std::int64_t t = 0; t < n; ++t) {
    double from_errors = 0.0;
    for (const std::int64_t e : errors) from_errors += m[t * n + e];
    const double out = iv[t] + wv[t];
    covered += (1.0 - from_errors) * out;
    weight += out;
  }
  GraphScores scores;
  scores.replacement = token + error > 0.0 ? token / (token + error) : 0.0;
  scores.completeness = weight > 0.0 ? covered / weight : 0.0;
  return scores;
}

}  // namespace saes::circuits
