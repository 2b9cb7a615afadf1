// Building blocks of the viewer's HTML (viewer_pages.h): escaping, id parsing, URL encoding, the
// SVG histogram, activation shading and the embedded stylesheet.
#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cmath>

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

std::string page(std::string_view title, std::string_view subtitle, std::string_view body) {
  return fmt::format(
      "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
      "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
      "<title>{} · saes viewer</title><link rel=\"stylesheet\" href=\"/style.css\"></head>\n"
      "<body><nav><a href=\"/\">Dictionary</a><a href=\"/eval\">Evaluation</a>"
      "<a href=\"/graphs\">Graphs</a>"
      "<span class=\"sub\">{}</span></nav>\n<main>{}</main></body></html>\n",
      html_escape(title), html_escape(subtitle), body);
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
table{border-collapse:collapse;background:#fff}th,td{padding:.25em .6em;border-bottom:1px solid #e4e4e4;text-align:right}
th{background:#f0f0f0}th a{color:inherit}td.tok,th.tok{text-align:left}code{font-family:ui-monospace,monospace}
form.search{margin:.6em 0}form.search input[type=text]{width:18em;padding:.2em}.pager{margin:.6em 0;display:flex;gap:1em}
dl.stats{margin-top:2.6em;display:grid;grid-template-columns:max-content auto;gap:.15em 1em}dl.stats dt{color:#555}dl.stats dd{margin:0}
svg.hist{background:#fff;border:1px solid #e4e4e4}svg.hist .bar{fill:#4078c0}svg.hist .axis{font-size:10px;fill:#555;stroke:#888}
svg.hist text.axis{stroke:none}.ctx{background:#fff;border:1px solid #e4e4e4;margin:.3em 0;padding:.35em .5em}
.ctx .meta{color:#777;font-size:.85em}.toks{font-family:ui-monospace,monospace;white-space:pre-wrap;word-break:break-word}
.toks .t[title]{border-radius:2px;cursor:help}.toks .peak{outline:1px solid #c05000}
.src .q{outline:1px dashed #c05000}
.lens{display:flex;gap:2em}.overview{display:flex;gap:2.5em;flex-wrap:wrap;align-items:flex-start}.muted{color:#777}
)css";
}

}  // namespace viewer
}  // namespace saes::analysis
