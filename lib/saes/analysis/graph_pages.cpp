// The viewer's graph routes (graph_pages.h): the list of stored graphs, a graph's page (header,
// legend, graph_svg, the side panel of a selected node), the JSON twins, and which feature page
// a node links to. Every text from the graph store is escaped.
#include "saes/analysis/graph_pages.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <system_error>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "saes/analysis/store.h"
#include "saes/analysis/viewer_internal.h"
#include "saes/circuits/graph_store.h"

namespace saes::analysis {
namespace {

namespace fs = std::filesystem;
using circuits::GraphView;
using circuits::NodeKind;
using circuits::NodeRow;
using viewer::number;

constexpr std::int64_t kPanelEdges = 10;
constexpr std::size_t kMaxIdBytes = 128;

PageResponse html(std::string_view title, std::string_view body, int status = 200) {
  return {status, "text/html; charset=utf-8", viewer::page(title, "", body)};
}
PageResponse not_found(std::string_view what) {
  return html("Not found", fmt::format("<h1>404</h1><p>{}</p>", html_escape(what)), 404);
}
PageResponse json_response(const nlohmann::json& j) { return {200, "application/json", j.dump()}; }

/// A graph id as graph_json.h's check_slug allows (letters, digits, '.', '_', '-', not
/// starting with '.'), or a node id (letters, digits, '_', '-').
bool plain_id(std::string_view text, bool dots) {
  if (text.empty() || text.size() > kMaxIdBytes || text.front() == '.') return false;
  for (const char c : text) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-' || (dots && c == '.');
    if (!ok) return false;
  }
  return true;
}

/// A dictionary path as compared: lexically normal, no trailing separator, a run folder's
/// weights file (training::kWeightsFileName) standing for the folder.
fs::path dictionary_key(const std::string& text) {
  fs::path p = fs::path(text).lexically_normal();
  if (p.filename().empty() && p.has_parent_path()) p = p.parent_path();
  if (p.filename() == "sae_weights.safetensors") p = p.parent_path();
  return p;
}

bool same_dictionary(const std::string& a, const std::string& b) {
  if (a.empty() || b.empty()) return false;
  const fs::path ka = dictionary_key(a), kb = dictionary_key(b);
  if (ka == kb) return true;
  std::error_code ec;
  return fs::equivalent(ka, kb, ec) && !ec;
}

std::string graph_link(const std::string& id) {
  return fmt::format("<a href=\"/graphs/{}\">{}</a>", viewer::url_encode(id), html_escape(id));
}

/// A short description of a node for the panel's link tables.
std::string node_caption(const NodeRow& n) {
  switch (n.kind) {
    case NodeKind::kFeature:
      return fmt::format("{}feature L{} #{} @{}", n.attention ? "attention " : "",
                         n.layer.value_or(-1), n.feature_index.value_or(-1), n.position);
    case NodeKind::kError:
      return fmt::format("{}error L{} @{}", n.attention ? "attention " : "", n.layer.value_or(-1),
                         n.position);
    case NodeKind::kEmbedding:
      return fmt::format("embedding \"{}\" @{}", token_label(n.label, n.feature_index.value_or(-1)),
                         n.position);
    case NodeKind::kLogit:
      return fmt::format("logit \"{}\"", token_label(n.label, n.feature_index.value_or(-1)));
  }
  return n.node_id;
}

// ---- the list -----------------------------------------------------------------------------

PageResponse list_page(const circuits::GraphStore* graphs) {
  std::string body = "<h1>Attribution graphs</h1>";
  if (graphs == nullptr) {
    body +=
        "<p class=\"muted\">No graph store: this viewer was started without one. "
        "<code>saes-analyze "
        "attribute</code> writes <code>graphs.sqlite</code>; serve it with <code>--graphs "
        "FILE</code>, "
        "or put it beside the analysis database.</p>";
    return html("Graphs", body);
  }
  const auto all = graphs->list_graphs();
  if (all.empty())
    return html("Graphs", body + "<p class=\"muted\">The graph store holds no graph.</p>");
  body += fmt::format(
      "<p>{} graph{} in <code>{}</code>.</p><table class=\"graphs\"><thead><tr><th "
      "class=\"tok\">graph</th>"
      "<th class=\"tok\">prompt</th><th class=\"tok\">model</th><th>nodes kept / "
      "all</th><th>links</th>"
      "<th>replacement</th><th>completeness</th><th "
      "class=\"tok\">created</th></tr></thead><tbody>\n",
      all.size(), all.size() == 1 ? "" : "s", html_escape(graphs->path().filename().string()));
  for (const auto& m : all) {
    body += fmt::format(
        "<tr><td class=\"tok\">{}</td><td class=\"tok\">{}</td><td class=\"tok\">{}</td><td>{} / "
        "{}</td>"
        "<td>{}</td><td>{:.3f}</td><td>{:.3f}</td><td class=\"tok\">{}</td></tr>\n",
        graph_link(m.id), html_escape(m.prompt), html_escape(m.model), m.n_kept_nodes, m.n_nodes,
        m.n_links, m.replacement_score, m.completeness_score, html_escape(m.created));
  }
  return html("Graphs", body + "</tbody></table>");
}

nlohmann::json meta_json(const circuits::GraphMeta& m) {
  nlohmann::json j = {{"id", m.id},
                      {"prompt", m.prompt},
                      {"prompt_tokens", m.prompt_tokens},
                      {"token_ids", m.token_ids},
                      {"model", m.model},
                      {"n_layers", m.n_layers},
                      {"n_positions", m.n_positions},
                      {"created", m.created},
                      {"replacement_score", m.replacement_score},
                      {"completeness_score", m.completeness_score},
                      {"node_threshold", m.node_threshold},
                      {"edge_threshold", m.edge_threshold},
                      {"n_nodes", m.n_nodes},
                      {"n_kept_nodes", m.n_kept_nodes},
                      {"n_links", m.n_links}};
  j["settings"] = nlohmann::json::parse(m.settings, nullptr, false);
  if (j["settings"].is_discarded()) j["settings"] = nullptr;
  return j;
}

// ---- one graph ----------------------------------------------------------------------------

template <class T>
nlohmann::json opt(const std::optional<T>& v) {
  return v ? nlohmann::json(*v) : nlohmann::json(nullptr);
}

nlohmann::json node_json(const AnalysisStore& store, const NodeRow& n) {
  nlohmann::json j = {{"node_id", n.node_id},
                      {"index", n.index},
                      {"kind", circuits::kind_name(n.kind)},
                      {"attention", n.attention},
                      {"layer", opt(n.layer)},
                      {"position", n.position},
                      {"feature_index", opt(n.feature_index)},
                      {"activation", opt(n.activation)},
                      {"probability", opt(n.probability)},
                      {"influence", opt(n.influence)},
                      {"dictionary", n.dictionary},
                      {"label", n.label}};
  if (n.kind == NodeKind::kFeature) j["feature_id"] = opt(feature_link(store, n).feature_id);
  return j;
}

nlohmann::json links_json(const std::vector<circuits::LinkRow>& links) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& l : links)
    out.push_back({{"source", l.source}, {"target", l.target}, {"weight", l.weight}});
  return out;
}

