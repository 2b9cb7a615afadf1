// Circuit-tracing knobs (issue #19): the targets, the attribution's batching and budget, and the
// pruning thresholds. Defaults are circuit-tracer's (docs/circuits.md).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace saes::circuits {

struct AttributionConfig {
  double desired_logit_prob = 0.95;
  std::int64_t max_n_logits = 10;
  std::optional<std::vector<std::string>> target_tokens;
  std::int64_t batch_size = 32;
  std::int64_t max_feature_nodes = 0;
  bool zero_first_position = true;
  double node_threshold = 0.8;
  double edge_threshold = 0.98;

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
    v("zero_first_position", zero_first_position,
      "no feature or error nodes at position 0 (BOS); its MLP outputs become constants");
    v("node_threshold", node_threshold, "pruning: keep the nodes holding this share of influence");
    v("edge_threshold", edge_threshold, "pruning: keep the edges holding this share of influence");
  }
  bool operator==(const AttributionConfig&) const = default;
};

}  // namespace saes::circuits
