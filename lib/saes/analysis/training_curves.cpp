// The training-run page: metrics.jsonl parsing (with file:line errors), the SVG line charts and
// the /run, /api/run routes (training_curves.h).
#include "saes/analysis/training_curves.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>
#include <sstream>
#include <utility>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "saes/analysis/viewer_internal.h"
#include "saes/core/error.h"
#include "saes/io/atomic_file.h"

namespace saes::analysis {
namespace {

using viewer::number;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr std::string_view kTokensMetric = "details/n_training_tokens";

/// A charted metric and what the page calls it.
struct Curve {
  std::string_view name;
  std::string_view label;
};

/// The headline charts after the losses (spec §5.6 names), in page order; those the log holds.
constexpr Curve kSparsityCurves[] = {
    {"metrics/l0", "L0 (active features per token)"},
    {"metrics/explained_variance", "explained variance"},
    {"sparsity/dead_features", "dead features (count)"},
};
constexpr std::string_view kLossOrder[] = {"losses/overall_loss", "losses/mse_loss",
                                           "losses/sparsity_loss", "losses/lp_loss",
                                           "losses/aux_loss"};
constexpr Curve kScheduleCurves[] = {
    {"details/current_learning_rate", "learning rate"},
    {"details/l1_coefficient", "λ (sparsity coefficient)"},
    {"sparsity/k", "k (TopK)"},
    {"details/lp_coefficient", "lp coefficient"},
    {"details/auxk_coefficient", "Aux-K coefficient"},
};

[[noreturn]] void bad_line(const std::filesystem::path& path, std::size_t line,
                           const std::string& what) {
  SAES_THROW(DataError, "{}:{}: {}", path.string(), line, what);
}

/// The min and max of the finite values of `v` among the indices where `ok`.
std::optional<std::pair<double, double>> finite_range(const std::vector<double>& v,
                                                      const std::vector<bool>& ok) {
  std::optional<std::pair<double, double>> r;
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (!ok[i]) continue;
    if (!r) r = std::pair{v[i], v[i]};
    r->first = std::min(r->first, v[i]);
    r->second = std::max(r->second, v[i]);
  }
  return r;
}

std::pair<double, double> widened(std::pair<double, double> r) {
  if (r.second > r.first) return r;
  const double pad = r.first != 0 ? 0.5 * std::abs(r.first) : 1.0;
  return {r.first - pad, r.first + pad};
}

/// An x-axis label: 4 significant digits, with k / M / G for large magnitudes (token counts).
std::string axis_number(double value) {
  const double a = std::abs(value);
  if (a >= 1e9) return fmt::format("{:.4g}G", value / 1e9);
  if (a >= 1e6) return fmt::format("{:.4g}M", value / 1e6);
  if (a >= 1e4) return fmt::format("{:.4g}k", value / 1e3);
  return number(value);
}

std::vector<bool> both_finite(const std::vector<double>& xs, const std::vector<double>& ys) {
  std::vector<bool> ok(std::min(xs.size(), ys.size()));
  for (std::size_t i = 0; i < ok.size(); ++i) ok[i] = std::isfinite(xs[i]) && std::isfinite(ys[i]);
  return ok;
}

std::vector<double> step_axis(const TrainingLog& log) {
  return std::vector<double>(log.steps.begin(), log.steps.end());
}

std::string dump(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

PageResponse html(int status, std::string_view title, std::string body) {
  return {status, "text/html; charset=utf-8", viewer::page(title, "", body)};
}

std::string chart(const TrainingLog& log, const std::vector<double>& xs, std::string_view x_label,
                  std::string_view name, std::string_view label) {
  const std::string title = label.empty() ? std::string(name) : fmt::format("{} — {}", name, label);
  return "<figure class=\"chart\">" +
         line_chart_svg(title, x_label, xs, log.steps, log.values.at(std::string(name))) +
         "</figure>";
}

std::string run_page_body(const TrainingLog& log) {
  const auto axis = token_axis(log);
  const std::vector<double> xs = axis ? log.values.at(*axis) : step_axis(log);
  const std::string x_label = axis ? "tokens" : "step";
  std::string body = fmt::format("<h1>Training run</h1><p><code>{}</code>: {} logged steps",
                                 html_escape(log.path.string()), log.steps.size());
  if (!log.steps.empty()) {
    body += fmt::format(" (steps {} … {})", log.steps.front(), log.steps.back());
  }
  body += fmt::format("; x axis: {}.</p>",
                      axis ? "tokens trained on (details/n_training_tokens)" : "training step");
  if (log.incomplete_last_line) {
    body +=
        "<p class=\"muted\">The last line is incomplete (being written, or the run was killed "
        "while writing it) and is not drawn.</p>";
  }
  if (log.steps.empty()) return body + "<p class=\"muted\">no logged steps yet</p>";

  std::set<std::string, std::less<>> shown;
  if (axis) shown.insert(*axis);
  // The charts of those `curves` the log holds and no earlier section drew.
  const auto charts_of = [&](const std::vector<Curve>& curves) {
    std::string charts;
    for (const Curve& c : curves) {
      if (log.values.count(std::string(c.name)) == 0 || shown.count(c.name) != 0) continue;
      shown.insert(std::string(c.name));
      charts += chart(log, xs, x_label, c.name, c.label);
    }
    return charts.empty() ? charts : "<div class=\"charts\">" + charts + "</div>";
  };
  const auto section = [&](std::string_view heading, const std::vector<Curve>& curves) {
    const std::string charts = charts_of(curves);
    return charts.empty() ? charts : fmt::format("<h2>{}</h2>{}", heading, charts);
  };
  // The loss terms, the total and the reconstruction first (the file lists them alphabetically).
  std::vector<Curve> losses;
  for (const std::string_view n : kLossOrder) {
    if (log.values.count(std::string(n)) != 0) losses.push_back({n, ""});
  }
  for (const std::string& n : log.names) {
    if (n.rfind("losses/", 0) == 0) losses.push_back({n, ""});
  }
  body += section("Losses", losses);
  body += section("Sparsity and reconstruction",
                  std::vector<Curve>(std::begin(kSparsityCurves), std::end(kSparsityCurves)));
  body += section("Schedules",
                  std::vector<Curve>(std::begin(kScheduleCurves), std::end(kScheduleCurves)));
  std::vector<Curve> rest;
  for (const std::string& n : log.names) {
    if (shown.count(n) == 0) rest.push_back({n, ""});
  }
  if (!rest.empty()) {
    body += fmt::format("<details><summary>All other metrics ({})</summary>{}</details>",
                        rest.size(), charts_of(rest));
  }
  return body;
}

nlohmann::json run_json(const TrainingLog& log) {
  nlohmann::json metrics = nlohmann::json::object();
  for (const std::string& n : log.names) {
    nlohmann::json column = nlohmann::json::array();
    for (const double v : log.values.at(n)) {
      column.push_back(std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr));
    }
    metrics[n] = column;
  }
  const auto axis = token_axis(log);
  return {{"path", log.path.string()},
          {"x_axis", axis ? nlohmann::json(*axis) : nlohmann::json("step")},
          {"steps", log.steps},
          {"names", log.names},
          {"metrics", metrics},
          {"incomplete_last_line", log.incomplete_last_line}};
}

}  // namespace

