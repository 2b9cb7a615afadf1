// Circuit-tracing knobs (issue #19): the targets, the attribution's batching and budget, the
// pruning thresholds and QK tracing. Defaults are circuit-tracer's (docs/circuits.md).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace saes::circuits {

/// A chosen feature as an attribution target (`attribution.target_features` items).
struct TargetFeatureConfig {
  std::optional<std::string> dictionary;
  std::int64_t layer = 0;
  std::int64_t position = -1;
  std::int64_t index = 0;

  template <class V>
  void visit_fields(V& v) {
    v("dictionary", dictionary,
      "the dictionary, as listed in `dictionaries` (null: the only one with such a feature)");
    v.required("layer", layer, "the model layer of the feature (a clt: its source layer)");
    v("position", position, "the token position (negative: from the end; -1 the last token)");
    v.required("index", index, "the feature's index in its layer's dictionary");
  }
  bool operator==(const TargetFeatureConfig&) const = default;
};

struct AttributionConfig {
  double desired_logit_prob = 0.95;
  std::int64_t max_n_logits = 10;
  std::optional<std::vector<std::string>> target_tokens;
  std::int64_t batch_size = 32;
  std::int64_t max_feature_nodes = 0;
  std::int64_t update_interval = 1;
  bool zero_first_position = true;
  double node_threshold = 0.8;
  double edge_threshold = 0.98;
  std::vector<TargetFeatureConfig> target_features;
  bool enable_qk_tracing = false;
  double qk_top_fraction = 0.6;
  std::int64_t qk_topk = 10;

  template <class V>
  void visit_fields(V& v) {
    v("desired_logit_prob", desired_logit_prob,
      "salient logit targets: the most probable next tokens until they hold this probability");
    v("max_n_logits", max_n_logits, "at most this many logit targets");
    v("target_tokens", target_tokens,
      "named logit targets instead (token texts, each exactly one token; null: salient logits)");
    v("batch_size", batch_size, "target rows per backward pass (prompt copies per frozen forward)");
    v("max_feature_nodes", max_feature_nodes,
      "feature nodes whose inputs are attributed, chosen greedily by influence (0: every active "
      "feature)");
    v("update_interval", update_interval,
      "with a budget: re-rank the features by influence every this many batches (1: before each)");
    v("zero_first_position", zero_first_position,
      "no feature or error nodes at position 0 (BOS); its MLP outputs become constants");
    v("node_threshold", node_threshold, "pruning: keep the nodes holding this share of influence");
    v("edge_threshold", edge_threshold, "pruning: keep the edges holding this share of influence");
    v("target_features", target_features,
      "chosen features as the graph's targets instead of the logits (each active on the prompt; "
      "empty: the logit targets)");
    v("enable_qk_tracing", enable_qk_tracing,
      "QK tracing of the most influential attention (lorsa) features kept by the pruning");
    v("qk_top_fraction", qk_top_fraction,
      "QK tracing: this fraction of the kept attention features, most influential first");
    v("qk_topk", qk_topk, "QK tracing: pairs and marginals listed per traced feature");
  }
  bool operator==(const AttributionConfig&) const = default;
};

}  // namespace saes::circuits
