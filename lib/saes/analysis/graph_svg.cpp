// graph_svg (graph_pages.h): the layout of an attribution graph — a grid of cells (row = layer,
// column = position), each cell's nodes in wrapped lines, most important first — and its SVG.
// The pages around it and the side panel are graph_pages.cpp's.
#include <algorithm>
#include <cmath>
#include <map>
#include <vector>

#include <fmt/format.h>

#include "saes/analysis/graph_pages.h"
#include "saes/analysis/viewer_internal.h"
#include "saes/circuits/graph_store.h"

namespace saes::analysis {
namespace {

using circuits::NodeKind;
using circuits::NodeRow;

constexpr double kStep = 22;     // distance between two nodes of a cell
constexpr double kLine = 22;     // distance between two lines of a cell
constexpr double kCellPad = 14;  // horizontal room around a cell's nodes
constexpr double kMinColumn = 70, kMaxColumn = 264;
constexpr double kMinRow = 50;
constexpr double kLeft = 64, kRight = 16, kTop = 64, kBottom = 44;
constexpr double kMaxRadius = 9, kMinRadius = 3;

/// Nodes' radius: cumulative influence is lower for more important nodes (in [0, 1]); logits
/// have none and are sized by their probability.
double radius(const NodeRow& n) {
  double importance = 0.5;
  if (n.kind == NodeKind::kLogit) {
    importance = std::sqrt(std::clamp(n.probability.value_or(0.0), 0.0, 1.0));
  } else if (n.influence) {
    importance = 1.0 - std::clamp(*n.influence, 0.0, 1.0);
  }
  return kMinRadius + (kMaxRadius - kMinRadius) * importance;
}

/// A node's place in the SVG.
struct Placed {
  double x = 0, y = 0, r = 0;
};

/// Whether the view has attention nodes: each layer then gets two rows, attention below MLP.
bool interleaved(const circuits::GraphView& view) {
  return std::any_of(view.nodes.begin(), view.nodes.end(),
                     [](const NodeRow& n) { return n.attention; });
}

/// Rows from the bottom: 0 embeddings, 1 + l layer l (interleaved: 1 + 2l attention of layer l,
/// 2 + 2l its MLP), the last row logits.
std::int64_t row_of(const NodeRow& n, std::int64_t n_layers, bool two_per_layer) {
  const std::int64_t per = two_per_layer ? 2 : 1;
  if (n.kind == NodeKind::kEmbedding) return 0;
  if (n.kind == NodeKind::kLogit) return per * n_layers + 1;
  const std::int64_t l = std::clamp<std::int64_t>(n.layer.value_or(0), 0, n_layers - 1);
  return 1 + per * l + (two_per_layer && !n.attention ? 1 : 0);
}

/// Importance order inside a cell: features by influence, then the error node; logits by
/// probability.
bool before(const NodeRow& a, const NodeRow& b) {
  if (a.kind != b.kind) return a.kind == NodeKind::kFeature;
  if (a.kind == NodeKind::kLogit) return a.probability.value_or(0) > b.probability.value_or(0);
  return a.influence.value_or(1) < b.influence.value_or(1);
}

struct Layout {
  std::int64_t rows = 0, columns = 0;
  std::vector<double> column_x;  // left edge of each column
  std::vector<double> column_width;
  std::vector<double> row_y;  // top edge of each row (row 0 = embeddings, at the bottom)
  std::vector<double> row_height;
  std::vector<Placed> nodes;  // by view.nodes index
  double width = 0, height = 0;
  bool two_per_layer = false;  // attention and MLP rows per layer
};

Layout layout(const circuits::GraphView& view) {
  Layout out;
  const std::int64_t n_layers = std::max<std::int64_t>(view.meta.n_layers, 1);
  const bool two_per_layer = interleaved(view);
  out.two_per_layer = two_per_layer;
  out.rows = (two_per_layer ? 2 : 1) * n_layers + 2;
  std::int64_t columns = std::max<std::int64_t>(view.meta.n_positions, 1);
  for (const auto& n : view.nodes) columns = std::max(columns, n.position + 1);
  out.columns = columns;
  // cells[row][column]: indices into view.nodes, most important first
  std::vector<std::vector<std::vector<std::size_t>>> cells(
      static_cast<std::size_t>(out.rows), std::vector<std::vector<std::size_t>>(columns));
  for (std::size_t i = 0; i < view.nodes.size(); ++i) {
    const auto& n = view.nodes[i];
    cells[static_cast<std::size_t>(row_of(n, n_layers, two_per_layer))]
         [static_cast<std::size_t>(std::max<std::int64_t>(n.position, 0))]
             .push_back(i);
  }
  for (auto& row : cells)
    for (auto& cell : row)
      std::stable_sort(cell.begin(), cell.end(), [&](std::size_t a, std::size_t b) {
        return before(view.nodes[a], view.nodes[b]);
      });
  out.column_width.assign(static_cast<std::size_t>(columns), kMinColumn);
  std::vector<std::int64_t> per_line(static_cast<std::size_t>(columns), 1);
  for (std::int64_t c = 0; c < columns; ++c) {
    std::size_t most = 0;
    for (const auto& row : cells) most = std::max(most, row[static_cast<std::size_t>(c)].size());
    const double w =
        std::clamp(static_cast<double>(most) * kStep + kCellPad, kMinColumn, kMaxColumn);
    out.column_width[static_cast<std::size_t>(c)] = w;
    per_line[static_cast<std::size_t>(c)] =
        std::max<std::int64_t>(1, static_cast<std::int64_t>((w - kCellPad) / kStep));
  }
  out.column_x.resize(static_cast<std::size_t>(columns));
  double x = kLeft;
  for (std::int64_t c = 0; c < columns; ++c) {
    out.column_x[static_cast<std::size_t>(c)] = x;
    x += out.column_width[static_cast<std::size_t>(c)];
  }
  out.width = x + kRight;
  const auto lines = [&](std::int64_t r, std::int64_t c) {
    const auto n = static_cast<std::int64_t>(
        cells[static_cast<std::size_t>(r)][static_cast<std::size_t>(c)].size());
    return (n + per_line[static_cast<std::size_t>(c)] - 1) / per_line[static_cast<std::size_t>(c)];
  };
  out.row_height.assign(static_cast<std::size_t>(out.rows), kMinRow);
  for (std::int64_t r = 0; r < out.rows; ++r)
    for (std::int64_t c = 0; c < columns; ++c)
      out.row_height[static_cast<std::size_t>(r)] =
          std::max(out.row_height[static_cast<std::size_t>(r)],
                   static_cast<double>(lines(r, c)) * kLine + 18);
  out.row_y.resize(static_cast<std::size_t>(out.rows));
  double y = kTop;
  for (std::int64_t r = out.rows - 1; r >= 0; --r) {  // the top row first
    out.row_y[static_cast<std::size_t>(r)] = y;
    y += out.row_height[static_cast<std::size_t>(r)];
  }
  out.height = y + kBottom;
  out.nodes.resize(view.nodes.size());
  for (std::int64_t r = 0; r < out.rows; ++r) {
    for (std::int64_t c = 0; c < columns; ++c) {
      const auto& cell = cells[static_cast<std::size_t>(r)][static_cast<std::size_t>(c)];
      const std::int64_t cap = per_line[static_cast<std::size_t>(c)], n_lines = lines(r, c);
      const double cx = out.column_x[static_cast<std::size_t>(c)] +
                        out.column_width[static_cast<std::size_t>(c)] / 2;
      const double cy =
          out.row_y[static_cast<std::size_t>(r)] + out.row_height[static_cast<std::size_t>(r)] / 2;
      for (std::size_t k = 0; k < cell.size(); ++k) {
        const auto line = static_cast<std::int64_t>(k) / cap,
                   slot = static_cast<std::int64_t>(k) % cap;
        const std::int64_t in_line =
            std::min<std::int64_t>(cap, static_cast<std::int64_t>(cell.size()) - line * cap);
        Placed& p = out.nodes[cell[k]];
        p.x = cx + (static_cast<double>(slot) - static_cast<double>(in_line - 1) / 2) * kStep;
        p.y = cy + (static_cast<double>(line) - static_cast<double>(n_lines - 1) / 2) * kLine;
        p.r = radius(view.nodes[cell[k]]);
      }
    }
  }
  return out;
}

/// At most `chars` characters of `text` (UTF-8 aware), with "…" when cut.
std::string shorten(const std::string& text, std::size_t chars) {
  std::size_t count = 0, i = 0;
  for (; i < text.size(); ++i) {
    if ((static_cast<unsigned char>(text[i]) & 0xC0) == 0x80) continue;
    if (count == chars) return text.substr(0, i) + "…";
    ++count;
  }
  return text;
}

std::string node_title(const NodeRow& n) {
  std::string t = fmt::format("{} · {}{}", n.node_id, n.attention ? "attention " : "",
                              circuits::kind_name(n.kind));
  if (n.layer) t += fmt::format(" · layer {}", *n.layer);
  t += fmt::format(" · position {}", n.position);
  if (n.kind == NodeKind::kFeature && n.feature_index)
    t += fmt::format(" · index {}", *n.feature_index);
  if (n.kind == NodeKind::kEmbedding || n.kind == NodeKind::kLogit) {
    t += fmt::format(" · \"{}\"", token_label(n.label, n.feature_index.value_or(-1)));
  }
  if (n.activation) t += " · activation " + viewer::number(*n.activation);
  if (n.probability) t += " · p = " + viewer::number(*n.probability);
  if (n.influence) t += " · influence " + viewer::number(*n.influence);
  return html_escape(t);
}

std::string node_shape(const NodeRow& n, const Placed& p, bool selected) {
  const std::string cls = fmt::format("node {}{}{}", circuits::kind_name(n.kind),
                                      n.attention ? " attn" : "", selected ? " sel" : "");
  if (n.kind == NodeKind::kFeature && n.attention) {  // a triangle, as OpenMOSS's front-end
    return fmt::format(
        "<polygon class=\"{}\" points=\"{:.1f},{:.1f} {:.1f},{:.1f} {:.1f},{:.1f}\"><title>{}"
        "</title></polygon>",
        cls, p.x, p.y - 1.2 * p.r, p.x - 1.1 * p.r, p.y + 0.8 * p.r, p.x + 1.1 * p.r,
        p.y + 0.8 * p.r, node_title(n));
  }
  if (n.kind == NodeKind::kFeature) {
    return fmt::format(
        "<circle class=\"{}\" cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"{:.1f}\"><title>{}</title></circle>",
        cls, p.x, p.y, p.r, node_title(n));
  }
  return fmt::format(
      "<rect class=\"{}\" x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" "
      "height=\"{:.1f}\"><title>{}</title></rect>",
      cls, p.x - p.r, p.y - p.r, 2 * p.r, 2 * p.r, node_title(n));
}

std::string row_label(std::int64_t r, std::int64_t rows, bool two_per_layer) {
  if (r == 0) return "E";
  if (r == rows - 1) return "logits";
  if (two_per_layer) return fmt::format("L{} {}", (r - 1) / 2, (r - 1) % 2 == 0 ? "attn" : "mlp");
  return fmt::format("L{}", r - 1);
}

}  // namespace

std::string token_label(const std::string& text, std::int64_t id) {
  return text.empty() ? fmt::format("#{}", id) : text;
}

std::string graph_svg(const circuits::GraphView& view, std::string_view selected) {
  const Layout g = layout(view);
  std::string out = fmt::format(
      "<svg id=\"graph-svg\" class=\"graph{}\" xmlns=\"http://www.w3.org/2000/svg\" "
      "width=\"{:.0f}\" "
      "height=\"{:.0f}\" viewBox=\"0 0 {:.0f} {:.0f}\" role=\"img\" aria-label=\"attribution graph "
      "{}\">",
      selected.empty() ? "" : " has-sel", g.width, g.height, g.width, g.height,
      html_escape(view.meta.id));
  // the grid: a band per row, its label on the left; a column label (the token) at the bottom
  for (std::int64_t r = 0; r < g.rows; ++r) {
    const double y = g.row_y[static_cast<std::size_t>(r)],
                 h = g.row_height[static_cast<std::size_t>(r)];
    out += fmt::format(
        "<rect class=\"band{}\" x=\"{}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\"/>"
        "<text class=\"axis\" x=\"{}\" y=\"{:.1f}\" text-anchor=\"end\">{}</text>",
        r % 2 == 0 ? " alt" : "", kLeft, y, g.width - kLeft - kRight, h, kLeft - 8, y + h / 2 + 4,
        row_label(r, g.rows, g.two_per_layer));
  }
  const double base = g.height - kBottom;
  for (std::int64_t c = 0; c < g.columns; ++c) {
    const double x = g.column_x[static_cast<std::size_t>(c)],
                 w = g.column_width[static_cast<std::size_t>(c)];
    if (c > 0) {
      out += fmt::format(
          "<line class=\"grid\" x1=\"{0:.1f}\" y1=\"{1}\" x2=\"{0:.1f}\" y2=\"{2:.1f}\"/>", x, kTop,
          base);
    }
    const auto at = static_cast<std::size_t>(c);
    const std::string token =
        at < view.meta.prompt_tokens.size()
            ? token_label(view.meta.prompt_tokens[at],
                          at < view.meta.token_ids.size() ? view.meta.token_ids[at] : -1)
            : std::string();
    const auto chars = static_cast<std::size_t>(std::max(2.0, (w - 8) / 7));
    out += fmt::format(
        "<text class=\"tok\" x=\"{0:.1f}\" y=\"{1:.1f}\" text-anchor=\"middle\">{2}<title>position "
        "{3}: "
        "{4}</title></text><text class=\"axis\" x=\"{0:.1f}\" y=\"{5:.1f}\" "
        "text-anchor=\"middle\">{3}</text>",
        x + w / 2, base + 16, html_escape(shorten(token, chars)), c, html_escape(token), base + 32);
  }
  // links under the nodes, the strongest last (on top)
  std::map<std::string, std::size_t> by_id;
  for (std::size_t i = 0; i < view.nodes.size(); ++i) by_id[view.nodes[i].node_id] = i;
  double largest = 0;
  for (const auto& l : view.links) largest = std::max(largest, std::abs(l.weight));
  std::vector<std::size_t> order(view.links.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    return std::abs(view.links[a].weight) < std::abs(view.links[b].weight);
  });
  out += "<g class=\"links\">";
  for (const std::size_t i : order) {
    const auto& l = view.links[i];
    const auto s = by_id.find(l.source), t = by_id.find(l.target);
    if (s == by_id.end() || t == by_id.end()) continue;
    const Placed &a = g.nodes[s->second], &b = g.nodes[t->second];
    const double share = largest > 0 ? std::abs(l.weight) / largest : 0;
    const bool lit = !selected.empty() && (l.source == selected || l.target == selected);
    out += fmt::format(
        "<line class=\"e {}{}\" x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" "
        "stroke-width=\"{:.2f}\" stroke-opacity=\"{:.2f}\"><title>{} → {}: {}</title></line>",
        l.weight >= 0 ? "pos" : "neg", lit ? " hl" : "", a.x, a.y, b.x, b.y, 0.6 + 3.4 * share,
        0.15 + 0.75 * share, html_escape(l.source), html_escape(l.target),
        viewer::number(l.weight));
  }
  out += "</g><g class=\"nodes\">";
  for (std::size_t i = 0; i < view.nodes.size(); ++i) {
    const auto& n = view.nodes[i];
    const Placed& p = g.nodes[i];
    const std::string href = fmt::format("/graphs/{}?node={}", viewer::url_encode(view.meta.id),
                                         viewer::url_encode(n.node_id));
    out += fmt::format("<a href=\"{0}\" data-node=\"{1}\">{2}", html_escape(href),
                       html_escape(n.node_id), node_shape(n, p, n.node_id == selected));
    if (n.kind == NodeKind::kLogit) {  // the target token, slanted above the logit
      out += fmt::format(
          "<text class=\"lbl\" x=\"{0:.1f}\" y=\"{1:.1f}\" transform=\"rotate(-40 {0:.1f} "
          "{1:.1f})\">{2}</text>",
          p.x + 2, p.y - p.r - 3,
          html_escape(shorten(token_label(n.label, n.feature_index.value_or(-1)), 14)));
    }
    out += "</a>";
  }
  return out + "</g></svg>";
}

}  // namespace saes::analysis
