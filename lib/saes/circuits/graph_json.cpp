// Graph JSON (circuit-tracer frontend/graph_models.py + create_graph_files.py, read by the
// Neuronpedia front-end; facts in docs/circuits.md): selection, ids, writer and reader.
#include "saes/circuits/graph_json.h"

#include <algorithm>
#include <chrono>
#include <system_error>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "saes/core/error.h"
#include "saes/io/atomic_file.h"
#include "saes/version.h"

namespace saes::circuits {
namespace {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

const Node& node_at(const Graph& graph, std::int64_t index) {
  SAES_CHECK(index >= 0 && index < graph.n_nodes(), DataError,
             "graph: node index {} out of range (the graph has {} nodes)", index, graph.n_nodes());
  return graph.nodes[static_cast<std::size_t>(index)];
}

const char* feature_type(const Node& node) {
  switch (node.kind) {
    // circuit-tracer writes this string for per-layer transcoders too; the front-end expects it.
    case NodeKind::kFeature:
      return node.attention ? "lorsa" : "cross layer transcoder";
    case NodeKind::kError:
      return node.attention ? "lorsa error" : "mlp reconstruction error";
    case NodeKind::kEmbedding:
      return "embedding";
    case NodeKind::kLogit:
      return "logit";
  }
  return "";
}

/// `Output "tok" (p=0.123)`. The front-end reads the probability after the first "(p=", so a
/// token that itself contains "(p=" gets a space inserted there.
std::string logit_clerp(const Node& node) {
  std::string token =
      node.token_string.empty() ? fmt::format("#{}", node.index) : node.token_string;
  for (std::size_t at = token.find("(p="); at != std::string::npos; at = token.find("(p=", at))
    token.insert(at + 2, " ");
  return fmt::format("Output \"{}\" (p={:.3f})", token, node.probability);
}

JsonNode make_node(const Graph& graph, const PruneResult& pruned, std::int64_t i,
                   bool first_logit) {
  const Node& node = node_at(graph, i);
  JsonNode j;
  j.graph_index = i;
  j.node_id = node_id(graph, i);
  j.js_node_id = js_node_id(graph, i);
  j.ctx_idx = node.position;
  j.feature_type = feature_type(node);
  j.influence = pruned.cumulative_influence.data_ptr<double>()[i];
  switch (node.kind) {
    case NodeKind::kFeature:
      j.feature = cantor_pair(display_layer(graph, node), node.index);
      j.layer = std::to_string(display_layer(graph, node));
      j.activation = node.activation;
      j.lorsa_pattern = node.pattern;
      break;
    case NodeKind::kError:
      j.feature = -1;
      j.layer = std::to_string(display_layer(graph, node));
      break;
    case NodeKind::kEmbedding:
      j.feature = node.position;  // circuit-tracer: the position, not the token id
      j.layer = "E";
      break;
    case NodeKind::kLogit:
      j.feature = node.index;
      j.layer = std::to_string(display_layer(graph, node));
      j.clerp = logit_clerp(node);
      j.influence.reset();
      j.token_prob = node.probability;
      j.is_target_logit = first_logit;
      break;
  }
  return j;
}

/// The front-end needs a feature or error node with a numeric layer ≥ 1 ("No layer found").
bool has_upper_layer(const Graph& graph, const std::vector<JsonNode>& nodes) {
  return std::any_of(nodes.begin(), nodes.end(), [&](const JsonNode& j) {
    const Node& node = node_at(graph, j.graph_index);
    return (node.kind == NodeKind::kFeature || node.kind == NodeKind::kError) &&
           display_layer(graph, node) >= 1;
  });
}

std::int64_t most_influential_upper_node(const Graph& graph, const PruneResult& pruned) {
  const double* cum = pruned.cumulative_influence.data_ptr<double>();
  std::int64_t best = -1;
  for (std::int64_t i = 0; i < graph.n_nodes(); ++i) {
    const Node& node = graph.nodes[static_cast<std::size_t>(i)];
    if ((node.kind != NodeKind::kFeature && node.kind != NodeKind::kError) ||
        display_layer(graph, node) < 1)
      continue;
    if (best < 0 || cum[i] < cum[best]) best = i;
  }
  return best;
}

/// The QK traces of nodes in the document, on those nodes; contributors the pruning dropped are
/// added without links (is_from_qk_tracing), as OpenMOSS's graphs do.
void add_qk_traces(const Graph& graph, const PruneResult& pruned, GraphJson& out,
                   std::vector<std::string>& ids) {
  if (graph.qk_traces.empty()) return;
  const auto id_of = [&](std::int64_t i) -> std::string {
    if (ids[static_cast<std::size_t>(i)].empty()) {
      out.nodes.push_back(make_node(graph, pruned, i, false));
      out.nodes.back().is_from_qk_tracing = true;
      ids[static_cast<std::size_t>(i)] = out.nodes.back().node_id;
    }
    return ids[static_cast<std::size_t>(i)];
  };
  std::vector<std::pair<std::int64_t, JsonQkTrace>> traced;
  for (const QkTrace& t : graph.qk_traces) {
    if (ids[static_cast<std::size_t>(t.node)].empty()) continue;  // pruned: not written
    JsonQkTrace j;
    for (const auto& p : t.pairs) j.pairs.push_back({id_of(p.query), id_of(p.key), p.value});
    for (const auto& m : t.query) j.query.push_back({id_of(m.node), m.value});
    for (const auto& m : t.key) j.key.push_back({id_of(m.node), m.value});
    traced.emplace_back(t.node, std::move(j));
  }
  for (auto& [node, j] : traced) {
    for (JsonNode& n : out.nodes)
      if (n.graph_index == node) n.qk_tracing_results = std::move(j);
  }
  std::stable_sort(out.nodes.begin(), out.nodes.end(),
                   [](const JsonNode& a, const JsonNode& b) { return a.graph_index < b.graph_index; });
}

template <class T>
ojson optional_value(const std::optional<T>& v) {
  return v ? ojson(*v) : ojson(nullptr);
}

}  // namespace

void check_slug(const std::string& slug) {
  const bool safe =
      !slug.empty() && slug.front() != '.' && std::all_of(slug.begin(), slug.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '.' || c == '_' || c == '-';
      });
  SAES_CHECK(safe, ConfigError,
             "slug: expected letters, digits, '.', '_' or '-', not starting with '.' (it names "
             "files and URLs), got \"{}\"",
             slug);
}

