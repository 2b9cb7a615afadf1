// The graph store (docs/circuits.md, docs/analysis-db.md): pruned attribution graphs in one SQLite
// file, `graphs.sqlite` beside the analysis databases: add a graph, list them, read one with its
// nodes and links for the viewer's graph page. The JSON for Neuronpedia is graph_json.h's.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "saes/circuits/graph.h"
#include "saes/circuits/pruning.h"

namespace saes::io {
class SqliteDatabase;
}  // namespace saes::io

namespace saes::circuits {

/// 2 adds the QK tracing tables; a version-1 store is read as one without QK traces and gains
/// them when opened for writing.
inline constexpr std::int64_t kGraphStoreSchemaVersion = 2;
inline constexpr const char* kGraphStoreFileName = "graphs.sqlite";

/// One row of `graphs`.
struct GraphMeta {
  std::string id;  ///< the slug
  std::string prompt;
  std::vector<std::string> prompt_tokens;  ///< each token decoded on its own
  std::vector<std::int64_t> token_ids;
  std::string model;
  std::int64_t n_layers = 0;
  std::int64_t n_positions = 0;
  std::string created;   ///< UTC, ISO 8601 ("2026-01-31T12:00:00Z")
  std::string settings;  ///< JSON: generation_settings, pruning_settings, dictionaries
  double replacement_score = 0.0;
  double completeness_score = 0.0;
  double node_threshold = 0.0;
  double edge_threshold = 0.0;
  std::int64_t n_nodes = 0;       ///< nodes of the unpruned graph
  std::int64_t n_kept_nodes = 0;  ///< nodes kept (what the JSON holds)
  std::int64_t n_links = 0;
};

/// One row of `graph_nodes`: a node of the unpruned graph.
struct NodeRow {
  std::int64_t index = 0;  ///< in the unpruned graph's node order
  std::string node_id;     ///< circuit-tracer's id (graph_json.h node_id)
  NodeKind kind = NodeKind::kFeature;
  std::optional<std::int64_t> layer;  ///< features and errors: the model layer
  bool attention = false;             ///< an attention feature / error (stored kind "attention …")
  std::int64_t position = 0;          ///< x of the graph page
  /// Features: the index in the layer's dictionary; embeddings and logits: the token id.
  std::optional<std::int64_t> feature_index;
  std::optional<double> activation;   ///< features
  std::optional<double> probability;  ///< logits
  std::optional<double> influence;    ///< cumulative influence (lower = more important); not logits
  std::string dictionary;             ///< features: the dictionary's path
  std::string label;                  ///< embeddings: the prompt token; logits: the target token
  bool kept = false;
};

/// One row of `graph_links`: the raw signed direct effect of source on target.
struct LinkRow {
  std::string source;  ///< node_id
  std::string target;  ///< node_id
  double weight = 0.0;
};

/// A graph as the viewer's graph page reads it.
struct GraphView {
  GraphMeta meta;
  std::vector<NodeRow> nodes;  ///< by index
  std::vector<LinkRow> links;  ///< by target, then source
};

/// A node's strongest kept links, each side sorted by |weight| descending.
struct NodeEdges {
  std::vector<LinkRow> incoming;
  std::vector<LinkRow> outgoing;
};

/// The QK trace of one attention feature (graph.h QkTrace) with node ids for node indices.
struct QkTraceRow {
  std::int64_t key_position = 0;
  double score = 0.0, constant = 0.0, query_constant = 0.0, key_constant = 0.0;
  struct Term {
    std::string query, key;  ///< node ids; a marginal has only one of them
    double value = 0.0;
  };
  std::vector<Term> pairs, query, key;  ///< largest first
};

enum class GraphStoreMode { kReadOnly, kWrite };

/// Errors: IoError naming the file (missing, unreadable), DataError for a file that is not a
/// graph store or a graph that is not there, ConfigError for a duplicate id.
class GraphStore {
 public:
  /// `<folder of analysis_db>/graphs.sqlite`.
  static std::filesystem::path path_beside(const std::filesystem::path& analysis_db);

  /// kReadOnly needs an existing store; kWrite creates it (atomically) when absent.
  explicit GraphStore(const std::filesystem::path& path,
                      GraphStoreMode mode = GraphStoreMode::kReadOnly);
  ~GraphStore();
  GraphStore(GraphStore&&) noexcept;
  GraphStore& operator=(GraphStore&&) = delete;

  /// Stores `graph` pruned as `pruned` under `id` (a slug, graph_json.h rules), in one
  /// transaction: every node with its kept flag (kept = in the JSON) and the kept links. An
  /// existing id is replaced only when `overwrite`, else ConfigError. Needs kWrite.
  void add_graph(const Graph& graph, const PruneResult& pruned, const GraphScores& scores,
                 const std::string& id, bool overwrite = false);
  bool contains(const std::string& id) const;
  /// Every graph, oldest first.
  std::vector<GraphMeta> list_graphs() const;
  /// One graph; kept_only: only the kept nodes. DataError naming the id when it is not there.
  GraphView load_graph(const std::string& id, bool kept_only = true) const;
  /// The `k` strongest incoming and outgoing links of `node_id` in graph `id` (k ≥ 1).
  NodeEdges node_edges(const std::string& id, const std::string& node_id,
                       std::int64_t k = 10) const;

  /// The QK trace of attention feature `node_id` in graph `id`, if it was traced.
  std::optional<QkTraceRow> qk_trace(const std::string& id, const std::string& node_id) const;

  const std::filesystem::path& path() const { return path_; }

 private:
  GraphMeta read_meta(const std::string& id) const;

  std::filesystem::path path_;
  bool writable_ = false;
  bool has_qk_ = true;  ///< a version-1 store opened read-only has no QK tables
  std::unique_ptr<io::SqliteDatabase> db_;
};

}  // namespace saes::circuits
