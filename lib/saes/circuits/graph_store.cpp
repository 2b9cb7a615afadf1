// The graph store: schema (docs/circuits.md "The graph store"), atomic creation, adding graphs in
// one transaction, and the read API of the viewer's graph page.
#include "saes/circuits/graph_store.h"

#include <algorithm>
#include <ctime>
#include <system_error>
#include <tuple>
#include <utility>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include "saes/circuits/graph_json.h"
#include "saes/core/error.h"
#include "saes/io/sqlite.h"

namespace saes::circuits {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
constexpr const char* kStoreKind = "saes graph store";

constexpr const char* kSchema = R"sql(
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE graphs (id TEXT PRIMARY KEY, prompt TEXT NOT NULL, prompt_tokens TEXT NOT NULL,
                     token_ids TEXT NOT NULL, model TEXT NOT NULL, n_layers INTEGER NOT NULL,
                     n_positions INTEGER NOT NULL, created TEXT NOT NULL, settings TEXT NOT NULL,
                     replacement_score REAL NOT NULL, completeness_score REAL NOT NULL,
                     node_threshold REAL NOT NULL, edge_threshold REAL NOT NULL,
                     n_nodes INTEGER NOT NULL, n_kept_nodes INTEGER NOT NULL,
                     n_links INTEGER NOT NULL);
CREATE TABLE graph_nodes (graph TEXT NOT NULL, idx INTEGER NOT NULL, node_id TEXT NOT NULL,
                          kind TEXT NOT NULL, layer INTEGER, position INTEGER NOT NULL,
                          feature_index INTEGER, activation REAL, probability REAL,
                          influence REAL, dictionary TEXT NOT NULL, label TEXT NOT NULL,
                          kept INTEGER NOT NULL,
                          PRIMARY KEY (graph, idx), UNIQUE (graph, node_id));
CREATE TABLE graph_links (graph TEXT NOT NULL, source TEXT NOT NULL, target TEXT NOT NULL,
                          weight REAL NOT NULL, PRIMARY KEY (graph, source, target));
CREATE INDEX graph_links_by_target ON graph_links (graph, target);
)sql";

/// Schema 2: QK tracing (created by a new store, or added to a version-1 one opened to write).
constexpr const char* kQkSchema = R"sql(
CREATE TABLE IF NOT EXISTS graph_qk_traces (graph TEXT NOT NULL, node_id TEXT NOT NULL,
                          key_position INTEGER NOT NULL, score REAL NOT NULL,
                          constant REAL NOT NULL, query_constant REAL NOT NULL,
                          key_constant REAL NOT NULL, PRIMARY KEY (graph, node_id));
CREATE TABLE IF NOT EXISTS graph_qk_terms (graph TEXT NOT NULL, node_id TEXT NOT NULL,
                          role TEXT NOT NULL, rank INTEGER NOT NULL, query_node TEXT,
                          key_node TEXT, value REAL NOT NULL,
                          PRIMARY KEY (graph, node_id, role, rank));
)sql";

constexpr const char* kMetaColumns =
    "id, prompt, prompt_tokens, token_ids, model, n_layers, n_positions, created, settings, "
    "replacement_score, completeness_score, node_threshold, edge_threshold, n_nodes, "
    "n_kept_nodes, n_links";

/// The stored kind: kind_name, prefixed "attention " for attention features and errors.
std::string stored_kind(const Node& n) {
  return n.attention ? fmt::format("attention {}", kind_name(n.kind)) : kind_name(n.kind);
}

/// parse of stored_kind: the kind and whether it is an attention node.
std::pair<NodeKind, bool> parse_kind(const std::string& text, const fs::path& path) {
  const std::string prefix = "attention ";
  const bool attention = text.rfind(prefix, 0) == 0;
  const std::string kind = attention ? text.substr(prefix.size()) : text;
  for (const NodeKind k :
       {NodeKind::kFeature, NodeKind::kError, NodeKind::kEmbedding, NodeKind::kLogit})
    if (kind == kind_name(k) &&
        (!attention || k == NodeKind::kFeature || k == NodeKind::kError))
      return {k, attention};
  SAES_THROW(DataError, "graph store {}: unknown node kind \"{}\"", path.string(), text);
}

std::string utc_now() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return text;
}

