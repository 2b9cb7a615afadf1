// The training-run page over a small hand-written metrics.jsonl: columns and gaps, file:line
// errors, the chart geometry (points and path computed from the layout) and the /run routes.
#include "saes/analysis/training_curves.h"

#include <cmath>
#include <regex>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "saes/core/error.h"
#include "saes/io/atomic_file.h"

#include "support/temp_dir.h"

namespace {

using namespace saes::analysis;

// Three logged steps as saes-train writes them; the second lacks aux_loss and logged a NaN
// explained variance (null), the third ends without a newline.
constexpr const char* kMetrics =
    "{\"step\":5,\"losses/overall_loss\":1.0,\"losses/aux_loss\":0.5,"
    "\"metrics/explained_variance\":0.2,\"metrics/l0\":16,\"details/n_training_tokens\":2000,"
    "\"details/current_learning_rate\":0.0004,\"sparsity/k\":32}\n"
    "\n"
    "{\"step\":10,\"losses/overall_loss\":0.5,\"metrics/explained_variance\":null,"
    "\"metrics/l0\":16,\"details/n_training_tokens\":4500,"
    "\"details/current_learning_rate\":0.0004,\"sparsity/k\":24}\n"
    "{\"step\":15,\"losses/overall_loss\":0.25,\"losses/aux_loss\":0.25,"
    "\"metrics/explained_variance\":0.6,\"metrics/l0\":16,\"details/n_training_tokens\":7000,"
    "\"details/current_learning_rate\":0.0002,\"sparsity/k\":16,\"<b>odd</b>\":1}";

std::filesystem::path write(const saes::testing::TempDir& dir, const std::string& text) {
  const auto path = dir / "metrics.jsonl";
  saes::io::write_file_atomic(path, text);
  return path;
}

std::vector<std::string> all(const std::string& text, const std::string& pattern) {
  std::vector<std::string> out;
  const std::regex re(pattern);
  for (auto it = std::sregex_iterator(text.begin(), text.end(), re); it != std::sregex_iterator();
       ++it) {
    out.push_back((*it)[1].str());
  }
  return out;
}

}  // namespace

TEST_CASE("load_training_log reads metrics.jsonl as columns with gaps", "[viewer][training]") {
  saes::testing::TempDir dir;
  const TrainingLog log = load_training_log(write(dir, kMetrics));
  CHECK(log.steps == std::vector<std::int64_t>{5, 10, 15});
  CHECK_FALSE(log.incomplete_last_line);
  REQUIRE(log.names.size() == 8);
  CHECK(log.names.front() == "losses/overall_loss");
  CHECK(log.names.back() == "<b>odd</b>");  // first seen on the last line
  CHECK(log.values.at("losses/overall_loss") == std::vector<double>{1.0, 0.5, 0.25});
  const auto& aux = log.values.at("losses/aux_loss");
  CHECK(aux[0] == 0.5);
  CHECK(std::isnan(aux[1]));
  CHECK(aux[2] == 0.25);
  CHECK(std::isnan(log.values.at("metrics/explained_variance")[1]));
  const auto& odd = log.values.at("<b>odd</b>");
  CHECK((std::isnan(odd[0]) && std::isnan(odd[1]) && odd[2] == 1.0));
  CHECK(token_axis(log) == std::optional<std::string>("details/n_training_tokens"));
}

TEST_CASE("load_training_log names the file and line of a bad line", "[viewer][training]") {
  saes::testing::TempDir dir;
  const std::string first = "{\"step\":1,\"a\":1}\n";
  const auto path = [&](const std::string& text) { return write(dir, text); };
  CHECK_THROWS_WITH(load_training_log(path(first + "{\"step\":2,\"a\":\n{\"step\":3}\n")),
                    Catch::Contains("metrics.jsonl:2: not a JSON object"));
  CHECK_THROWS_WITH(load_training_log(path(first + "\n[1, 2]\n")),
                    Catch::Contains("metrics.jsonl:3: not a JSON object"));
  CHECK_THROWS_WITH(load_training_log(path(first + "{\"a\":1}\n")),
                    Catch::Contains("metrics.jsonl:2: no integer \"step\""));
  CHECK_THROWS_WITH(load_training_log(path(first + "{\"step\":2,\"a\":\"x\"}\n")),
                    Catch::Contains("metrics.jsonl:2: \"a\" is not a number"));
  CHECK_THROWS_AS(load_training_log(path(first + "{\"step\":2.5}\n")), saes::DataError);
  CHECK_THROWS_AS(load_training_log(dir / "missing.jsonl"), saes::IoError);
  CHECK_THROWS_WITH(load_training_log(dir / "missing.jsonl"),
                    Catch::Contains("missing.jsonl: no such file"));
  // A torn last line (no newline): left out and flagged, not an error.
  const TrainingLog torn = load_training_log(path(first + "{\"step\":2,\"a\":0."));
  CHECK(torn.steps == std::vector<std::int64_t>{1});
  CHECK(torn.incomplete_last_line);
}

