// The viewer's training-run page (docs/viewer.md): a run's metrics.jsonl read as columns, and its
// curves — loss terms, L0, explained variance, dead features, lr, λ, k — drawn as server-rendered
// SVG line charts against tokens (or steps). No sockets here (runners/serve.cpp routes to it) and
// no torch, like viewer_pages.h.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "saes/analysis/viewer_pages.h"

namespace saes::analysis {

/// A training run's metrics.jsonl (saes-train, docs/training.md "Metrics") as columns.
struct TrainingLog {
  std::filesystem::path path;
  std::vector<std::int64_t> steps;  ///< the `step` of each line, in file order
  std::vector<std::string> names;   ///< the metrics, in the order they first appear
  /// Per metric, one value per line: NaN where the line lacks it or holds null (a NaN logged).
  std::map<std::string, std::vector<double>> values;
  /// The last line has no newline and is not valid JSON: a run is writing it (or was killed while
  /// writing it); it was left out.
  bool incomplete_last_line = false;
};

/// Reads a metrics.jsonl. Throws IoError when it cannot be read, DataError "<path>:<line>: …" for
/// a line that is not a JSON object with an integer "step" and numbers (or null) as values
/// (blank lines are skipped; an unterminated last line, see incomplete_last_line, too).
TrainingLog load_training_log(const std::filesystem::path& metrics_jsonl);

/// The metric the charts take as x: details/n_training_tokens when every line holds it, else
/// none (the step).
std::optional<std::string> token_axis(const TrainingLog& log);

/// Geometry of a line chart in pixels: the plot area spans x ∈ [left, width − right] and
/// y ∈ [top, height − bottom].
struct ChartLayout {
  double width = 340;
  double height = 200;
  double left = 58;
  double right = 12;
  double top = 36;  ///< room for the title and the last value above the plot
  double bottom = 32;
};

/// One drawn point: its pixel position and the index of its line in the log.
struct ChartPoint {
  double x = 0;
  double y = 0;
  std::size_t index = 0;
};

/// The value ranges a chart maps to its plot area: [x_min, x_max] and [y_min, y_max] of the
/// points whose x and y are finite; a zero range is widened to v ± 0.5·|v| (v ± 1 when v = 0).
struct ChartRange {
  double x_min = 0, x_max = 1, y_min = 0, y_max = 1;
};
std::optional<ChartRange> chart_range(const std::vector<double>& xs, const std::vector<double>& ys);

/// Pixel positions of the finite points (xs[i], ys[i]) (the two vectors have one value per line):
/// px = left + (x − x_min)/(x_max − x_min)·plot width, py = height − bottom − (y − y_min)/(y_max −
/// y_min)·plot height; points with a non-finite coordinate are left out.
std::vector<ChartPoint> chart_points(const std::vector<double>& xs, const std::vector<double>& ys,
                                     const ChartLayout& layout = {});

/// Charts with markers (a <circle> with a <title> per point) up to this many points.
inline constexpr std::size_t kCurveMarkersUpTo = 250;

/// An inline <svg class="curve"> line chart of ys against xs: the title, one <path class="line">
/// through the points ("M x y L x y …", a new "M" after a missing value), the y range (min, middle,
/// max) and x range (first, last) as axis labels, and with ≤ kCurveMarkersUpTo points a marker
/// per point titled "<x_label> X (step S): value". Texts are escaped. "no values" when no point
/// is finite.
std::string line_chart_svg(std::string_view title, std::string_view x_label,
                           const std::vector<double>& xs, const std::vector<std::int64_t>& steps,
                           const std::vector<double>& ys, const ChartLayout& layout = {});

/// `/run` (the charts) and `/api/run` (the log as JSON: path, x_axis, steps, metrics, …); nullopt
/// for every other path. `metrics_jsonl` is the run's file (nullopt: the viewer knows no run, and
/// the page says how to name one); it is read on every request, so a training that is still
/// running shows its new lines on reload. A file that is missing or has a bad line is a 500 whose
/// page names the file and line.
std::optional<PageResponse> handle_run_request(
    const std::optional<std::filesystem::path>& metrics_jsonl, std::string_view path,
    const QueryParams& params);

}  // namespace saes::analysis