std::string settings_json(const Graph& graph, const PruneResult& pruned) {
  json dictionaries = json::array();
  for (const Node& n : graph.nodes)
    if (n.kind == NodeKind::kFeature && !n.dictionary.empty() &&
        std::find(dictionaries.begin(), dictionaries.end(), n.dictionary) == dictionaries.end())
      dictionaries.push_back(n.dictionary);
  json s;
  s["generation_settings"] = {{"max_n_logits", graph.max_n_logits},
                              {"desired_logit_prob", graph.desired_logit_prob},
                              {"batch_size", graph.batch_size},
                              {"max_feature_nodes", graph.max_feature_nodes}};
  s["pruning_settings"] = {{"node_threshold", pruned.node_threshold},
                           {"edge_threshold", pruned.edge_threshold}};
  s["dictionaries"] = std::move(dictionaries);
  return s.dump();
}

/// Builds the empty store beside `path` and links it into place, so that no half-made store is
/// ever visible and an existing one (made meanwhile by another process) is never replaced.
void create_store(const fs::path& path) {
  std::error_code ec;
  if (path.has_parent_path()) fs::create_directories(path.parent_path(), ec);
  const fs::path tmp = fs::path(fmt::format("{}.tmp.{}", path.string(), ::getpid()));
  fs::remove(tmp, ec);
  try {
    io::SqliteDatabase db(tmp, io::SqliteMode::kCreate);
    db.exec(kSchema);
    db.exec(kQkSchema);
    db.prepare("INSERT INTO meta VALUES ('kind', ?)").bind(1, kStoreKind).run();
    db.prepare("INSERT INTO meta VALUES ('schema_version', ?)")
        .bind(1, std::to_string(kGraphStoreSchemaVersion))
        .run();
  } catch (...) {
    fs::remove(tmp, ec);
    throw;
  }
  fs::create_hard_link(tmp, path, ec);
  if (ec && !fs::exists(path)) {  // no hard links on this file system: a plain rename
    ec.clear();
    fs::rename(tmp, path, ec);
    SAES_CHECK(!ec, IoError, "cannot create graph store {}: {}", path.string(), ec.message());
  }
  fs::remove(tmp, ec);
}

template <class T>
std::vector<T> json_array(const std::string& text, const fs::path& path, const char* column) {
  const json j = json::parse(text, nullptr, false);
  SAES_CHECK(j.is_array(), DataError, "graph store {}: column {} is not a JSON array",
             path.string(), column);
  try {
    return j.get<std::vector<T>>();
  } catch (const json::exception&) {
    SAES_THROW(DataError, "graph store {}: column {} holds values of the wrong type", path.string(),
               column);
  }
}

std::optional<std::int64_t> opt_int(const io::SqliteStatement& st, int column) {
  if (st.is_null(column)) return std::nullopt;
  return st.column_int(column);
}
std::optional<double> opt_double(const io::SqliteStatement& st, int column) {
  if (st.is_null(column)) return std::nullopt;
  return st.column_double(column);
}

template <class T>
void bind_optional(io::SqliteStatement& st, int index, bool present, T value) {
  if (present) {
    st.bind(index, value);
  } else {
    st.bind_null(index);
  }
}

GraphMeta meta_row(const io::SqliteStatement& st, const fs::path& path) {
  GraphMeta m;
  m.id = st.column_text(0);
  m.prompt = st.column_text(1);
  m.prompt_tokens = json_array<std::string>(st.column_text(2), path, "prompt_tokens");
  m.token_ids = json_array<std::int64_t>(st.column_text(3), path, "token_ids");
  m.model = st.column_text(4);
  m.n_layers = st.column_int(5);
  m.n_positions = st.column_int(6);
  m.created = st.column_text(7);
  m.settings = st.column_text(8);
  m.replacement_score = st.column_double(9);
  m.completeness_score = st.column_double(10);
  m.node_threshold = st.column_double(11);
  m.edge_threshold = st.column_double(12);
  m.n_nodes = st.column_int(13);
  m.n_kept_nodes = st.column_int(14);
  m.n_links = st.column_int(15);
  return m;
}

