// Pruning: influence against the closed form w·((I − Â)⁻¹ − I), cycles refused, the threshold
// keeps the smallest top set, prune's kept nodes and edges against circuit-tracer's algorithm
// (tests/reference/circuits_prune_reference.py), and the replacement / completeness scores.
#include "saes/circuits/pruning.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include <ATen/ATen.h>
#include <catch2/catch.hpp>

#include "saes/core/error.h"

#include "support/circuit_graphs.h"

namespace {

using namespace saes::circuits;
using Catch::Matchers::Contains;

std::vector<std::int64_t> true_indices(const at::Tensor& mask) {
  std::vector<std::int64_t> out;
  const at::Tensor flat = mask.contiguous().view(-1);
  for (std::int64_t i = 0; i < flat.numel(); ++i)
    if (flat[i].item<bool>()) out.push_back(i);
  return out;
}

/// Kept edges as (target, source) pairs, target-major.
std::vector<std::pair<std::int64_t, std::int64_t>> true_edges(const at::Tensor& mask) {
  std::vector<std::pair<std::int64_t, std::int64_t>> out;
  const std::int64_t n = mask.size(0);
  for (const std::int64_t i : true_indices(mask)) out.emplace_back(i / n, i % n);
  return out;
}

at::Tensor closed_form(const at::Tensor& normalized, const at::Tensor& w) {
  const std::int64_t n = normalized.size(0);
  const at::Tensor eye = at::eye(n, at::kDouble);
  return at::matmul(w, at::linalg_inv(eye - normalized) - eye);
}

}  // namespace

TEST_CASE("normalize_rows divides |A| by each row's sum and leaves empty rows zero", "[circuits]") {
  const at::Tensor a = at::tensor({1.0, -3.0, 0.0, 0.0, 0.0, 0.0, 0.5, 0.5, -1.0}).view({3, 3});
  const at::Tensor n = normalize_rows(a.to(at::kFloat));
  CHECK(n.scalar_type() == at::kDouble);
  CHECK(n[0][0].item<double>() == Approx(0.25));
  CHECK(n[0][1].item<double>() == Approx(0.75));
  CHECK(n[1].abs().sum().item<double>() == 0.0);
  CHECK(n[2][2].item<double>() == Approx(0.5));
}

TEST_CASE("influence equals the closed form w((I - A)^-1 - I) on hand-made DAGs", "[circuits]") {
  SECTION("a chain with a shortcut: 0 -> 1 -> 2 -> 3 and 0 -> 3") {
    at::Tensor a = at::zeros({4, 4}, at::kDouble);
    a[1][0] = 1.0;
    a[2][1] = 2.0;
    a[3][2] = 3.0;
    a[3][0] = -1.0;
    const at::Tensor w = at::tensor({0.0, 0.0, 0.0, 1.0}, at::kDouble);
    const at::Tensor nrm = normalize_rows(a);
    const at::Tensor got = influence(nrm, w);
    // By hand: Â[3] = (0.25, 0, 0.75, 0), Â[2][1] = Â[1][0] = 1, so node 2 gets 0.75, node 1 gets
    // 0.75 and node 0 gets 0.25 + 0.75.
    CHECK(got[0].item<double>() == Approx(1.0));
    CHECK(got[1].item<double>() == Approx(0.75));
    CHECK(got[2].item<double>() == Approx(0.75));
    CHECK(got[3].item<double>() == 0.0);
    CHECK(at::allclose(got, closed_form(nrm, w), 1e-12, 1e-12));
  }
  SECTION("the small test graph") {
    const Graph g = saes::testing::small_graph();
    const at::Tensor w = g.target_weights();
    const at::Tensor nrm = normalize_rows(g.adjacency);
    const at::Tensor got = node_influence(g.adjacency, w);
    CHECK(at::allclose(got, closed_form(nrm, w), 1e-12, 1e-12));
    CHECK(got[3].item<double>() == Approx(0.56363636).epsilon(1e-6));
    CHECK(got[13].item<double>() == 0.0);  // nothing has a logit as its source
  }
  SECTION("row_influence reads only the rows given, and equals node_influence") {
    const Graph g = saes::testing::small_graph();
    const at::Tensor w = g.target_weights();
    std::vector<std::int64_t> rows;  // the rows with edges, in a scrambled order
    for (std::int64_t t = g.n_nodes() - 1; t >= 0; --t)
      if (g.adjacency[t].abs().sum().item<double>() > 0) rows.push_back(t);
    CHECK(at::allclose(row_influence(g.adjacency, rows, w), node_influence(g.adjacency, w), 1e-12,
                       1e-12));
    // a row left out counts as empty: as node_influence of the graph without it
    at::Tensor cut = g.adjacency.clone();
    cut[3].zero_();
    rows.erase(std::find(rows.begin(), rows.end(), 3));
    CHECK(at::allclose(row_influence(g.adjacency, rows, w), node_influence(cut, w), 1e-12,
                       1e-12));
  }
}

