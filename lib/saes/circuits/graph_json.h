// A pruned attribution graph as circuit-tracer / Neuronpedia graph JSON (docs/circuits.md): the
// node and link selection (make_graph_json), the node-id scheme, an atomic writer that refuses to
// overwrite, and a reader. The SQLite copy for the viewer is graph_store.h's.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "saes/circuits/graph.h"
#include "saes/circuits/pruning.h"

namespace saes::circuits {

/// A node's `qk_tracing_results` (OpenMOSS): [q_node_id, k_node_id, value] pairs and
/// [node_id, value] marginals.
struct JsonQkTrace {
  struct Pair {
    std::string query, key;
    double value = 0.0;
  };
  std::vector<Pair> pairs;
  std::vector<std::pair<std::string, double>> query, key;
};

/// One element of the JSON `nodes` array.
struct JsonNode {
  std::string node_id;                  ///< unique; links refer to it
  std::optional<std::int64_t> feature;  ///< Cantor(layer, index) / -1 / position / vocab id
  /// "0".."L-1", "E", or the logit layer str(n_layers + 1); interleaved (a graph with attention
  /// features, as OpenMOSS): attention of layer l "2l", its MLP "2l+1", logits str(2·n_layers)
  std::string layer;
  std::int64_t ctx_idx = 0;
  /// "cross layer transcoder", "mlp reconstruction error", "lorsa", "lorsa error", "embedding"
  /// or "logit"
  std::string feature_type;
  std::string js_node_id;  ///< the JSON `jsNodeId`
  std::string clerp;
  std::optional<double> influence;   ///< cumulative influence; null for logits
  std::optional<double> activation;  ///< features only
  double token_prob = 0.0;           ///< logits only
  bool is_target_logit = false;      ///< the first (most probable) logit only
  std::int64_t graph_index = -1;     ///< index in Graph::nodes (not in the file; -1 when read)
  std::vector<double> lorsa_pattern;  ///< attention features: their attention row
  std::optional<JsonQkTrace> qk_tracing_results;
  bool is_from_qk_tracing = false;  ///< kept only as a QK tracing contributor (no links)
};

/// One element of `links`: the raw signed direct effect adjacency[target][source].
struct JsonLink {
  std::string source;
  std::string target;
  double weight = 0.0;
};

/// `metadata` (with `pruning_settings`, `generation_settings` and `info.generator` flattened).
struct JsonMetadata {
  std::string slug;
  std::string scan;  ///< the model name
  std::vector<std::string> prompt_tokens;
  std::string prompt;
  std::int64_t schema_version = 1;
  std::optional<double> node_threshold;
  std::optional<double> edge_threshold;
  std::optional<std::int64_t> max_n_logits;
  std::optional<double> desired_logit_prob;
  std::optional<std::int64_t> batch_size;
  std::optional<std::int64_t> max_feature_nodes;  ///< 0: every active feature
  std::string generator_name;                     ///< info.generator.name ("saes" when we wrote it)
  std::string generator_version;                  ///< info.generator.version
  std::optional<std::int64_t> create_time_ms;
};

struct GraphJson {
  JsonMetadata metadata;
  std::vector<JsonNode> nodes;
  std::vector<JsonLink> links;
};

/// The layer a node is written with: its model layer (embeddings -1, logits n_layers + 1), or
/// in an interleaved graph (Graph::interleaved) 2l for attention and 2l + 1 for MLP nodes of
/// layer l and 2·n_layers for logits.
std::int64_t display_layer(const Graph& graph, const Node& node);
/// circuit-tracer's node ids of graph.nodes[index] (l: display_layer): feature (l, p, i) "l_i_p", error "l_-1_p",
/// embedding (token t) "E_t_p", logit (vocab v at position P) "{logit layer}_v_P".
std::string node_id(const Graph& graph, std::int64_t index);
/// The front-end's jsNodeId: "l_i-0", "l_-1-p", "E_t-p", "L_v-P".
std::string js_node_id(const Graph& graph, std::int64_t index);
/// Throws ConfigError naming `slug` unless it is non-empty and made of letters, digits, '.', '_'
/// and '-', not starting with '.' (it names files and URLs).
void check_slug(const std::string& slug);
/// Cantor pairing (l + i)(l + i + 1)/2 + i, the `feature` of a schema-1 feature node.
std::int64_t cantor_pair(std::int64_t layer, std::int64_t index);

/// The JSON content of a pruned graph: kept nodes in graph order, links for kept edges between
/// kept nodes, then nodes touched by no link dropped except embeddings and logits. When no
/// emitted feature or error node has a layer ≥ 1 (the Neuronpedia front-end refuses such a
/// graph: "No layer found"), the most influential feature or error node of a layer ≥ 1 is added
/// without links. Throws ConfigError for a bad slug (check_slug), UnsupportedError when the
/// graph has no such node (a 1-layer model), DataError for a malformed graph.
GraphJson make_graph_json(const Graph& graph, const PruneResult& pruned, const std::string& slug);

/// The document as text (2-space indented), with qParams and info.generator (saes, its version).
std::string graph_json_text(const GraphJson& graph);

/// Writes graph_json_text atomically to `path`. An existing file is replaced only when
/// `overwrite` is true, else ConfigError naming the path; IoError when the write fails.
void write_graph_json(const std::filesystem::path& path, const GraphJson& graph, bool overwrite);

/// Reads a graph JSON (ours or circuit-tracer's). A numeric `layer` is read as its decimal text.
/// Throws IoError for a missing file, DataError naming the path and the key for bad content.
GraphJson read_graph_json(const std::filesystem::path& path);
/// The same from text; `name` appears in error messages.
GraphJson parse_graph_json(const std::string& text, const std::string& name);

}  // namespace saes::circuits