TEST_CASE("chart_points maps values into the plot area", "[viewer][training]") {
  const ChartLayout l;  // 340 x 200, plot x 58..328, y 36..168
  const std::vector<double> xs = {2000, 4500, 7000};
  const std::vector<double> ys = {1.0, NAN, 0.25};
  const auto range = chart_range(xs, ys);
  REQUIRE(range.has_value());
  CHECK(range->x_min == 2000);
  CHECK(range->x_max == 7000);
  CHECK(range->y_min == 0.25);
  CHECK(range->y_max == 1.0);
  const auto points = chart_points(xs, ys, l);
  REQUIRE(points.size() == 2);
  const double plot_w = l.width - l.left - l.right, plot_h = l.height - l.top - l.bottom;
  CHECK(points[0].index == 0);
  CHECK(points[0].x == Approx(l.left));
  CHECK(points[0].y == Approx(l.top));  // the maximum is at the top
  CHECK(points[1].index == 2);
  CHECK(points[1].x == Approx(l.left + plot_w));
  CHECK(points[1].y == Approx(l.top + plot_h));
  // A constant curve is drawn in the middle of a range widened to v ± v/2.
  const auto flat = chart_points({1, 2}, {16, 16}, l);
  REQUIRE(flat.size() == 2);
  CHECK(flat[0].y == Approx(l.top + plot_h / 2));
  CHECK(chart_range({1, 2}, {16, 16})->y_min == 8);
  CHECK(chart_points({1}, {NAN}, l).empty());
}

TEST_CASE("line_chart_svg draws a path with a gap, markers and axis labels", "[viewer][training]") {
  const ChartLayout l;
  const std::vector<double> xs = {0, 1, 2, 3};
  const std::vector<double> ys = {0, 1, NAN, 3};
  const std::string svg = line_chart_svg("a <b> title", "tokens", xs, {5, 10, 15, 20}, ys, l);
  const double plot_w = l.width - l.left - l.right, plot_h = l.height - l.top - l.bottom;
  const auto px = [&](double x) { return fmt::format("{:.2f}", l.left + x / 3 * plot_w); };
  const auto py = [&](double y) {
    return fmt::format("{:.2f}", l.height - l.bottom - y / 3 * plot_h);
  };
  const std::string d =
      fmt::format("M{} {} L{} {} M{} {}", px(0), py(0), px(1), py(1), px(3), py(3));
  CHECK(all(svg, "<path class=\"line\" d=\"([^\"]*)\"") == std::vector<std::string>{d});
  CHECK(all(svg, "<circle class=\"pt\"[^>]*><title>([^<]*)</title>") ==
        std::vector<std::string>{"tokens 0 (step 5): 0", "tokens 1 (step 10): 1",
                                 "tokens 3 (step 20): 3"});
  CHECK(svg.find("a &lt;b&gt; title") != std::string::npos);
  CHECK(svg.find("<b>") == std::string::npos);
  CHECK(svg.find(">last 3</text>") != std::string::npos);
  CHECK(svg.find(">1.5</text>") != std::string::npos);  // the middle of the y range
  CHECK(line_chart_svg("t", "step", {1}, {1}, {NAN}, l).find("no values") != std::string::npos);
  // Token counts on the x axis are abbreviated.
  const std::string tokens = line_chart_svg("t", "tokens", {500, 262144}, {1, 2}, {1, 2}, l);
  CHECK(tokens.find(">500</text>") != std::string::npos);
  CHECK(tokens.find(">262.1k</text>") != std::string::npos);
  // Beyond kCurveMarkersUpTo points only the path is drawn.
  std::vector<double> many(kCurveMarkersUpTo + 1);
  for (std::size_t i = 0; i < many.size(); ++i) many[i] = static_cast<double>(i);
  const std::string dense = line_chart_svg("t", "step", many, {}, many, l);
  CHECK(dense.find("<circle") == std::string::npos);
  CHECK(all(dense, "<path class=\"line\" d=\"([^\"]*)\"").size() == 1);
}