void insert_nodes(io::SqliteDatabase& db, const Graph& graph, const PruneResult& pruned,
                  const KeptGraph& kept, const std::string& id) {
  std::vector<char> is_kept(graph.nodes.size(), 0);
  for (const std::int64_t i : kept.nodes) is_kept[static_cast<std::size_t>(i)] = 1;
  const double* cum = pruned.cumulative_influence.data_ptr<double>();
  auto st = db.prepare("INSERT INTO graph_nodes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
  for (std::int64_t i = 0; i < graph.n_nodes(); ++i) {
    const Node& n = graph.nodes[static_cast<std::size_t>(i)];
    const bool layered = n.kind == NodeKind::kFeature || n.kind == NodeKind::kError;
    std::string label;
    if (n.kind == NodeKind::kEmbedding)
      label = graph.token_strings[static_cast<std::size_t>(n.position)];
    if (n.kind == NodeKind::kLogit) label = n.token_string;
    st.bind(1, id).bind(2, i).bind(3, node_id(graph, i)).bind(4, stored_kind(n));
    bind_optional(st, 5, layered, n.layer);
    st.bind(6, n.position);
    bind_optional(st, 7, n.kind != NodeKind::kError, n.index);
    bind_optional(st, 8, n.kind == NodeKind::kFeature, n.activation);
    bind_optional(st, 9, n.kind == NodeKind::kLogit, n.probability);
    bind_optional(st, 10, n.kind != NodeKind::kLogit, cum[i]);
    st.bind(11, n.kind == NodeKind::kFeature ? n.dictionary : std::string());
    st.bind(12, label).bind(13, std::int64_t{is_kept[static_cast<std::size_t>(i)]});
    st.run();
  }
}

void insert_qk_traces(io::SqliteDatabase& db, const Graph& graph, const std::string& id) {
  if (graph.qk_traces.empty()) return;
  auto trace = db.prepare("INSERT INTO graph_qk_traces VALUES (?, ?, ?, ?, ?, ?, ?)");
  auto term = db.prepare("INSERT INTO graph_qk_terms VALUES (?, ?, ?, ?, ?, ?, ?)");
  for (const QkTrace& t : graph.qk_traces) {
    const std::string node = node_id(graph, t.node);
    trace.bind(1, id).bind(2, node).bind(3, t.key_position).bind(4, t.score);
    trace.bind(5, t.constant).bind(6, t.query_constant).bind(7, t.key_constant).run();
    const auto put = [&](const char* role, std::int64_t rank, std::int64_t q, std::int64_t k,
                         double value) {
      term.bind(1, id).bind(2, node).bind(3, std::string(role)).bind(4, rank);
      bind_optional(term, 5, q >= 0, q >= 0 ? node_id(graph, q) : std::string());
      bind_optional(term, 6, k >= 0, k >= 0 ? node_id(graph, k) : std::string());
      term.bind(7, value).run();
    };
    for (std::size_t r = 0; r < t.pairs.size(); ++r)
      put("pair", static_cast<std::int64_t>(r), t.pairs[r].query, t.pairs[r].key, t.pairs[r].value);
    for (std::size_t r = 0; r < t.query.size(); ++r)
      put("query", static_cast<std::int64_t>(r), t.query[r].node, -1, t.query[r].value);
    for (std::size_t r = 0; r < t.key.size(); ++r)
      put("key", static_cast<std::int64_t>(r), -1, t.key[r].node, t.key[r].value);
  }
}

}  // namespace

fs::path GraphStore::path_beside(const fs::path& analysis_db) {
  return analysis_db.parent_path() / kGraphStoreFileName;
}

GraphStore::GraphStore(const fs::path& path, GraphStoreMode mode)
    : path_(path), writable_(mode == GraphStoreMode::kWrite) {
  std::error_code ec;
  if (!fs::exists(path, ec)) {
    SAES_CHECK(mode == GraphStoreMode::kWrite, IoError, "graph store {} does not exist",
               path.string());
    create_store(path);
  }
  db_ = std::make_unique<io::SqliteDatabase>(path, mode == GraphStoreMode::kWrite
                                                       ? io::SqliteMode::kReadWrite
                                                       : io::SqliteMode::kReadOnly);
  db_->exec("PRAGMA busy_timeout = 5000;");  // a viewer reads while a run adds a graph
  std::string kind, version;
  try {
    auto st = db_->prepare("SELECT key, value FROM meta WHERE key IN ('kind', 'schema_version')");
    while (st.step()) {
      if (st.column_text(0) == "kind") kind = st.column_text(1);
      if (st.column_text(0) == "schema_version") version = st.column_text(1);
    }
  } catch (const IoError&) {
    SAES_THROW(DataError, "{}: not an saes graph store (no meta table)", path.string());
  }
  SAES_CHECK(kind == kStoreKind, DataError, "{}: not an saes graph store", path.string());
  SAES_CHECK(version == "1" || version == std::to_string(kGraphStoreSchemaVersion), DataError,
             "graph store {}: schema version {}, this saes reads versions 1 to {}", path.string(),
             version, kGraphStoreSchemaVersion);
  if (version == "1") {
    has_qk_ = writable_;
    if (writable_) {  // gains the QK tables
      io::SqliteTransaction tx(*db_);
      db_->exec(kQkSchema);
      db_->prepare("UPDATE meta SET value = ? WHERE key = 'schema_version'")
          .bind(1, std::to_string(kGraphStoreSchemaVersion))
          .run();
      tx.commit();
    }
  }
}