TEST_CASE("influence refuses a graph with a cycle", "[circuits]") {
  at::Tensor a = at::zeros({3, 3}, at::kDouble);
  a[1][0] = 1.0;
  a[0][1] = 1.0;  // 0 -> 1 -> 0
  a[2][1] = 1.0;
  const at::Tensor w = at::tensor({0.0, 0.0, 1.0}, at::kDouble);
  REQUIRE_THROWS_AS(influence(normalize_rows(a), w), saes::DataError);
  REQUIRE_THROWS_WITH(influence(normalize_rows(a), w), Contains("the graph has a cycle"));
  a.zero_();
  a[0][0] = 0.5;  // a self-loop is a cycle too
  REQUIRE_THROWS_WITH(influence(normalize_rows(a), w), Contains("cycle"));
  REQUIRE_THROWS_WITH(row_influence(a, {0}, at::tensor({1.0, 0.0, 0.0}, at::kDouble)),
                      Contains("cycle"));
}

TEST_CASE("find_threshold keeps the smallest top set holding the fraction", "[circuits]") {
  const at::Tensor scores = at::tensor({0.05, 0.4, 0.0, 0.1, 0.25, 0.15, 0.03, 0.02}, at::kDouble);
  const double total = scores.sum().item<double>();
  for (const double thr : {0.1, 0.5, 0.7, 0.85, 0.92, 0.96, 0.99, 1.0}) {  // off the steps
    const double cut = find_threshold(scores, thr);
    const at::Tensor kept = scores.ge(cut);
    const double held = scores.masked_select(kept).sum().item<double>();
    INFO("threshold " << thr << ", cut " << cut);
    CHECK(held / total >= thr - 1e-12);
    CHECK(cut > 0.0);  // the clamp: never a zero score
    const double smallest = scores.masked_select(kept).min().item<double>();
    CHECK((held - smallest) / total < thr);
  }
  CHECK(find_threshold(scores, 0.39) == 0.4);
  CHECK(find_threshold(scores, 0.7) == 0.15);
  CHECK(find_threshold(scores, 1.0) == 0.02);
  CHECK(std::isinf(find_threshold(at::zeros({4}, at::kDouble), 0.5)));
  REQUIRE_THROWS_AS(find_threshold(scores, 0.0), saes::ConfigError);
}

