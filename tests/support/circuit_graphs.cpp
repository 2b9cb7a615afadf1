// Hand-made attribution graphs for the [circuits] tests (see circuit_graphs.h).
#include "support/circuit_graphs.h"

#include <ATen/ATen.h>

namespace saes::testing {

using circuits::Graph;
using circuits::Node;
using circuits::NodeKind;

namespace {

Node feature(std::int64_t layer, std::int64_t position, std::int64_t index, double activation) {
  Node n;
  n.kind = NodeKind::kFeature;
  n.layer = layer;
  n.position = position;
  n.index = index;
  n.activation = activation;
  n.dictionary = "runs/plt/L" + std::to_string(layer);
  return n;
}

Node other(NodeKind kind, std::int64_t layer, std::int64_t position, std::int64_t index) {
  return circuits::make_node(kind, layer, position, index);
}

}  // namespace

Graph small_graph() {
  Graph g;
  g.prompt = "<s> cat sat";
  g.tokens = {1, 42, 17};
  g.token_strings = {"<s>", " cat", " sat"};
  g.model_name = "tiny-2l";
  g.n_layers = 2;
  g.max_n_logits = 10;
  g.desired_logit_prob = 0.95;
  g.batch_size = 4;
  g.nodes = {feature(0, 1, 5, 1.5), feature(0, 2, 7, 2.0), feature(1, 1, 9, 0.25),
             feature(1, 2, 3, 0.5)};
  for (std::int64_t l = 0; l < 2; ++l)
    for (std::int64_t p = 0; p < 3; ++p) g.nodes.push_back(other(NodeKind::kError, l, p, -1));
  for (std::int64_t p = 0; p < 3; ++p)
    g.nodes.push_back(other(NodeKind::kEmbedding, -1, p, g.tokens[static_cast<std::size_t>(p)]));
  Node top = other(NodeKind::kLogit, -1, 2, 100);
  top.probability = 0.6;
  top.token_string = " on";
  Node second = other(NodeKind::kLogit, -1, 2, 200);
  second.probability = 0.3;
  second.token_string = " down";
  g.nodes.push_back(top);
  g.nodes.push_back(second);

  struct Edge {
    int target, source;
    float weight;
  };
  const Edge edges[] = {{0, 11, 2.0F}, {0, 10, 0.5F},  {1, 12, 1.0F}, {1, 11, -0.5F},
                        {3, 0, 0.5F},  {3, 1, 1.5F},   {3, 6, 0.3F},  {3, 12, -0.2F},
                        {13, 3, 2.0F}, {13, 1, 0.5F},  {13, 9, 0.4F}, {13, 12, 0.1F},
                        {13, 2, 0.3F}, {14, 3, -1.0F}, {14, 0, 0.3F}, {14, 12, 0.2F}};
  at::Tensor a = at::zeros({15, 15}, at::kFloat);
  float* p = a.data_ptr<float>();
  for (const Edge& e : edges) p[e.target * 15 + e.source] = e.weight;
  g.adjacency = a;
  return g;
}

Graph one_layer_graph() {
  Graph g;
  g.prompt = "<s>";
  g.tokens = {1};
  g.token_strings = {"<s>"};
  g.model_name = "tiny-1l";
  g.n_layers = 1;
  g.nodes = {other(NodeKind::kError, 0, 0, -1), other(NodeKind::kEmbedding, -1, 0, 1),
             other(NodeKind::kLogit, -1, 0, 7)};
  g.nodes[2].probability = 1.0;
  g.adjacency = at::zeros({3, 3}, at::kFloat);
  g.adjacency[2][0] = 1.0;
  g.adjacency[2][1] = 1.0;
  return g;
}

}  // namespace saes::testing