std::string panel_links(const std::string& graph, const std::vector<circuits::LinkRow>& links,
                        bool incoming, const std::map<std::string, const NodeRow*>& nodes) {
  if (links.empty()) return "<p class=\"muted\">none</p>";
  std::string out = "<table class=\"edges\"><tbody>";
  for (const auto& l : links) {
    const std::string& other = incoming ? l.source : l.target;
    const auto it = nodes.find(other);
    const std::string caption = it == nodes.end() ? other : node_caption(*it->second);
    out += fmt::format(
        "<tr><td class=\"tok\"><a href=\"/graphs/{}?node={}\" data-node=\"{}\">{}</a> <span "
        "class=\"muted\">{}</span></td><td class=\"{}\">{:+.4g}</td></tr>",
        viewer::url_encode(graph), viewer::url_encode(other), html_escape(other),
        html_escape(other), html_escape(caption), l.weight >= 0 ? "pos" : "neg", l.weight);
  }
  return out + "</tbody></table>";
}

/// The QK tracing section of an attention feature's panel: where its head attends, the top
/// query/key node pairs and the marginals of each side.
std::string panel_qk(const std::string& graph, const circuits::QkTraceRow& qk,
                     const GraphView& view, const std::map<std::string, const NodeRow*>& nodes) {
  const auto cell = [&](const std::string& id) {
    const auto it = nodes.find(id);
    const std::string caption = it == nodes.end() ? std::string() : node_caption(*it->second);
    return fmt::format(
        "<a href=\"/graphs/{}?node={}\" data-node=\"{}\">{}</a> <span class=\"muted\">{}</span>",
        viewer::url_encode(graph), viewer::url_encode(id), html_escape(id), html_escape(id),
        html_escape(caption));
  };
  const auto value = [](double v) {
    return fmt::format("<td class=\"{}\">{:+.4g}</td>", v >= 0 ? "pos" : "neg", v);
  };
  const auto pos = static_cast<std::size_t>(qk.key_position);
  const auto& tokens = view.meta.prompt_tokens;
  std::string out = fmt::format(
      "<h3>QK tracing</h3><p class=\"qk\">attends most to position {}{}: score {}; "
      "constants {} (query side), {} (key side)</p>",
      qk.key_position,
      pos < tokens.size() ? " (<code>" + html_escape(token_label(tokens[pos], -1)) + "</code>)"
                          : "",
      number(qk.score), number(qk.query_constant), number(qk.key_constant));
  out += "<table class=\"edges qk-pairs\"><thead><tr><th>query side</th><th>key side</th><th>"
         "q·k</th></tr></thead><tbody>";
  for (const auto& t : qk.pairs)
    out += "<tr><td class=\"tok\">" + cell(t.query) + "</td><td class=\"tok\">" + cell(t.key) +
           "</td>" + value(t.value) + "</tr>";
  out += "</tbody></table>";
  for (const bool query : {true, false}) {
    out += fmt::format("<h3>{} side</h3><table class=\"edges qk-{}\"><tbody>",
                       query ? "Query" : "Key", query ? "query" : "key");
    for (const auto& t : query ? qk.query : qk.key)
      out += "<tr><td class=\"tok\">" + cell(query ? t.query : t.key) + "</td>" + value(t.value) +
             "</tr>";
    out += "</tbody></table>";
  }
  return out;
}