TrainingLog load_training_log(const std::filesystem::path& metrics_jsonl) {
  std::error_code ec;
  SAES_CHECK(std::filesystem::is_regular_file(metrics_jsonl, ec), IoError,
             "{}: no such file (saes-train writes metrics.jsonl into its run folder)",
             metrics_jsonl.string());
  const std::string text = io::read_file(metrics_jsonl);
  TrainingLog log;
  log.path = metrics_jsonl;
  std::size_t begin = 0;
  for (std::size_t line_no = 1; begin < text.size(); ++line_no) {
    const std::size_t end = std::min(text.find('\n', begin), text.size());
    const std::string_view line(text.data() + begin, end - begin);
    const bool terminated = end < text.size();
    begin = end + 1;
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    const auto json = nlohmann::ordered_json::parse(line, nullptr, false);
    if (json.is_discarded() && !terminated) {
      log.incomplete_last_line = true;
      break;
    }
    if (json.is_discarded() || !json.is_object()) {
      bad_line(metrics_jsonl, line_no, "not a JSON object (each line of metrics.jsonl is one)");
    }
    const auto step = json.find("step");
    if (step == json.end() || !step->is_number_integer()) {
      bad_line(metrics_jsonl, line_no, "no integer \"step\"");
    }
    const std::size_t row = log.steps.size();
    log.steps.push_back(step->get<std::int64_t>());
    for (auto& [name, column] : log.values) column.push_back(kNaN);
    for (const auto& [key, value] : json.items()) {
      if (key == "step") continue;
      if (!value.is_number() && !value.is_null()) {
        bad_line(metrics_jsonl, line_no, fmt::format("\"{}\" is not a number", key));
      }
      auto [it, added] = log.values.try_emplace(key, std::vector<double>(row + 1, kNaN));
      if (added) log.names.push_back(key);
      if (value.is_number()) it->second[row] = value.get<double>();
    }
  }
  return log;
}

