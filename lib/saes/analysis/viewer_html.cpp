// Building blocks of the viewer's HTML (viewer_pages.h): escaping, id parsing, URL encoding, the
// SVG histogram, bar chart and heat map, activation shading and the embedded stylesheet.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <utility>

#include <fmt/format.h>

#include "saes/analysis/viewer_internal.h"
#include "saes/analysis/viewer_pages.h"

namespace saes::analysis {

std::string html_escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::optional<std::int64_t> parse_feature_id(std::string_view text, std::int64_t d_sae) {
  if (text.empty() || text.size() > 18) return std::nullopt;
  std::int64_t id = 0;
  for (const char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    id = id * 10 + (c - '0');
  }
  if (id >= d_sae) return std::nullopt;
  return id;
}

int activation_level(double value, double max_act) {
  const double alpha =
      max_act > 0 && std::isfinite(value) ? std::clamp(value / max_act, 0.0, 1.0) : 0.0;
  return static_cast<int>(std::lround(alpha * kActivationLevels));
}

std::string activation_color(double value, double max_act) {
  const double alpha =
      max_act > 0 && std::isfinite(value) ? std::clamp(value / max_act, 0.0, 1.0) : 0.0;
  return fmt::format("rgba(255,140,0,{:.2f})", alpha);
}

std::string histogram_svg(const std::vector<std::int64_t>& counts, const std::vector<double>& edges,
                          std::string_view x_label) {
  constexpr double kWidth = 640, kHeight = 180, kLeft = 48, kBottom = 34, kTop = 8;
  const double plot_w = kWidth - kLeft - 8, plot_h = kHeight - kBottom - kTop;
  std::string out = fmt::format(
      "<svg class=\"hist\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" "
      "viewBox=\"0 0 {} {}\" role=\"img\" aria-label=\"{}\">",
      kWidth, kHeight, kWidth, kHeight, html_escape(x_label));
  const std::int64_t peak = counts.empty() ? 0 : *std::max_element(counts.begin(), counts.end());
  const bool usable = peak > 0 && edges.size() == counts.size() + 1;
  if (!usable) {
    out += fmt::format("<text x=\"{}\" y=\"{}\" class=\"axis\">no activations</text></svg>",
                       kLeft, kHeight / 2);
    return out;
  }
  const double bar_w = plot_w / static_cast<double>(counts.size());
  for (std::size_t i = 0; i < counts.size(); ++i) {
    const double h = plot_h * static_cast<double>(counts[i]) / static_cast<double>(peak);
    out += fmt::format(
        "<rect class=\"bar\" x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\">"
        "<title>[{:.3g}, {:.3g}): {}</title></rect>",
        kLeft + bar_w * static_cast<double>(i), kTop + plot_h - h, std::max(bar_w - 1.0, 0.5), h,
        edges[i], edges[i + 1], counts[i]);
  }
  const double base = kTop + plot_h;
  out += fmt::format("<line class=\"axis\" x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\"/>", kLeft, base,
                     kLeft + plot_w, base);
  const std::size_t n = counts.size();
  for (const std::size_t i : {std::size_t{0}, n / 2, n}) {
    out += fmt::format(
        "<text class=\"axis\" x=\"{:.1f}\" y=\"{}\" text-anchor=\"{}\">{:.3g}</text>",
        kLeft + bar_w * static_cast<double>(i), base + 14, i == n ? "end" : "middle", edges[i]);
  }
  out += fmt::format(
      "<text class=\"axis\" x=\"4\" y=\"{}\">{}</text>"
      "<text class=\"axis\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text></svg>",
      kTop + 10, peak, kLeft + plot_w / 2, kHeight - 4, html_escape(x_label));
  return out;
}

std::string bar_chart_svg(const std::vector<double>& values, const std::vector<std::string>& labels,
                          std::string_view title) {
  constexpr double kRow = 22, kLeft = 230, kBar = 320, kRight = 80;
  const double height = kRow * static_cast<double>(values.size()) + 8;
  std::string out = fmt::format(
      "<svg class=\"bars\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" "
      "viewBox=\"0 0 {0} {1}\" role=\"img\" aria-label=\"{2}\">",
      kLeft + kBar + kRight, height, html_escape(title));
  const double peak = values.empty() ? 0.0 : *std::max_element(values.begin(), values.end());
  for (std::size_t i = 0; i < values.size(); ++i) {
    const double y = 4 + kRow * static_cast<double>(i);
    const double w = peak > 0 ? kBar * std::max(values[i], 0.0) / peak : 0.0;
    const std::string label = i < labels.size() ? html_escape(labels[i]) : std::to_string(i);
    out += fmt::format(
        "<text class=\"axis\" x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"end\">{}</text>"
        "<rect class=\"bar\" x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\">"
        "<title>{}: {:.4g}</title></rect>"
        "<text class=\"axis\" x=\"{:.1f}\" y=\"{:.1f}\">{:.3g}</text>",
        kLeft - 6, y + 14, label, kLeft, y + 2, w, kRow - 6, label, values[i], kLeft + w + 4,
        y + 14, values[i]);
  }
  return out + "</svg>";
}

std::string cosine_color(double cosine) {
  if (!std::isfinite(cosine)) return "#cccccc";
  // white at 0 towards red (178, 24, 43) at 1 or blue (33, 102, 172) at -1
  const double t = std::min(std::abs(cosine), 1.0);
  const int r = cosine >= 0 ? 178 : 33, g = cosine >= 0 ? 24 : 102, b = cosine >= 0 ? 43 : 172;
  const auto mix = [t](int to) { return static_cast<int>(std::lround(255 + (to - 255) * t)); };
  return fmt::format("#{:02x}{:02x}{:02x}", mix(r), mix(g), mix(b));
}

std::string heatmap_svg(const std::vector<double>& cosines,
                        const std::vector<double>& inner_products,
                        const std::vector<std::string>& labels, std::string_view title) {
  const std::size_t h = labels.size();
  const bool usable = h > 0 && cosines.size() == h * h && inner_products.size() == h * h;
  std::size_t longest = 1;
  for (const auto& l : labels) longest = std::max(longest, l.size());
  // rows: labels on the left; columns: the same labels rotated above; legend on the right
  const double cell =
      std::clamp(320.0 / static_cast<double>(std::max<std::size_t>(h, 1)), 10.0, 44.0);
  const double label_w = std::clamp(6.0 * static_cast<double>(longest), 30.0, 240.0);
  const double left = label_w + 8, top = label_w * 0.72 + 10, grid = cell * static_cast<double>(h);
  const double legend_x = left + grid + 18, legend_h = std::max(grid, 120.0);
  const double width = std::max(legend_x + 50, left + grid + label_w * 0.72 + 4);
  const double height = top + legend_h + 8;
  std::string out = fmt::format(
      "<svg class=\"heat\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{0:.0f}\" "
      "height=\"{1:.0f}\" viewBox=\"0 0 {0:.0f} {1:.0f}\" role=\"img\" aria-label=\"{2}\">",
      width, height, html_escape(title));
  if (!usable) {
    return out +
           fmt::format("<text class=\"axis\" x=\"4\" y=\"{:.0f}\">no matrix</text></svg>", top);
  }
  for (std::size_t a = 0; a < h; ++a) {
    const std::string name = html_escape(labels[a]);
    const double along = static_cast<double>(a) * cell + cell / 2;
    out += fmt::format(
        "<text class=\"axis\" x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"end\">{}</text>"
        "<text class=\"axis\" transform=\"translate({:.1f},{:.1f}) rotate(-45)\">{}</text>",
        left - 6, top + along + 4, name, left + along, top - 6, name);
  }
  for (std::size_t a = 0; a < h; ++a) {
    for (std::size_t b = 0; b < h; ++b) {
      const double c = cosines[a * h + b], x = left + static_cast<double>(b) * cell;
      const double y = top + static_cast<double>(a) * cell;
      out += fmt::format(
          "<rect class=\"cell\" x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" "
          "fill=\"{}\"><title>{} × {}: cosine {:.4g}, inner product {:.4g}</title></rect>",
          x, y, cell, cell, cosine_color(c), html_escape(labels[a]), html_escape(labels[b]), c,
          inner_products[a * h + b]);
      if (h <= kHeatmapValuesUpTo) {
        out += fmt::format(
            "<text class=\"{}\" x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">{:.2f}</text>",
            std::abs(c) > 0.6 ? "val light" : "val", x + cell / 2, y + cell / 2 + 4, c);
      }
    }
  }
  constexpr int kSteps = 20;  // the legend: 1 at the top, -1 at the bottom
  const double step = legend_h / kSteps;
  for (int k = 0; k < kSteps; ++k) {
    const double value = 1.0 - (2.0 * k + 1.0) / kSteps;
    out +=
        fmt::format("<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"12\" height=\"{:.2f}\" fill=\"{}\"/>",
                    legend_x, top + step * k, step + 0.3, cosine_color(value));
  }
  for (const auto& [value, y] : {std::pair{"1", top + 8}, std::pair{"0", top + legend_h / 2 + 4},
                                 std::pair{"−1", top + legend_h}}) {
    out += fmt::format("<text class=\"axis\" x=\"{:.1f}\" y=\"{:.1f}\">{}</text>", legend_x + 16, y,
                       value);
  }
  return out + "</svg>";
}

namespace viewer {

std::string url_encode(std::string_view text) {
  std::string out;
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (std::isalnum(u) != 0 || c == '-' || c == '_' || c == '.' || c == '~') {
      out += c;
    } else {
      out += fmt::format("%{:02X}", u);
    }
  }
  return out;
}

std::string number(double value) { return fmt::format("{:.4g}", value); }

std::string page(std::string_view title, std::string_view subtitle, std::string_view body,
                 bool dictionary_nav) {
  return fmt::format(
      "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
      "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
      "<title>{} · saes viewer</title><link rel=\"stylesheet\" href=\"/style.css\"></head>\n"
      "<body><nav>{}"
      "<span class=\"sub\">{}</span></nav>\n<main>{}</main></body></html>\n",
      html_escape(title),
      dictionary_nav ? "<a href=\"/\">Dictionary</a><a href=\"/eval\">Evaluation</a>"
                       "<a href=\"/run\">Training</a><a href=\"/graphs\">Graphs</a>"
                     : "<a href=\"/\">Dictionaries</a>",
      html_escape(subtitle), body);
}

const std::string& stylesheet() {
  // The shading levels of activation_level as classes: pages need no inline style (the CSP
  // allows styles from this sheet only).
  static const std::string sheet = [] {
    std::string out = base_stylesheet();
    for (int k = 1; k <= kActivationLevels; ++k) {
      out += fmt::format(".toks .a{}{{background:{}}}", k,
                         activation_color(static_cast<double>(k), kActivationLevels));
      // z-pattern sources: blue for positive, red for negative contributions
      const double alpha = static_cast<double>(k) / kActivationLevels;
      out += fmt::format(".src .s{}{{background:rgba(30,100,220,{:.2f})}}", k, alpha * 0.85);
      out += fmt::format(".src .n{}{{background:rgba(220,50,40,{:.2f})}}", k, alpha * 0.85);
    }
    return out + "\n";
  }();
  return sheet;
}

const char* base_stylesheet() {
  return R"css(body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1d1d1f;background:#fafafa}
nav{display:flex;gap:1.2em;align-items:baseline;padding:.6em 1.2em;background:#24292f}
nav a{color:#fff;text-decoration:none;font-weight:600}nav .sub{color:#bbb;margin-left:auto}
main{max-width:1100px;margin:0 auto;padding:1em 1.2em}a{color:#0550ae}
h1{font-size:1.5em;margin:.3em 0}h2{font-size:1.15em;margin:1.2em 0 .4em}
table{border-collapse:collapse;background:#fff}th,td{padding:.25em .6em;border-bottom:1px solid #e4e4e4;text-align:right}table.live td:last-child,table.live th:last-child,td.label{text-align:left}form.live textarea{width:32em;vertical-align:middle}form.annotation textarea{width:32em;vertical-align:top}
th{background:#f0f0f0}th a{color:inherit}td.tok,th.tok{text-align:left}code{font-family:ui-monospace,monospace}
form.search{margin:.6em 0}form.search input[type=text]{width:18em;padding:.2em}form.search input.num{width:5em}form.search label{margin-left:.6em}.pager{margin:.6em 0;display:flex;gap:1em}
dl.stats{margin-top:2.6em;display:grid;grid-template-columns:max-content auto;gap:.15em 1em}dl.stats dt{color:#555}dl.stats dd{margin:0}
svg.hist{background:#fff;border:1px solid #e4e4e4}svg.hist .bar{fill:#4078c0}svg.hist .axis{font-size:10px;fill:#555;stroke:#888}
svg.hist text.axis{stroke:none}
svg.bars .bar{fill:#4078c0}svg.heat .axis{font-size:10px;fill:#555}svg.heat .cell{stroke:#fff;stroke-width:1}
svg.heat .val{font-size:10px;fill:#222;pointer-events:none}svg.heat .val.light{fill:#fff}.ctx{background:#fff;border:1px solid #e4e4e4;margin:.3em 0;padding:.35em .5em}
.ctx .meta{color:#777;font-size:.85em}.toks{font-family:ui-monospace,monospace;white-space:pre-wrap;word-break:break-word}
.toks .t[title]{border-radius:2px;cursor:help}.toks .peak{outline:1px solid #c05000}
.src .q{outline:1px dashed #c05000}
.charts{display:flex;flex-wrap:wrap;gap:.8em}figure.chart{margin:0}
svg.curve{background:#fff;border:1px solid #e4e4e4}svg.curve .frame{fill:none;stroke:#d0d0d0}
svg.curve .grid{stroke:#eee}svg.curve .line{fill:none;stroke:#4078c0;stroke-width:1.6}
svg.curve .pt{fill:#4078c0}svg.curve .axis{font-size:10px;fill:#555}svg.curve .title{font-size:11px;font-weight:600;fill:#1d1d1f}
details summary{cursor:pointer;margin:1em 0 .4em;font-weight:600}.error{color:#b00020}
.lens{display:flex;gap:2em}.overview{display:flex;gap:2.5em;flex-wrap:wrap;align-items:flex-start}.muted{color:#777}
)css";
}

}  // namespace viewer
}  // namespace saes::analysis