std::string panel(const AnalysisStore& store, const circuits::GraphStore& graphs,
                  const GraphView& view, const NodeRow* node) {
  if (node == nullptr) {
    return "<aside id=\"panel\" class=\"panel\"><p class=\"muted\">Click a node for its details "
           "and "
           "its strongest incoming and outgoing links.</p></aside>";
  }
  const NodeRow& n = *node;
  std::string out = fmt::format(
      "<aside id=\"panel\" class=\"panel\"><h2>{}{} <code>{}</code></h2><dl class=\"stats\">",
      n.attention ? "attention " : "", circuits::kind_name(n.kind), html_escape(n.node_id));
  const auto row = [&](std::string_view key, const std::string& value) {
    out += fmt::format("<dt>{}</dt><dd>{}</dd>", key, value);
  };
  if (n.layer) row("layer", std::to_string(*n.layer));
  const auto& tokens = view.meta.prompt_tokens;
  const auto pos = static_cast<std::size_t>(n.position);
  const auto& ids = view.meta.token_ids;
  row("position",
      fmt::format("{}{}", n.position,
                  pos < tokens.size() ? " (<code>" +
                                            html_escape(token_label(
                                                tokens[pos], pos < ids.size() ? ids[pos] : -1)) +
                                            "</code>)"
                                      : ""));
  if (n.feature_index)
    row(n.kind == NodeKind::kFeature ? "index" : "token id", std::to_string(*n.feature_index));
  if (n.kind == NodeKind::kLogit) {
    row("token",
        "<code>" + html_escape(token_label(n.label, n.feature_index.value_or(-1))) + "</code>");
  }
  if (n.activation) row("activation", number(*n.activation));
  if (n.probability) row("probability", number(*n.probability));
  if (n.influence)
    row("influence", number(*n.influence) +
                         " <span class=\"muted\">(cumulative; lower = more important)</span>");
  if (!n.dictionary.empty()) row("dictionary", "<code>" + html_escape(n.dictionary) + "</code>");
  out += "</dl>";
  if (n.kind == NodeKind::kFeature) {
    const FeatureLink link = feature_link(store, n);
    if (link.feature_id) {
      out += fmt::format(
          "<p><a class=\"feature-link\" href=\"/features/{0}\">feature page #{0}</a></p>",
          *link.feature_id);
    } else {
      out += fmt::format("<p class=\"muted\">No feature page: {}.</p>", html_escape(link.reason));
    }
  }
  std::map<std::string, const NodeRow*> nodes;
  for (const auto& m : view.nodes) nodes[m.node_id] = &m;
  const auto edges = graphs.node_edges(view.meta.id, n.node_id, kPanelEdges);
  out += "<h3>Strongest inputs</h3>" + panel_links(view.meta.id, edges.incoming, true, nodes);
  out += "<h3>Strongest outputs</h3>" + panel_links(view.meta.id, edges.outgoing, false, nodes);
  if (n.attention && n.kind == NodeKind::kFeature) {
    if (const auto qk = graphs.qk_trace(view.meta.id, n.node_id))
      out += panel_qk(view.meta.id, *qk, view, nodes);
  }
  return out + "</aside>";
}