std::optional<std::string> token_axis(const TrainingLog& log) {
  const auto it = log.values.find(std::string(kTokensMetric));
  if (it == log.values.end()) return std::nullopt;
  const bool all =
      std::all_of(it->second.begin(), it->second.end(), [](double v) { return std::isfinite(v); });
  return all ? std::optional<std::string>(kTokensMetric) : std::nullopt;
}

std::optional<ChartRange> chart_range(const std::vector<double>& xs,
                                      const std::vector<double>& ys) {
  const std::vector<bool> ok = both_finite(xs, ys);
  const auto x = finite_range(xs, ok), y = finite_range(ys, ok);
  if (!x || !y) return std::nullopt;
  const auto wx = widened(*x), wy = widened(*y);
  return ChartRange{wx.first, wx.second, wy.first, wy.second};
}

std::vector<ChartPoint> chart_points(const std::vector<double>& xs, const std::vector<double>& ys,
                                     const ChartLayout& layout) {
  std::vector<ChartPoint> out;
  const auto range = chart_range(xs, ys);
  if (!range) return out;
  const std::vector<bool> ok = both_finite(xs, ys);
  const double plot_w = layout.width - layout.left - layout.right;
  const double plot_h = layout.height - layout.top - layout.bottom;
  for (std::size_t i = 0; i < ok.size(); ++i) {
    if (!ok[i]) continue;
    out.push_back({layout.left + (xs[i] - range->x_min) / (range->x_max - range->x_min) * plot_w,
                   layout.height - layout.bottom -
                       (ys[i] - range->y_min) / (range->y_max - range->y_min) * plot_h,
                   i});
  }
  return out;
}