TEST_CASE("prune keeps what circuit-tracer's prune_graph keeps", "[circuits]") {
  const Graph g = saes::testing::small_graph();
  using Edges = std::vector<std::pair<std::int64_t, std::int64_t>>;
  SECTION("defaults 0.8 / 0.98") {
    const PruneResult r = prune(g);
    CHECK(r.node_threshold == 0.8);
    CHECK(r.edge_threshold == 0.98);
    CHECK(true_indices(r.node_mask) == std::vector<std::int64_t>{1, 3, 10, 11, 12, 13, 14});
    CHECK(true_edges(r.edge_mask) ==
          Edges{{1, 11}, {1, 12}, {3, 1}, {3, 12}, {13, 1}, {13, 3}, {14, 3}, {14, 12}});
    const std::vector<double> cum = {
        0.888908448, 0.4806338, 0.983274648, 0.272887323, 1, 1, 0.956866196, 1, 1,
        0.924119716, 1,         0.805281687, 0.669131452, 1, 1};
    for (std::size_t i = 0; i < cum.size(); ++i)
      CHECK(r.cumulative_influence[static_cast<std::int64_t>(i)].item<double>() ==
            Approx(cum[i]).epsilon(1e-6));
  }
  SECTION("a feature without inputs is removed although its influence passes") {
    const PruneResult r = prune(g, 1.0, 1.0);
    CHECK(r.node_influence[2].item<double>() > find_threshold(r.node_influence, 1.0));
    CHECK(true_indices(r.node_mask) ==
          std::vector<std::int64_t>{0, 1, 3, 6, 9, 10, 11, 12, 13, 14});
    CHECK_FALSE(r.edge_mask[13][2].item<bool>());  // its edge went with it
  }
  SECTION("a tight edge threshold removes nodes left without kept outgoing edges") {
    const PruneResult r = prune(g, 1.0, 0.5);
    CHECK(true_indices(r.node_mask) == std::vector<std::int64_t>{1, 3, 10, 11, 12, 13, 14});
    CHECK(true_edges(r.edge_mask) == Edges{{1, 12}, {3, 1}, {13, 3}, {14, 3}});
  }
  SECTION("invariants") {
    const PruneResult r = prune(g, 0.9, 0.9);
    for (std::int64_t i = 10; i < 15; ++i)
      CHECK(r.node_mask[i].item<bool>());  // embeddings, logits
    for (std::int64_t i = 0; i < 10; ++i) {
      if (!r.node_mask[i].item<bool>()) {
        CHECK_FALSE(r.edge_mask.select(0, i).any().item<bool>());
        CHECK_FALSE(r.edge_mask.select(1, i).any().item<bool>());
        continue;
      }
      CHECK(r.edge_mask.select(1, i).any().item<bool>());             // an outgoing edge
      if (i < 4) CHECK(r.edge_mask.select(0, i).any().item<bool>());  // features: incoming
    }
  }
}

TEST_CASE("prune validates its thresholds and the graph", "[circuits]") {
  Graph g = saes::testing::small_graph();
  REQUIRE_THROWS_WITH(prune(g, 0.0, 0.98), Contains("node_threshold"));
  REQUIRE_THROWS_AS(prune(g, 1.5, 0.98), saes::ConfigError);
  REQUIRE_THROWS_WITH(prune(g, 0.8, -0.1), Contains("edge_threshold"));
  g.adjacency[3][1] = std::nan("");
  REQUIRE_THROWS_AS(prune(g), saes::DataError);
  g.adjacency = at::zeros({4, 4});
  REQUIRE_THROWS_WITH(prune(g), Contains("adjacency must be [15, 15]"));
}

TEST_CASE("graph scores: known values, and 1 when no error node carries influence", "[circuits]") {
  SECTION("one layer: the logit reads an error and an embedding equally") {
    const GraphScores s = graph_scores(saes::testing::one_layer_graph());
    CHECK(s.replacement == Approx(0.5));
    CHECK(s.completeness == Approx(0.75));  // (0.5·1 + 1·0.5 + 1·0.5) / 2
  }
  SECTION("the small graph against the numpy transcription") {
    const GraphScores s = graph_scores(saes::testing::small_graph());
    CHECK(s.replacement == Approx(0.8339784913669502).epsilon(1e-9));
    CHECK(s.completeness == Approx(0.9526670744474987).epsilon(1e-9));
  }
  SECTION("without error edges") {
    Graph g = saes::testing::small_graph();
    g.adjacency.narrow(1, 4, 6).zero_();
    const GraphScores s = graph_scores(g);
    CHECK(s.replacement == 1.0);
    CHECK(s.completeness == Approx(1.0));
  }
}