std::string dictionaries_text(const circuits::GraphMeta& m) {
  const auto settings = nlohmann::json::parse(m.settings, nullptr, false);
  if (!settings.is_object() || !settings.contains("dictionaries") ||
      !settings["dictionaries"].is_array()) {
    return "";
  }
  std::string out;
  for (const auto& d : settings["dictionaries"]) {
    if (!d.is_string()) continue;
    out += (out.empty() ? "" : ", ") + ("<code>" + html_escape(d.get<std::string>()) + "</code>");
  }
  return out;
}

PageResponse graph_page(const AnalysisStore& store, const circuits::GraphStore& graphs,
                        const GraphView& view, const NodeRow* selected) {
  const auto& m = view.meta;
  std::string body = fmt::format(
      "<link rel=\"stylesheet\" href=\"/graph.css\"><div class=\"graphpage\"><h1>Graph {}</h1><p "
      "class=\"prompt\"><code>{}</code></p><dl class=\"stats\">"
      "<dt>model</dt><dd>{}</dd><dt>nodes</dt><dd>{} kept of {} (node threshold {}), {} links "
      "(edge "
      "threshold {})</dd><dt>scores</dt><dd>replacement {:.3f}, completeness {:.3f}</dd>",
      html_escape(m.id), html_escape(m.prompt), html_escape(m.model), m.n_kept_nodes, m.n_nodes,
      number(m.node_threshold), m.n_links, number(m.edge_threshold), m.replacement_score,
      m.completeness_score);
  const std::string dicts = dictionaries_text(m);
  if (!dicts.empty()) body += "<dt>dictionaries</dt><dd>" + dicts + "</dd>";
  const auto served = store.meta().find("sae_path");
  body += fmt::format("<dt>feature pages</dt><dd>{}</dd><dt>created</dt><dd>{}</dd></dl>",
                      served == store.meta().end() || served->second.empty()
                          ? std::string("none (the analysis database names no dictionary)")
                          : "for features of <code>" + html_escape(served->second) + "</code>",
                      html_escape(m.created));
  body +=
      "<p class=\"legend\"><span class=\"key feature\"></span>feature " +
      std::string(std::any_of(view.nodes.begin(), view.nodes.end(),
                              [](const NodeRow& n) { return n.attention; })
                      ? "<span class=\"key attn\">▲</span>attention feature "
                      : "") +
      "<span class=\"key error\"></span>error "
      "<span class=\"key embedding\"></span>embedding <span class=\"key logit\"></span>logit "
      "<span class=\"key pos\"></span>positive link <span class=\"key neg\"></span>negative link "
      "<span class=\"muted\">size: 1 − cumulative influence (logits: probability); line width: "
      "|weight|</span></p>";
  body += "<div class=\"graphview\"><div class=\"graphwrap\">" +
          graph_svg(view, selected ? std::string_view(selected->node_id) : std::string_view()) +
          "</div>" + panel(store, graphs, view, selected) + "</div></div>" +
          "<script src=\"/graph.js\"></script>";
  return html(fmt::format("Graph {}", m.id), body);
}

/// /api/graphs/<id>: the graph's meta, kept nodes (with their feature ids) and links.
nlohmann::json graph_api(const AnalysisStore& store, const GraphView& view) {
  nlohmann::json nodes = nlohmann::json::array();
  for (const auto& n : view.nodes) nodes.push_back(node_json(store, n));
  nlohmann::json j = meta_json(view.meta);
  j["nodes"] = nodes;
  j["links"] = links_json(view.links);
  return j;
}