GraphStore::~GraphStore() = default;
GraphStore::GraphStore(GraphStore&&) noexcept = default;

void GraphStore::add_graph(const Graph& graph, const PruneResult& pruned, const GraphScores& scores,
                           const std::string& id, bool overwrite) {
  SAES_CHECK(writable_, InternalError, "graph store {}: opened read-only", path_.string());
  check_slug(id);
  const KeptGraph kept = kept_graph(graph, pruned);
  SAES_CHECK(graph.token_strings.size() == graph.tokens.size(), DataError,
             "graph: {} token strings for {} tokens", graph.token_strings.size(),
             graph.tokens.size());
  io::SqliteTransaction tx(*db_);
  if (contains(id)) {
    SAES_CHECK(overwrite, ConfigError,
               "graph store {}: a graph \"{}\" already exists; choose another slug or pass "
               "overwrite to replace it",
               path_.string(), id);
    for (const char* table :
         {"graph_links", "graph_nodes", "graph_qk_traces", "graph_qk_terms", "graphs"})
      db_->prepare(fmt::format("DELETE FROM {} WHERE {} = ?", table,
                               std::string(table) == "graphs" ? "id" : "graph"))
          .bind(1, id)
          .run();
  }
  db_->prepare(fmt::format("INSERT INTO graphs ({}) VALUES "
                           "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           kMetaColumns))
      .bind(1, id)
      .bind(2, graph.prompt)
      .bind(3, json(graph.token_strings).dump())
      .bind(4, json(graph.tokens).dump())
      .bind(5, graph.model_name)
      .bind(6, graph.n_layers)
      .bind(7, graph.n_positions())
      .bind(8, utc_now())
      .bind(9, settings_json(graph, pruned))
      .bind(10, scores.replacement)
      .bind(11, scores.completeness)
      .bind(12, pruned.node_threshold)
      .bind(13, pruned.edge_threshold)
      .bind(14, graph.n_nodes())
      .bind(15, static_cast<std::int64_t>(kept.nodes.size()))
      .bind(16, static_cast<std::int64_t>(kept.links.size()))
      .run();
  insert_nodes(*db_, graph, pruned, kept, id);
  insert_qk_traces(*db_, graph, id);
  auto link = db_->prepare("INSERT INTO graph_links VALUES (?, ?, ?, ?)");
  for (const KeptLink& l : kept.links)
    link.bind(1, id)
        .bind(2, node_id(graph, l.source))
        .bind(3, node_id(graph, l.target))
        .bind(4, l.weight)
        .run();
  tx.commit();
}

bool GraphStore::contains(const std::string& id) const {
  auto st = db_->prepare("SELECT 1 FROM graphs WHERE id = ?");
  st.bind(1, id);
  return st.step();
}

std::vector<GraphMeta> GraphStore::list_graphs() const {
  auto st = db_->prepare(fmt::format("SELECT {} FROM graphs ORDER BY created, id", kMetaColumns));
  std::vector<GraphMeta> out;
  while (st.step()) out.push_back(meta_row(st, path_));
  return out;
}

GraphMeta GraphStore::read_meta(const std::string& id) const {
  auto st = db_->prepare(fmt::format("SELECT {} FROM graphs WHERE id = ?", kMetaColumns));
  st.bind(1, id);
  if (st.step()) return meta_row(st, path_);
  std::vector<std::string> ids;
  auto all = db_->prepare("SELECT id FROM graphs ORDER BY id LIMIT 6");
  while (all.step()) ids.push_back(all.column_text(0));
  std::string known = "it holds no graph";
  if (!ids.empty()) {
    const bool more = ids.size() > 5;
    if (more) ids.resize(5);
    known = fmt::format("it holds {}{}", fmt::join(ids, ", "), more ? ", …" : "");
  }
  SAES_THROW(DataError, "graph store {}: no graph \"{}\" ({})", path_.string(), id, known);
}

GraphView GraphStore::load_graph(const std::string& id, bool kept_only) const {
  GraphView view;
  view.meta = read_meta(id);
  auto st = db_->prepare(fmt::format(
      "SELECT idx, node_id, kind, layer, position, feature_index, activation, probability, "
      "influence, dictionary, label, kept FROM graph_nodes WHERE graph = ?{} ORDER BY idx",
      kept_only ? " AND kept = 1" : ""));
  st.bind(1, id);
  while (st.step()) {
    NodeRow n;
    n.index = st.column_int(0);
    n.node_id = st.column_text(1);
    std::tie(n.kind, n.attention) = parse_kind(st.column_text(2), path_);
    n.layer = opt_int(st, 3);
    n.position = st.column_int(4);
    n.feature_index = opt_int(st, 5);
    n.activation = opt_double(st, 6);
    n.probability = opt_double(st, 7);
    n.influence = opt_double(st, 8);
    n.dictionary = st.column_text(9);
    n.label = st.column_text(10);
    n.kept = st.column_int(11) != 0;
    view.nodes.push_back(std::move(n));
  }
  auto links =
      db_->prepare("SELECT source, target, weight FROM graph_links WHERE graph = ? ORDER BY rowid");
  links.bind(1, id);
  while (links.step())
    view.links.push_back({links.column_text(0), links.column_text(1), links.column_double(2)});
  return view;
}

NodeEdges GraphStore::node_edges(const std::string& id, const std::string& node_id,
                                 std::int64_t k) const {
  SAES_CHECK(k >= 1, ConfigError, "node_edges: k: expected ≥ 1, got {}", k);
  read_meta(id);
  auto known = db_->prepare("SELECT 1 FROM graph_nodes WHERE graph = ? AND node_id = ?");
  known.bind(1, id).bind(2, node_id);
  SAES_CHECK(known.step(), DataError, "graph store {}: graph \"{}\" has no node \"{}\"",
             path_.string(), id, node_id);
  NodeEdges out;
  for (const bool incoming : {true, false}) {
    auto st = db_->prepare(
        fmt::format("SELECT source, target, weight FROM graph_links WHERE graph = ? AND {} = ? "
                    "ORDER BY abs(weight) DESC, rowid LIMIT ?",
                    incoming ? "target" : "source"));
    st.bind(1, id).bind(2, node_id).bind(3, k);
    auto& side = incoming ? out.incoming : out.outgoing;
    while (st.step()) side.push_back({st.column_text(0), st.column_text(1), st.column_double(2)});
  }
  return out;
}

std::optional<QkTraceRow> GraphStore::qk_trace(const std::string& id,
                                               const std::string& node_id) const {
  if (!has_qk_) return std::nullopt;
  auto st = db_->prepare(
      "SELECT key_position, score, constant, query_constant, key_constant FROM graph_qk_traces "
      "WHERE graph = ? AND node_id = ?");
  st.bind(1, id).bind(2, node_id);
  if (!st.step()) return std::nullopt;
  QkTraceRow out;
  out.key_position = st.column_int(0);
  out.score = st.column_double(1);
  out.constant = st.column_double(2);
  out.query_constant = st.column_double(3);
  out.key_constant = st.column_double(4);
  auto terms = db_->prepare(
      "SELECT role, query_node, key_node, value FROM graph_qk_terms WHERE graph = ? AND "
      "node_id = ? ORDER BY role, rank");
  terms.bind(1, id).bind(2, node_id);
  while (terms.step()) {
    const std::string role = terms.column_text(0);
    QkTraceRow::Term t{terms.column_text(1), terms.column_text(2), terms.column_double(3)};
    (role == "pair" ? out.pairs : role == "query" ? out.query : out.key).push_back(std::move(t));
  }
  return out;
}

}  // namespace saes::circuits
