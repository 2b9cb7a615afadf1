// The inside of a ReplacementModel (attribution.cpp builds it, attribution_rows.cpp and
// qk_tracing.cpp read it): the prompt's frozen state and hook values, the replaced output sites
// (every MLP output; the attention output of layers with an attention dictionary), the
// dictionaries' features, and the target contractions the backward passes differentiate.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>

#include "saes/circuits/attribution.h"
#include "saes/dictionaries/sparse_dictionary.h"
#include "saes/lm/hooks.h"
#include "saes/lm/transformer.h"

namespace saes::circuits::detail {

/// One output the replacement model writes: an MLP output (every layer) or an attention output
/// (a layer with an attention dictionary), with what the recording forward gave there.
struct Site {
  std::string hook;
  std::int64_t layer = 0;
  bool attention = false;
  at::Tensor out, error, constant;  ///< [T, d] float32
  int dict = -1;                    ///< the dictionary writing it (-1: all error)
  std::int64_t label = 0;           ///< which of that dictionary's label hooks
};

/// One dictionary with its hooks mapped to model layers and sites, and its features.
struct Dict {
  const dictionaries::SparseDictionary* d = nullptr;
  std::string name;
  std::vector<std::string> in_hooks, out_hooks;
  std::vector<std::int64_t> source_layer;  ///< model layer of in_hooks[l]
  std::vector<std::size_t> target_site;    ///< site of out_hooks[t]
  bool attention = false;                  ///< writes attention outputs
  bool sequence = false;                   ///< reads_sequences(): inputs [1, T, d]
  at::Tensor features;                     ///< [T, source layers, d_sae] float32
  at::Tensor input;                        ///< prepare_input of the prompt (sequence dicts)
};

/// A feature node of the graph and where its activation lives.
struct FeatureRef {
  std::size_t dict = 0;
  std::int64_t source = 0;  ///< index into Dict::in_hooks
  std::int64_t layer = 0;   ///< model layer
  bool attention = false;
  std::int64_t position = 0;
  std::int64_t index = 0;
  double activation = 0.0;
};

/// What one target row reads: Σ_k weights[k]·(hook[k] · vector), a captured hook contracted
/// with `vector` at `position` (weights undefined) or mixed over positions (attention features).
struct Target {
  std::string hook;
  std::int64_t position = 0;
  at::Tensor vector;   ///< [d_model] float64
  at::Tensor weights;  ///< [T] float64, or undefined: one-hot at position
  /// The value of this target on a forward's captured hook [T, d] (any dtype) → float64 scalar.
  at::Tensor read(const at::Tensor& acts) const;
};

struct State {
  const lm::Transformer& model;
  std::vector<std::int64_t> tokens;
  at::Tensor token_tensor;  ///< [1, T]
  bool zero_first = true;
  mutable lm::FrozenState frozen;
  std::int64_t n_layers = 0, T = 0, d = 0;
  std::map<std::string, at::Tensor> captured;  ///< the recording forward's hooks, [1, T, ...]
  at::Tensor embed;                            ///< [T, d]
  at::Tensor logits;                           ///< [T, d_vocab]: the recording forward's
  std::vector<Site> sites;                     ///< MLP sites 0..n_layers-1, then attention
  std::vector<Dict> dicts;
  std::vector<FeatureRef> features;  ///< sorted by (layer, attention first, position, index)

  explicit State(const lm::Transformer& m) : model(m) {}

  /// Dictionary k's raw inputs from hook values [1, T, d] (`live` first, else the prompt's).
  dictionaries::HookActs inputs(std::size_t k,
                                const std::map<std::string, at::Tensor>& live = {}) const;
  /// The features of dictionary `k` on raw inputs (position 0 zeroed when asked): the
  /// dictionary's own layout and [T, source layers, d_sae].
  std::pair<at::Tensor, at::Tensor> encode(std::size_t k, const dictionaries::HookActs& raw) const;
  /// The reconstruction of every label hook of dictionary `k` from features f: [targets, T, d].
  at::Tensor reconstruct(std::size_t k, const dictionaries::HookActs& raw,
                         const at::Tensor& f) const;

  /// The demeaned unembedding direction of token v read at ln_final.hook_normalized.
  at::Tensor logit_vector(std::int64_t v) const;
  mutable at::Tensor unembed_mean;  ///< mean over the vocabulary of the unembedding rows

  /// The feature of graph node `i` (a graph from attribute() has feature i at node i; other
  /// graphs' nodes are looked up). DataError when it is not active on the prompt.
  const FeatureRef& feature_of(const Graph& graph, std::int64_t i) const;
  /// The target of node `i` of `graph` (a logit or a feature).
  Target target_of(const Graph& graph, std::int64_t i) const;
  /// The attention row [T] float64 that feature f's pre-activation reads (sequence dicts).
  at::Tensor mixing_of(const FeatureRef& f) const;
  mutable std::map<std::pair<std::size_t, std::int64_t>, at::Tensor> mixing_;  ///< per (dict, q)

  /// Frozen forward over `rows` copies of the prompt with the embedding and every site's output
  /// replaced by `embed_in` / `site_in` ([rows, T, d] each), capturing `hooks`.
  std::map<std::string, at::Tensor> frozen_forward(const at::Tensor& embed_in,
                                                   const std::vector<at::Tensor>& site_in,
                                                   const std::set<std::string>& hooks,
                                                   lm::GradMode mode) const;

  /// Node columns: feature c at c, the error of site s at position p at error_column(s) + p,
  /// the embeddings from embed_column().
  std::int64_t error_column(std::size_t site) const {
    return static_cast<std::int64_t>(features.size()) + static_cast<std::int64_t>(site) * T;
  }
  std::int64_t embed_column() const { return error_column(sites.size()); }

  /// Adjacency rows [targets.size(), n_nodes] of `targets` (one backward per batch of rows).
  at::Tensor rows(const std::vector<Target>& targets, std::int64_t n_nodes,
                  std::int64_t batch_size) const;
  mutable std::int64_t backward_passes = 0;  ///< counted by rows()

  /// The feature columns grouped per (dictionary, source, target site): the rows() contraction
  /// operands, built once per prompt.
  struct SourceGroup {
    std::size_t site;
    at::Tensor columns, positions, decoders;  // [n], [n], [n, d] float64 (scaled by activation)
  };
  const std::vector<SourceGroup>& source_groups() const;
  mutable std::vector<SourceGroup> groups_;
};

}  // namespace saes::circuits::detail
