// Graph: an attribution graph of one prompt (issue #19) — its nodes (active features per layer and
// position, error nodes, token embeddings, target logits), the direct-effect adjacency between
// them, and what the prompt and the dictionaries were. attribution.h builds one; pruning.h keeps
// its most influential part; graph_json.h writes it in the circuit-tracer / Neuronpedia format
// and graph_store.h into SQLite for the viewer.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

namespace saes::circuits {

enum class NodeKind { kFeature, kError, kEmbedding, kLogit };

/// One node of the graph. Which fields mean something depends on `kind`:
///   feature:   layer (the layer whose MLP the dictionary replaces; a CLT: the source layer),
///              position, index (the feature's index in that layer's dictionary), activation
///              (its value after the activation function), dictionary (which one);
///   error:     layer, position: what the dictionary misses of that MLP output there;
///   embedding: position, index = the token id;
///   logit:     position (the last one), index = the vocabulary id, probability (softmax),
///              activation = the target's value (the logit minus the mean logit).
struct Node {
  NodeKind kind = NodeKind::kFeature;
  std::int64_t layer = -1;
  std::int64_t position = 0;
  std::int64_t index = -1;
  double activation = 0.0;
  double probability = 0.0;
  std::string dictionary;  ///< feature nodes: the dictionary's path as given in the config
  /// Logit nodes: the target token decoded on its own (the JSON clerp `Output "<it>" (p=…)`);
  /// when empty, writers show `#<index>` instead.
  std::string token_string;
};

/// An attribution graph. Node order (as circuit-tracer): every feature node (layer, then
/// position, then index), then n_layers × n_positions error nodes (layer-major: error of layer l
/// at position p is node n_features + l·n_positions + p), then one embedding per position, then
/// the logit targets (most probable first).
struct Graph {
  std::string prompt;                       ///< the text, as given (or decoded from ids)
  std::vector<std::int64_t> tokens;         ///< prompt token ids (BOS included when prepended)
  std::vector<std::string> token_strings;   ///< each token decoded on its own
  std::string model_name;                   ///< model identifier (e.g. the config's model_name)
  std::int64_t n_layers = 0;                ///< layers of the model
  std::vector<Node> nodes;
  /// [n_nodes, n_nodes] float32 on the CPU: adjacency[t][s] = the direct (linear, through the
  /// frozen replacement model) effect of source node s on target node t — on a feature's
  /// pre-activation, on a logit target's value. Rows of embeddings and errors are zero, as are
  /// the rows of features whose inputs were not computed (a max_feature_nodes budget).
  at::Tensor adjacency;
  /// The settings the graph was made with (informational, written into the JSON metadata).
  double desired_logit_prob = 0.95;
  std::int64_t max_n_logits = 10;
  std::int64_t max_feature_nodes = 0;  ///< 0: every active feature
  std::int64_t batch_size = 0;
  std::int64_t backward_passes = 0;  ///< batched backward passes the attribution took

  std::int64_t n_nodes() const { return static_cast<std::int64_t>(nodes.size()); }
  std::int64_t n_positions() const { return static_cast<std::int64_t>(tokens.size()); }
  std::int64_t count(NodeKind kind) const;
  /// The logit nodes' probabilities as pruning weights: [n_nodes] float64, 0 except at logits.
  at::Tensor logit_weights() const;
};

}  // namespace saes::circuits