/// /api/graphs/<id>/nodes/<node_id>: the side panel's data.
nlohmann::json node_api(const AnalysisStore& store, const circuits::GraphStore& graphs,
                        const GraphView& view, const NodeRow& node) {
  const auto edges = graphs.node_edges(view.meta.id, node.node_id, kPanelEdges);
  nlohmann::json j = {{"graph", view.meta.id},
                      {"node", node_json(store, node)},
                      {"incoming", links_json(edges.incoming)},
                      {"outgoing", links_json(edges.outgoing)}};
  if (node.kind == NodeKind::kFeature) j["feature_link_reason"] = feature_link(store, node).reason;
  return j;
}

const char* graph_script() {
  // Progressive enhancement: without script a node link loads /graphs/<id>?node=<node>; with it
  // that page is fetched and its SVG and panel swapped in, so the page keeps its scroll position.
  return R"js(// saes viewer: the graph page's node clicks (graph_pages.cpp)
(function () {
  'use strict';
  function swap(href, push) {
    fetch(href, {credentials: 'same-origin'}).then(function (r) {
      if (!r.ok) throw new Error('HTTP ' + r.status);
      return r.text();
    }).then(function (text) {
      var doc = new DOMParser().parseFromString(text, 'text/html');
      ['graph-svg', 'panel'].forEach(function (id) {
        var fresh = doc.getElementById(id), old = document.getElementById(id);
        if (fresh && old) old.replaceWith(document.adoptNode(fresh));
      });
      if (push) history.pushState(null, '', href);
    }).catch(function () { window.location.href = href; });
  }
  document.addEventListener('click', function (ev) {
    var a = ev.target.closest ? ev.target.closest('a[data-node]') : null;
    if (!a || ev.button !== 0 || ev.ctrlKey || ev.metaKey || ev.shiftKey || ev.altKey) return;
    ev.preventDefault();
    swap(a.getAttribute('href'), true);
  });
  window.addEventListener('popstate', function () { swap(window.location.href, false); });
})();
)js";
}

