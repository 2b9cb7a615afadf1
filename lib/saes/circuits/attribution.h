// Attribution graphs over a local replacement model (issue #19; the method of the 2025 "Circuit
// Tracing" paper as circuit-tracer implements it, docs/circuits.md). For one prompt the model's
// attention patterns and norm denominators are frozen at the prompt's values
// (lm::FrozenState), every MLP output (and attention output, with a Lorsa) is written as
// dictionary features + an error node + a constant, and the direct effect of each node on each target is read from backward passes
// through that frozen, otherwise linear model — batched over targets, one target per batch row.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "saes/circuits/graph.h"

namespace saes::lm {
class Transformer;
}  // namespace saes::lm

namespace saes::dictionaries {
class SparseDictionary;
}  // namespace saes::dictionaries

namespace saes::circuits {

namespace detail {
struct State;
}  // namespace detail
struct PruneResult;

/// One dictionary of the replacement: a transcoder (its input hook and `blocks.L.hook_mlp_out`
/// of the same layer L), a CLT (per layer l: input_hooks()[l] and label_hooks()[l], both of
/// one model layer), or an attention replacement — a Lorsa reading blocks.L.hook_resid_pre or
/// blocks.L.ln1.hook_normalized and writing blocks.L.hook_attn_out. Non-owning; folded
/// (fold_activation_scale) and unsharded.
struct ReplacementDictionary {
  const dictionaries::SparseDictionary* dictionary = nullptr;
  std::string name;  ///< how the graph names it (the path in the config)
};

struct AttributionOptions {
  /// Salient logits: the most probable tokens until their probabilities sum to at least this,
  /// at most max_n_logits of them (circuit-tracer's defaults).
  double desired_logit_prob = 0.95;
  std::int64_t max_n_logits = 10;
  /// Named targets instead (vocabulary ids), when not empty.
  std::vector<std::int64_t> target_tokens;
  /// Chosen features as the graph's targets (pruning then weighs them, not the logits; the
  /// logit nodes stay, unweighted). Each must be active on the prompt.
  struct FeatureTarget {
    std::string dictionary;  ///< the dictionary's name; empty: the only one with such a feature
    std::int64_t layer = 0;
    std::int64_t position = -1;  ///< negative: from the end (-1: the last token)
    std::int64_t index = 0;
  };
  std::vector<FeatureTarget> target_features;
  /// Targets per backward pass (the batch rows of one frozen forward).
  std::int64_t batch_size = 32;
  /// Feature nodes whose input rows are computed (0: every active feature). With a budget they
  /// are chosen greedily by their influence on the logits through the rows computed so far.
  std::int64_t max_feature_nodes = 0;
  /// With a budget: the features are re-ranked every this many batches (circuit-tracer's
  /// update_interval; 1: before every batch), the batches between taking the next unvisited
  /// features of the last ranking.
  std::int64_t update_interval = 1;
  /// Position 0 (BOS) gets no feature or error nodes: its replaced outputs are constants (as
  /// circuit-tracer: the first token's features are attention-sink noise).
  bool zero_first_position = true;
};

/// The prompt's replacement model: the frozen state, the hook values of the real forward, every
/// dictionary's features and each replaced output's error and constant. Built once; attribute() and the
/// checks below read it.
class ReplacementModel {
 public:
  /// Runs the model once on `tokens` (one prompt, BOS included) recording the frozen state, and
  /// every dictionary on its input hooks. ConfigError naming the dictionary for a dictionary that
  /// does not replace MLP or attention outputs (its label hooks must be blocks.L.hook_mlp_out,
  /// its input hooks that layer's MLP input; or blocks.L.hook_attn_out read from that layer's
  /// attention input), two dictionaries writing one output, or d_model mismatches.
  ReplacementModel(const lm::Transformer& model, std::vector<std::int64_t> tokens,
                   std::vector<ReplacementDictionary> dictionaries,
                   bool zero_first_position = true);
  ~ReplacementModel();
  ReplacementModel(const ReplacementModel&) = delete;
  ReplacementModel& operator=(const ReplacementModel&) = delete;

  /// The model's own logits of the prompt [seq, d_vocab] (the recording forward).
  const at::Tensor& logits() const;
  /// The logits of the replacement model [seq, d_vocab]: the frozen forward with each replaced
  /// output recomputed as the dictionary's reconstruction of that forward's own input,
  /// plus the error (and constant) nodes. Equal to logits() up to float rounding.
  at::Tensor replacement_logits() const;

  /// The attribution graph: nodes (features, errors, embeddings, logit targets), the adjacency
  /// rows of the logits, of the target features and of the selected features
  /// (options.max_feature_nodes).
  Graph attribute(const AttributionOptions& options) const;

  /// QK tracing (qk_tracing.cpp) of the attention features `nodes` of `graph` (a graph of this
  /// prompt): for each, the key position its QK head attends to most, and the score there
  /// decomposed into the top `topk` (q-side node, k-side node) pairs and marginals, appended to
  /// graph.qk_traces. Backward passes of `batch_size` rows give every node's direct
  /// contribution to the head's query and key. ConfigError for a node that is not an attention
  /// feature, UnsupportedError for a dictionary whose score is not bilinear.
  void trace_qk(Graph& graph, const std::vector<std::int64_t>& nodes, std::int64_t topk,
                std::int64_t batch_size) const;

  /// Each node's value as a target (a logit target: its demeaned logit; a feature: its
  /// pre-activation without the encoder bias, an attention feature's mixed over the positions by
  /// its frozen pattern) and what the graph's nodes do not account for:
  /// the same target in a frozen forward where every node is zero and only the constants remain
  /// (biases, position 0's MLP outputs). For a target row t of a graph from attribute():
  /// value(t) = Σ_s adjacency[t][s] + constant(t) (the completeness check). [n_nodes] float64;
  /// embeddings and errors get 0.
  at::Tensor target_values(const Graph& graph) const;
  at::Tensor target_constants(const Graph& graph) const;

 private:
  std::unique_ptr<detail::State> state_;
};

/// The attention features QK tracing looks at (OpenMOSS's qk_top_fraction): of the attention
/// features the pruning kept, the max(1, ⌊n·fraction⌋) most influential (node_influence),
/// most influential first; empty when none was kept.
std::vector<std::int64_t> qk_tracing_nodes(const Graph& graph, const PruneResult& pruned,
                                           double fraction);

}  // namespace saes::circuits