std::int64_t cantor_pair(std::int64_t layer, std::int64_t index) {
  return (layer + index) * (layer + index + 1) / 2 + index;
}

std::int64_t display_layer(const Graph& graph, const Node& node) {
  const bool interleaved = graph.interleaved;
  switch (node.kind) {
    case NodeKind::kFeature:
    case NodeKind::kError:
      return interleaved ? 2 * node.layer + (node.attention ? 0 : 1) : node.layer;
    case NodeKind::kEmbedding:
      return -1;
    case NodeKind::kLogit:
      return interleaved ? 2 * graph.n_layers : graph.n_layers + 1;
  }
  return -1;
}

std::string node_id(const Graph& graph, std::int64_t index) {
  const Node& n = node_at(graph, index);
  switch (n.kind) {
    case NodeKind::kFeature:
      return fmt::format("{}_{}_{}", display_layer(graph, n), n.index, n.position);
    case NodeKind::kError:
      return fmt::format("{}_-1_{}", display_layer(graph, n), n.position);
    case NodeKind::kEmbedding:
      return fmt::format("E_{}_{}", n.index, n.position);
    case NodeKind::kLogit:
      return fmt::format("{}_{}_{}", display_layer(graph, n), n.index, n.position);
  }
  return "";
}

std::string js_node_id(const Graph& graph, std::int64_t index) {
  const Node& n = node_at(graph, index);
  switch (n.kind) {
    case NodeKind::kFeature:
      return fmt::format("{}_{}-0", display_layer(graph, n), n.index);
    case NodeKind::kError:
      return fmt::format("{}_-1-{}", display_layer(graph, n), n.position);
    case NodeKind::kEmbedding:
      return fmt::format("E_{}-{}", n.index, n.position);
    case NodeKind::kLogit:
      return fmt::format("L_{}-{}", n.index, n.position);
  }
  return "";
}

GraphJson make_graph_json(const Graph& graph, const PruneResult& pruned, const std::string& slug) {
  check_slug(slug);
  const KeptGraph kept = kept_graph(graph, pruned);
  SAES_CHECK(graph.token_strings.size() == graph.tokens.size(), DataError,
             "graph: {} token strings for {} tokens", graph.token_strings.size(),
             graph.tokens.size());
  GraphJson out;
  JsonMetadata& m = out.metadata;
  m.slug = slug;
  m.scan = graph.model_name;
  m.prompt_tokens = graph.token_strings;
  m.prompt = graph.prompt;
  m.node_threshold = pruned.node_threshold;
  m.edge_threshold = pruned.edge_threshold;
  m.max_n_logits = graph.max_n_logits;
  m.desired_logit_prob = graph.desired_logit_prob;
  m.batch_size = graph.batch_size;
  m.max_feature_nodes = graph.max_feature_nodes;
  m.generator_name = "saes";
  m.generator_version = kGitDescribe == std::string("unknown") ? kVersion : kGitDescribe;
  m.create_time_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();

  std::vector<std::string> ids(static_cast<std::size_t>(graph.n_nodes()));
  bool first_logit = true;
  for (const std::int64_t i : kept.nodes) {
    const bool logit = graph.nodes[static_cast<std::size_t>(i)].kind == NodeKind::kLogit;
    out.nodes.push_back(make_node(graph, pruned, i, logit && first_logit));
    first_logit = first_logit && !logit;
    ids[static_cast<std::size_t>(i)] = out.nodes.back().node_id;
  }
  for (const KeptLink& l : kept.links)
    out.links.push_back({ids[static_cast<std::size_t>(l.source)],
                         ids[static_cast<std::size_t>(l.target)], l.weight});
  add_qk_traces(graph, pruned, out, ids);
  if (!has_upper_layer(graph, out.nodes)) {
    // DEVIATION(#19): circuit-tracer would write a graph the front-end cannot load; we add the
    // most influential feature/error node of a layer ≥ 1, without links.
    const std::int64_t pad = most_influential_upper_node(graph, pruned);
    SAES_CHECK(pad >= 0, UnsupportedError,
               "graph JSON: the graph has no feature or error node above layer 0, which the "
               "Neuronpedia front-end cannot show (a 1-layer model?)");
    out.nodes.push_back(make_node(graph, pruned, pad, false));
    std::stable_sort(out.nodes.begin(), out.nodes.end(), [](const JsonNode& a, const JsonNode& b) {
      return a.graph_index < b.graph_index;
    });
  }
  return out;
}