std::string line_chart_svg(std::string_view title, std::string_view x_label,
                           const std::vector<double>& xs, const std::vector<std::int64_t>& steps,
                           const std::vector<double>& ys, const ChartLayout& layout) {
  const ChartLayout& l = layout;
  std::string out = fmt::format(
      "<svg class=\"curve\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" "
      "viewBox=\"0 0 {0} {1}\" role=\"img\" aria-label=\"{2}\">"
      "<text class=\"title\" x=\"8\" y=\"14\">{2}</text>",
      l.width, l.height, html_escape(title));
  const auto range = chart_range(xs, ys);
  const std::vector<ChartPoint> points = chart_points(xs, ys, layout);
  const double base = l.height - l.bottom, right = l.width - l.right;
  out += fmt::format("<rect class=\"frame\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"/>", l.left,
                     l.top, right - l.left, base - l.top);
  if (!range || points.empty()) {
    return out + fmt::format("<text class=\"axis\" x=\"{}\" y=\"{}\">no values</text></svg>",
                             l.left + 8, (l.top + base) / 2);
  }
  const double mid = (range->y_min + range->y_max) / 2;
  for (const auto& [value, y] : {std::pair{range->y_max, l.top}, std::pair{mid, (l.top + base) / 2},
                                 std::pair{range->y_min, base}}) {
    out += fmt::format(
        "<line class=\"grid\" x1=\"{}\" y1=\"{:.2f}\" x2=\"{}\" y2=\"{:.2f}\"/>"
        "<text class=\"axis\" x=\"{}\" y=\"{:.2f}\" text-anchor=\"end\">{}</text>",
        l.left, y, right, y, l.left - 4, y + 3.5, number(value));
  }
  std::string d;
  std::size_t previous = 0;
  for (std::size_t k = 0; k < points.size(); ++k) {
    const bool gap = k == 0 || points[k].index != previous + 1;
    d += fmt::format("{}{}{:.2f} {:.2f}", d.empty() ? "" : " ", gap ? "M" : "L", points[k].x,
                     points[k].y);
    previous = points[k].index;
  }
  out += fmt::format("<path class=\"line\" d=\"{}\"/>", d);
  if (points.size() <= kCurveMarkersUpTo) {
    for (const ChartPoint& p : points) {
      const std::int64_t step = p.index < steps.size() ? steps[p.index] : 0;
      out += fmt::format(
          "<circle class=\"pt\" cx=\"{:.2f}\" cy=\"{:.2f}\" r=\"2.2\"><title>{} {} (step {}): "
          "{}</title></circle>",
          p.x, p.y, html_escape(x_label), number(xs[p.index]), step, number(ys[p.index]));
    }
  }
  out += fmt::format(
      "<text class=\"axis\" x=\"{}\" y=\"{}\">{}</text>"
      "<text class=\"axis\" x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>"
      "<text class=\"axis\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
      l.left, base + 13, axis_number(range->x_min), right, base + 13, axis_number(range->x_max),
      (l.left + right) / 2, l.height - 6, html_escape(x_label));
  const ChartPoint& last = points.back();
  out += fmt::format("<text class=\"axis\" x=\"{}\" y=\"{}\" text-anchor=\"end\">last {}</text>",
                     right, l.top - 6, number(ys[last.index]));
  return out + "</svg>";
}

std::optional<PageResponse> handle_run_request(
    const std::optional<std::filesystem::path>& metrics_jsonl, std::string_view path,
    const QueryParams& /*params*/) {
  const bool api = path == "/api/run";
  if (path != "/run" && !api) return std::nullopt;
  if (!metrics_jsonl) {
    const std::string what =
        "no training run: the analysed dictionary's folder (meta sae_path) holds no "
        "metrics.jsonl; start the viewer with --run RUN_DIR (a saes-train run folder)";
    if (api) return PageResponse{404, "application/json", dump({{"error", what}})};
    return html(404, "Training run",
                fmt::format("<h1>Training run</h1><p class=\"muted\">{}</p>", html_escape(what)));
  }
  TrainingLog log;
  try {
    log = load_training_log(*metrics_jsonl);
  } catch (const Error& e) {
    if (api) {
      return PageResponse{500, "application/json", dump({{"error", e.what()}})};
    }
    return html(500, "Training run",
                fmt::format("<h1>Training run</h1><p class=\"error\">cannot read the training "
                            "curves: {}</p>",
                            html_escape(e.what())));
  }
  if (api) return PageResponse{200, "application/json", dump(run_json(log))};
  return html(200, "Training run", run_page_body(log));
}

}  // namespace saes::analysis
