// Graph: node counts and the target weights that pruning and the scores read.
#include "saes/circuits/graph.h"

#include <ATen/ops/zeros.h>

namespace saes::circuits {

const char* kind_name(NodeKind kind) {
  switch (kind) {
    case NodeKind::kFeature:
      return "feature";
    case NodeKind::kError:
      return "error";
    case NodeKind::kEmbedding:
      return "embedding";
    case NodeKind::kLogit:
      return "logit";
  }
  return "";
}

Node make_node(NodeKind kind, std::int64_t layer, std::int64_t position, std::int64_t index) {
  Node n;
  n.kind = kind;
  n.layer = layer;
  n.position = position;
  n.index = index;
  return n;
}

std::int64_t Graph::count(NodeKind kind) const {
  std::int64_t n = 0;
  for (const Node& node : nodes) n += node.kind == kind ? 1 : 0;
  return n;
}

at::Tensor Graph::target_weights() const {
  at::Tensor w = at::zeros({n_nodes()}, at::kDouble);
  double* out = w.data_ptr<double>();
  std::int64_t chosen = 0;
  for (const Node& node : nodes) chosen += node.target ? 1 : 0;
  for (std::int64_t i = 0; i < n_nodes(); ++i) {
    const Node& node = nodes[static_cast<std::size_t>(i)];
    if (chosen > 0) {
      out[i] = node.target ? 1.0 / static_cast<double>(chosen) : 0.0;
    } else if (node.kind == NodeKind::kLogit) {
      out[i] = node.probability;
    }
  }
  return w;
}

}  // namespace saes::circuits