std::string graph_json_text(const GraphJson& g) {
  const JsonMetadata& m = g.metadata;
  ojson meta;
  meta["slug"] = m.slug;
  meta["scan"] = m.scan;
  meta["transcoder_list"] = ojson::array();
  meta["prompt_tokens"] = m.prompt_tokens;
  meta["prompt"] = m.prompt;
  if (m.node_threshold) meta["node_threshold"] = *m.node_threshold;
  meta["schema_version"] = m.schema_version;
  ojson gen = ojson::object();
  if (m.max_n_logits) gen["max_n_logits"] = *m.max_n_logits;
  if (m.desired_logit_prob) gen["desired_logit_prob"] = *m.desired_logit_prob;
  if (m.batch_size) gen["batch_size"] = *m.batch_size;
  if (m.max_feature_nodes) gen["max_feature_nodes"] = *m.max_feature_nodes;
  meta["generation_settings"] = gen;
  ojson prune = ojson::object();
  if (m.node_threshold) prune["node_threshold"] = *m.node_threshold;
  if (m.edge_threshold) prune["edge_threshold"] = *m.edge_threshold;
  meta["pruning_settings"] = prune;
  ojson info = ojson::object();
  if (!m.generator_name.empty())
    info["generator"] = {{"name", m.generator_name}, {"version", m.generator_version}};
  if (m.create_time_ms) info["create_time_ms"] = *m.create_time_ms;
  meta["info"] = info;

  ojson doc;
  doc["metadata"] = meta;
  doc["qParams"] = {{"pinnedIds", ojson::array()},
                    {"supernodes", ojson::array()},
                    {"linkType", "both"},
                    {"clickedId", ""},
                    {"sg_pos", ""}};
  ojson nodes = ojson::array();
  for (const JsonNode& n : g.nodes) {
    nodes.push_back({{"node_id", n.node_id},
                     {"feature", optional_value(n.feature)},
                     {"layer", n.layer},
                     {"ctx_idx", n.ctx_idx},
                     {"feature_type", n.feature_type},
                     {"token_prob", n.token_prob},
                     {"is_target_logit", n.is_target_logit},
                     {"run_idx", 0},
                     {"reverse_ctx_idx", 0},
                     {"jsNodeId", n.js_node_id},
                     {"clerp", n.clerp},
                     {"influence", optional_value(n.influence)},
                     {"activation", optional_value(n.activation)}});
    ojson& node = nodes.back();
    if (!n.lorsa_pattern.empty()) node["lorsa_pattern"] = n.lorsa_pattern;
    if (n.is_from_qk_tracing) node["is_from_qk_tracing"] = true;
    if (n.qk_tracing_results) {
      const JsonQkTrace& q = *n.qk_tracing_results;
      ojson pairs = ojson::array(), qm = ojson::array(), km = ojson::array();
      for (const auto& p : q.pairs) pairs.push_back(ojson::array({p.query, p.key, p.value}));
      for (const auto& t : q.query) qm.push_back(ojson::array({t.first, t.second}));
      for (const auto& t : q.key) km.push_back(ojson::array({t.first, t.second}));
      node["qk_tracing_results"] = {{"pair_wise_contributors", std::move(pairs)},
                                    {"top_q_marginal_contributors", std::move(qm)},
                                    {"top_k_marginal_contributors", std::move(km)}};
    }
  }
  doc["nodes"] = std::move(nodes);
  ojson links = ojson::array();
  for (const JsonLink& l : g.links)
    links.push_back({{"source", l.source}, {"target", l.target}, {"weight", l.weight}});
  doc["links"] = std::move(links);
  return doc.dump(2) + "\n";
}

void write_graph_json(const fs::path& path, const GraphJson& graph, bool overwrite) {
  std::error_code ec;
  const bool exists = fs::exists(path, ec);
  SAES_CHECK(!exists || !fs::is_directory(path, ec), IoError, "graph JSON {}: the path is a folder",
             path.string());
  SAES_CHECK(!exists || overwrite, ConfigError,
             "graph JSON {} already exists; choose another path or pass overwrite to replace it",
             path.string());
  io::write_file_atomic(path, graph_json_text(graph));
}

}  // namespace saes::circuits