const char* graph_stylesheet() {
  return R"css(main:has(.graphpage){max-width:none}.graphpage dl.stats{margin-top:.4em}
.graphview{display:flex;gap:1em;align-items:flex-start}.graphwrap{overflow:auto;flex:1 1 auto;max-height:82vh;border:1px solid #e4e4e4;background:#fff}
.panel{flex:0 0 340px;background:#fff;border:1px solid #e4e4e4;padding:.4em .8em;max-height:82vh;overflow:auto}
.panel h2{margin:.3em 0;font-size:1.05em}.panel h3{font-size:.95em;margin:.8em 0 .2em}.panel dl.stats{margin-top:.4em}
table.edges td{font-size:.9em}td.pos{color:#2f6fca}td.neg{color:#c8323c}.prompt code{font-size:1.1em}
svg.graph .band{fill:#fff}svg.graph .band.alt{fill:#f6f7f9}svg.graph .grid{stroke:#e4e4e4}
svg.graph text{font-size:11px;fill:#555}svg.graph text.tok{font-family:ui-monospace,monospace;fill:#1d1d1f}svg.graph text.lbl{font-size:10px;fill:#1d1d1f}
svg.graph .e{fill:none}svg.graph .e.pos{stroke:#2f6fca}svg.graph .e.neg{stroke:#c8323c}
svg.graph.has-sel .e{opacity:.12}svg.graph.has-sel .e.hl{opacity:1;stroke-opacity:.9}
svg.graph .node{stroke:#333;stroke-width:.6;cursor:pointer}svg.graph .node.sel{stroke:#000;stroke-width:2.5}
svg.graph a:hover .node{stroke:#000;stroke-width:1.6}
svg.graph .feature{fill:#f28e2b}svg.graph .error{fill:#b0b0b0}svg.graph .embedding{fill:#59a14f}svg.graph .logit{fill:#8c5fbf}
.legend .key{display:inline-block;width:.9em;height:.9em;margin:0 .3em 0 .9em;vertical-align:-.1em;border:1px solid #333}
.legend .key.feature{border-radius:50%;background:#f28e2b}.legend .key.error{background:#b0b0b0}
.legend .key.attn{border:0;color:#f28e2b;width:auto;line-height:.9em;-webkit-text-stroke:.5px #333}.legend .key.embedding{background:#59a14f}.legend .key.logit{background:#8c5fbf}
.legend .key.pos{height:.2em;border:0;background:#2f6fca;vertical-align:.2em}.legend .key.neg{height:.2em;border:0;background:#c8323c;vertical-align:.2em}
)css";
}

}  // namespace

FeatureLink feature_link(const AnalysisStore& store, const NodeRow& node) {
  if (node.kind != NodeKind::kFeature || !node.feature_index)
    return {std::nullopt, "not a feature"};
  const auto& meta = store.meta();
  const auto served = meta.find("sae_path");
  if (served == meta.end() || served->second.empty()) {
    return {std::nullopt, "the served analysis database names no dictionary"};
  }
  if (!same_dictionary(node.dictionary, served->second)) {
    return {std::nullopt,
            fmt::format("the node's dictionary {} is not the served {}",
                        node.dictionary.empty() ? "(none)" : node.dictionary, served->second)};
  }
  const std::int64_t layer = node.layer.value_or(0), index = *node.feature_index;
  std::int64_t id = index;
  if (store.feature_layers() > 1) {
    const std::int64_t per_layer = store.d_sae() / store.feature_layers();
    if (layer < 0 || layer >= store.feature_layers() || index >= per_layer) {
      return {std::nullopt, fmt::format("layer {} feature {} is outside the served {} layers × {}",
                                        layer, index, store.feature_layers(), per_layer)};
    }
    id = layer * per_layer + index;
  } else if (const auto only = meta.find("clt_layer"); only != meta.end()) {
    if (only->second != std::to_string(layer)) {
      return {std::nullopt, fmt::format("the served database holds layer {} of the dictionary only",
                                        only->second)};
    }
  }
  if (id < 0 || id >= store.d_sae()) {
    return {std::nullopt,
            fmt::format("feature {} is outside the served 0..{}", id, store.d_sae() - 1)};
  }
  return {id, ""};
}

std::optional<PageResponse> handle_graph_request(const AnalysisStore& store,
                                                 const circuits::GraphStore* graphs,
                                                 std::string_view path, const QueryParams& params) {
  if (path == "/graph.js")
    return PageResponse{200, "text/javascript; charset=utf-8", graph_script()};
  if (path == "/graph.css") return PageResponse{200, "text/css; charset=utf-8", graph_stylesheet()};
  if (path == "/graphs") return list_page(graphs);
  if (path == "/api/graphs") {
    nlohmann::json list = nlohmann::json::array();
    if (graphs != nullptr)
      for (const auto& m : graphs->list_graphs()) list.push_back(meta_json(m));
    return json_response({{"available", graphs != nullptr}, {"graphs", list}});
  }
  const bool api = path.substr(0, 12) == "/api/graphs/";
  if (!api && path.substr(0, 8) != "/graphs/") return std::nullopt;
  std::string_view rest = path.substr(api ? 12 : 8);
  std::string_view node_part;
  bool node_route = false;
  if (api) {
    if (const auto cut = rest.find("/nodes/"); cut != std::string_view::npos) {
      node_part = rest.substr(cut + 7);
      rest = rest.substr(0, cut);
      node_route = true;
    }
  }
  if (graphs == nullptr)
    return not_found("no graph store is served (start the viewer with --graphs FILE)");
  const std::string id(rest.substr(0, kMaxIdBytes));
  if (!plain_id(rest, true) || !graphs->contains(id)) {
    return not_found(fmt::format("no graph '{}' (the list: /graphs)", rest.substr(0, 40)));
  }
  const GraphView view = graphs->load_graph(id);
  std::string node_id(node_part);
  if (!api) {
    if (const auto it = params.find("node"); it != params.end()) node_id = it->second;
  }
  const NodeRow* selected = nullptr;
  if (node_route || !node_id.empty()) {
    for (const auto& n : view.nodes)
      if (plain_id(node_id, false) && n.node_id == node_id) selected = &n;
    if (selected == nullptr) {
      return not_found(fmt::format("graph '{}' has no kept node '{}'", id, node_id.substr(0, 40)));
    }
  }
  if (!api) return graph_page(store, *graphs, view, selected);
  return json_response(node_route ? node_api(store, *graphs, view, *selected)
                                  : graph_api(store, view));
}

PageResponse handle_viewer_request(const AnalysisStore& store, const circuits::GraphStore* graphs,
                                   std::string_view path, const QueryParams& params,
                                   const std::map<std::int64_t, Annotation>* annotations) {
  if (auto page = handle_graph_request(store, graphs, path, params)) return *page;
  return handle_request(store, path, params, annotations);
}

}  // namespace saes::analysis
