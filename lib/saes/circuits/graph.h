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

/// "feature", "error", "embedding", "logit": the store's kinds, the viewer's CSS classes and labels.
const char* kind_name(NodeKind kind);

/// One node of the graph. Which fields mean something depends on `kind`:
///   feature:   layer (the layer whose MLP — or attention, `attention` — the dictionary
///              replaces; a CLT: the source layer), position, index (the feature's index in that
///              layer's dictionary), activation (its value after the activation function),
///              dictionary (which one), pattern (attention features: the attention row its
///              pre-activation reads the positions with), target (a chosen target feature);
///   error:     layer, position, attention: what the dictionary misses of that MLP (attention)
///              output there;
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
  bool attention = false;  ///< features and errors of an attention output (Lorsa), not an MLP's
  bool target = false;     ///< a feature chosen as the graph's target (pruning weighs it)
  std::vector<double> pattern;  ///< attention features: weight per position (sums to 1)
  /// Logit nodes: the target token decoded on its own (the JSON clerp `Output "<it>" (p=…)`);
  /// when empty, writers show `#<index>` instead.
  std::string token_string;
};

/// A node of `kind` at (layer, position) with `index` (see Node), the other fields defaulted.
Node make_node(NodeKind kind, std::int64_t layer, std::int64_t position, std::int64_t index);

/// QK tracing of one attention feature (OpenMOSS's qk_tracing_results): why its QK head at the
/// feature's position q attends most to key position k — the score s = Q(q)·K(k) / scale
/// decomposed over the nodes' direct contributions to the head's input at q and at k.
/// With Q = Σ_s q_s + Q₀ and K = Σ_t k_t + K₀ (q_s, k_t: node s's / t's direct contribution;
/// Q₀, K₀: biases and constants of the frozen model): pair (s, t) = q_s·k_t, query marginal
/// of s = q_s·K, key marginal of t = Q·k_t, so Σ_s query(s) + Q₀·K = score (Q₀, K₀ from a
/// frozen forward where only the constants remain: a completeness check). The largest
/// (most attention-raising) `topk` of each are listed, largest first.
struct QkTrace {
  std::int64_t node = -1;        ///< the traced attention feature
  std::int64_t key_position = 0;  ///< argmax of its QK head's pattern row
  double score = 0.0;             ///< the attention score Q·K there (after the 1/scale)
  double constant = 0.0;          ///< Q₀·K₀: the part of the score no node holds
  double query_constant = 0.0;    ///< Q₀·K: Σ_s query(s) + this = score
  double key_constant = 0.0;      ///< Q·K₀: Σ_t key(t) + this = score
  struct Pair {
    std::int64_t query = -1, key = -1;
    double value = 0.0;
  };
  struct Marginal {
    std::int64_t node = -1;
    double value = 0.0;
  };
  std::vector<Pair> pairs;         ///< top pairs (q-side node, k-side node) by value
  std::vector<Marginal> query;     ///< top q-side nodes: contribution · K(k) / scale
  std::vector<Marginal> key;       ///< top k-side nodes: Q(q) · contribution / scale
};

/// An attribution graph. Node order (as circuit-tracer): every feature node (layer, then
/// attention before MLP, then position, then index), then n_layers × n_positions MLP error
/// nodes (layer-major: error of layer l at position p is node n_features + l·n_positions + p),
/// then n_positions attention error nodes per layer with an attention dictionary (ascending),
/// then one embedding per position, then the logit targets (most probable first).
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
  std::int64_t backward_passes = 0;  ///< batched backward passes (attribution + QK tracing)
  std::vector<QkTrace> qk_traces;     ///< QK tracing of attention features (may be empty)
  /// The replacement has attention outputs (some nodes are `attention`): layers are written
  /// interleaved (attention of layer l as 2l, its MLP as 2l + 1), as OpenMOSS's graphs.
  /// check_graph refuses an attention node in a graph without it.
  bool interleaved = false;

  std::int64_t n_nodes() const { return static_cast<std::int64_t>(nodes.size()); }
  std::int64_t n_positions() const { return static_cast<std::int64_t>(tokens.size()); }
  std::int64_t count(NodeKind kind) const;
  /// Pruning weights [n_nodes] float64: 1/n at the n chosen target features when there are
  /// any, else the logit nodes' probabilities; 0 elsewhere.
  at::Tensor target_weights() const;

};

}  // namespace saes::circuits