TEST_CASE("the /run page charts every metric of the log against tokens", "[viewer][training]") {
  saes::testing::TempDir dir;
  const auto path = write(dir, kMetrics);
  CHECK_FALSE(handle_run_request(path, "/features/0", {}).has_value());
  CHECK_FALSE(handle_run_request(path, "/run/", {}).has_value());

  const auto page = handle_run_request(path, "/run", {});
  REQUIRE(page.has_value());
  CHECK(page->status == 200);
  const std::string& html = page->body;
  // One chart per metric but the token axis; the headline sections in order, the rest folded.
  CHECK(all(html, "<svg class=\"curve\"[^>]*aria-label=\"([^\"]*)\"") ==
        std::vector<std::string>{"losses/overall_loss", "losses/aux_loss",
                                 "metrics/l0 — L0 (active features per token)",
                                 "metrics/explained_variance — explained variance",
                                 "details/current_learning_rate — learning rate",
                                 "sparsity/k — k (TopK)", "&lt;b&gt;odd&lt;/b&gt;"});
  const auto losses = html.find("<h2>Losses</h2>"),
             sparsity = html.find("<h2>Sparsity and reconstruction</h2>"),
             schedules = html.find("<h2>Schedules</h2>"),
             other = html.find("<summary>All other metrics (1)</summary>");
  CHECK((losses < sparsity && sparsity < schedules && schedules < other && other != html.npos));
  CHECK(html.find("<b>odd") == std::string::npos);
  CHECK(html.find("tokens 7000 (step 15): 16") != std::string::npos);
  CHECK(html.find("3 logged steps (steps 5 … 15)") != std::string::npos);

  const auto api = handle_run_request(path, "/api/run", {});
  REQUIRE(api.has_value());
  CHECK(api->content_type == "application/json");
  const auto j = nlohmann::json::parse(api->body);
  CHECK(j["x_axis"] == "details/n_training_tokens");
  CHECK(j["steps"] == nlohmann::json::array({5, 10, 15}));
  CHECK(j["metrics"]["losses/aux_loss"] == nlohmann::json::array({0.5, nullptr, 0.25}));
}

TEST_CASE("the /run page without tokens uses steps; errors name the file and line",
          "[viewer][training]") {
  saes::testing::TempDir dir;
  const auto path = write(dir,
                          "{\"step\":1,\"losses/aux_loss\":0,\"losses/overall_loss\":2}\n"
                          "{\"step\":2,\"losses/aux_loss\":0,\"losses/overall_loss\":1}\n");
  const auto page = handle_run_request(path, "/run", {});
  REQUIRE(page.has_value());
  // The total loss comes first, whatever the order of the file.
  CHECK(all(page->body, "<svg class=\"curve\"[^>]*aria-label=\"([^\"]*)\"") ==
        std::vector<std::string>{"losses/overall_loss", "losses/aux_loss"});
  CHECK(page->body.find("step 2 (step 2): 1") != std::string::npos);
  CHECK(page->body.find("x axis: training step") != std::string::npos);

  write(dir, "{\"step\":1}\nnot json\n");
  const auto bad = handle_run_request(path, "/run", {});
  REQUIRE(bad.has_value());
  CHECK(bad->status == 500);
  CHECK(bad->body.find("metrics.jsonl:2: not a JSON object") != std::string::npos);
  const auto bad_api = handle_run_request(path, "/api/run", {});
  CHECK(bad_api->status == 500);
  CHECK(nlohmann::json::parse(bad_api->body)["error"].get<std::string>().find("metrics.jsonl:2:") !=
        std::string::npos);

  const auto none = handle_run_request(std::nullopt, "/run", {});
  REQUIRE(none.has_value());
  CHECK(none->status == 404);
  CHECK(none->body.find("--run RUN_DIR") != std::string::npos);
}
