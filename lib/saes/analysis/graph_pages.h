// The viewer's graph pages (docs/viewer.md "Graphs"): the attribution graphs of a
// circuits::GraphStore as a list, one graph as inline SVG (positions along x, layers along y) with
// a node's side panel, their JSON twins, the page's stylesheet and click script. The feature pages
// are viewer_pages.h's (torch-free, for the fuzz target); handle_viewer_request routes to both.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "saes/analysis/annotations.h"
#include "saes/analysis/viewer_pages.h"

namespace saes::circuits {
class GraphStore;
struct GraphView;
struct NodeRow;
}  // namespace saes::circuits

namespace saes::analysis {

class AnalysisStore;

/// Answers the graph routes; nullopt for any other path. Routes: `/graphs` (the list; without a
/// store, 200 and a short message), `/graphs/<id>` (the page; `?node=<node_id>` of a kept node
/// opens its side panel), `/api/graphs`, `/api/graphs/<id>`, `/api/graphs/<id>/nodes/<node_id>`,
/// `/graph.css`, `/graph.js`. An unknown or malformed graph or node id, and any graph route
/// without a store, is a 404. `graphs` may be null.
std::optional<PageResponse> handle_graph_request(const AnalysisStore& store,
                                                 const circuits::GraphStore* graphs,
                                                 std::string_view path, const QueryParams& params);

/// Every route of the viewer (what `saes-analyze serve` answers): the graph routes above, else
/// viewer_pages.h's handle_request.
PageResponse handle_viewer_request(const AnalysisStore& store, const circuits::GraphStore* graphs,
                                   std::string_view path, const QueryParams& params,
                                   const std::map<std::int64_t, Annotation>* annotations = nullptr);

/// Where a graph's feature node is in the served analysis database.
struct FeatureLink {
  std::optional<std::int64_t> feature_id;  ///< the viewer's id (/features/<id>)
  std::string reason;                      ///< why there is none (empty when there is one)
};

/// The viewer's feature id of `node` when it is a feature of the dictionary `store` analysed:
/// the node's `dictionary` and the database's meta `sae_path` name the same run (equal after
/// lexical normalization, a run folder's `sae_weights.safetensors` counting as the folder, or the
/// same file on disk). The id is layer·(d_sae / feature_layers) + index for a CLT database, the
/// index for a one-layer database (a CLT database of one layer, meta `clt_layer`: only that
/// layer's features), and must lie in [0, d_sae).
FeatureLink feature_link(const AnalysisStore& store, const circuits::NodeRow& node);

/// The graph as an inline <svg class="graph">: one `node` shape (feature: circle; error,
/// embedding, logit: rect) per node of `view`, sized by importance (3 + 6·(1 − influence) px;
/// logits 3 + 6·√probability), each inside a link to `/graphs/<id>?node=<node_id>` with a <title>;
/// one `<line class="e pos|neg">` per link, width ∝ |weight|. Rows bottom to top: embeddings
/// ("E"), layers 0 .. n_layers−1, logits; columns: positions, labelled with the prompt tokens.
/// `selected`: a node_id to outline (its links highlighted, the others dimmed), or empty.
std::string graph_svg(const circuits::GraphView& view, std::string_view selected = {});

/// A token's text as the graph pages show it: `text`, or "#<id>" when it is empty.
std::string token_label(const std::string& text, std::int64_t id);

}  // namespace saes::analysis
