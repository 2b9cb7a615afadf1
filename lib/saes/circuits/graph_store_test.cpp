// Graph store: a graph reads back as written (nodes, kept flags, links, scores, settings), a
// duplicate id is refused unless overwrite, missing graphs and foreign files are clear errors.
#include "saes/circuits/graph_store.h"

#include <filesystem>
#include <set>

#include <ATen/ATen.h>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "saes/circuits/graph_json.h"
#include "saes/core/error.h"
#include "saes/io/sqlite.h"

#include "support/circuit_graphs.h"
#include "support/temp_dir.h"

namespace {

using namespace saes::circuits;
using Catch::Matchers::Contains;

struct Stored {
  Graph graph = saes::testing::small_graph();
  PruneResult pruned = prune(graph);
  GraphScores scores = graph_scores(graph);
};

}  // namespace

TEST_CASE("graph store round-trips a pruned graph", "[circuits]") {
  saes::testing::TempDir dir;
  const auto path = GraphStore::path_beside(dir / "analysis.sqlite");
  CHECK(path == dir / "graphs.sqlite");
  const Stored s;
  {
    GraphStore store(path, GraphStoreMode::kWrite);
    store.add_graph(s.graph, s.pruned, s.scores, "cat-sat");
  }
  for (const auto& entry : std::filesystem::directory_iterator(dir.path()))
    CHECK(entry.path().filename() == "graphs.sqlite");  // no temp file left

  const GraphStore store(path);
  CHECK(store.contains("cat-sat"));
  CHECK_FALSE(store.contains("dog"));
  const auto all = store.list_graphs();
  REQUIRE(all.size() == 1);
  const GraphMeta& m = all[0];
  CHECK(m.id == "cat-sat");
  CHECK(m.prompt == "<s> cat sat");
  CHECK(m.prompt_tokens == s.graph.token_strings);
  CHECK(m.token_ids == s.graph.tokens);
  CHECK(m.model == "tiny-2l");
  CHECK(m.n_layers == 2);
  CHECK(m.n_positions == 3);
  CHECK(m.created.size() == 20);
  CHECK(m.replacement_score == s.scores.replacement);
  CHECK(m.completeness_score == s.scores.completeness);
  CHECK(m.node_threshold == 0.8);
  CHECK(m.edge_threshold == 0.98);
  CHECK(m.n_nodes == 15);
  CHECK(m.n_kept_nodes == 7);
  CHECK(m.n_links == 8);
  const auto settings = nlohmann::json::parse(m.settings);
  CHECK(settings["pruning_settings"]["edge_threshold"] == 0.98);
  CHECK(settings["dictionaries"] == nlohmann::json({"runs/plt/L0", "runs/plt/L1"}));

  // The kept nodes and links are the JSON's.
  const GraphJson js = make_graph_json(s.graph, s.pruned, "cat-sat");
  const GraphView view = store.load_graph("cat-sat");
  REQUIRE(view.nodes.size() == js.nodes.size());
  for (std::size_t i = 0; i < js.nodes.size(); ++i) {
    CHECK(view.nodes[i].node_id == js.nodes[i].node_id);
    CHECK(view.nodes[i].index == js.nodes[i].graph_index);
    CHECK(view.nodes[i].kept);
  }
  REQUIRE(view.links.size() == js.links.size());
  for (std::size_t i = 0; i < js.links.size(); ++i) {
    CHECK(view.links[i].source == js.links[i].source);
    CHECK(view.links[i].target == js.links[i].target);
    CHECK(view.links[i].weight == js.links[i].weight);
  }

  const GraphView full = store.load_graph("cat-sat", /*kept_only=*/false);
  REQUIRE(full.nodes.size() == 15);
  const NodeRow& f = full.nodes[3];  // F(l1, p2, i3)
  CHECK(f.node_id == "1_3_2");
  CHECK(f.kind == NodeKind::kFeature);
  CHECK(f.layer == 1);
  CHECK(f.position == 2);
  CHECK(f.feature_index == 3);
  CHECK(f.activation == 0.5);
  CHECK(f.influence.value() == Approx(0.272887323).epsilon(1e-6));
  CHECK(f.dictionary == "runs/plt/L1");
  CHECK(f.kept);
  const NodeRow& dropped = full.nodes[0];
  CHECK(dropped.node_id == "0_5_1");
  CHECK_FALSE(dropped.kept);
  const NodeRow& err = full.nodes[6];
  CHECK(err.kind == NodeKind::kError);
  CHECK(err.node_id == "0_-1_2");
  CHECK_FALSE(err.feature_index.has_value());
  CHECK(full.nodes[11].kind == NodeKind::kEmbedding);
  CHECK(full.nodes[11].label == " cat");
  CHECK(full.nodes[11].feature_index == 42);
  CHECK_FALSE(full.nodes[11].layer.has_value());
  const NodeRow& logit = full.nodes[13];
  CHECK(logit.kind == NodeKind::kLogit);
  CHECK(logit.label == " on");
  CHECK(logit.probability == 0.6);
  CHECK_FALSE(logit.influence.has_value());
}

TEST_CASE("graph store gives each node's strongest links", "[circuits]") {
  saes::testing::TempDir dir;
  const Stored s;
  GraphStore store(dir / "graphs.sqlite", GraphStoreMode::kWrite);
  store.add_graph(s.graph, s.pruned, s.scores, "g");
  // 1_3_2 (node 3) reads 0_7_2 (1.5) and E_17_2 (−0.2); it feeds 3_100_2 (2) and 3_200_2 (−1).
  const NodeEdges e = store.node_edges("g", "1_3_2", 10);
  REQUIRE(e.incoming.size() == 2);
  CHECK(e.incoming[0].source == "0_7_2");
  CHECK(e.incoming[1].source == "E_17_2");
  CHECK(e.incoming[1].weight == Approx(-0.2));
  REQUIRE(e.outgoing.size() == 2);
  CHECK(e.outgoing[0].target == "3_100_2");
  CHECK(e.outgoing[1].target == "3_200_2");
  CHECK(store.node_edges("g", "1_3_2", 1).outgoing.size() == 1);
  REQUIRE_THROWS_WITH(store.node_edges("g", "9_9_9"), Contains("9_9_9"));
}

TEST_CASE("graph store refuses a duplicate id unless overwrite", "[circuits]") {
  saes::testing::TempDir dir;
  const auto path = dir / "graphs.sqlite";
  const Stored s;
  GraphStore store(path, GraphStoreMode::kWrite);
  store.add_graph(s.graph, s.pruned, s.scores, "g");
  store.add_graph(s.graph, prune(s.graph, 1.0, 1.0), s.scores, "loose");
  REQUIRE_THROWS_AS(store.add_graph(s.graph, s.pruned, s.scores, "g"), saes::ConfigError);
  REQUIRE_THROWS_WITH(store.add_graph(s.graph, s.pruned, s.scores, "g"),
                      Contains("\"g\" already exists") && Contains("overwrite"));
  CHECK(store.load_graph("g").meta.n_links == 8);  // the refused add left it alone

  store.add_graph(s.graph, prune(s.graph, 1.0, 1.0), s.scores, "g", /*overwrite=*/true);
  const GraphView g = store.load_graph("g");
  CHECK(g.meta.node_threshold == 1.0);
  CHECK(g.meta.n_links == 15);
  CHECK(g.links.size() == 15);
  CHECK(store.load_graph("g", false).nodes.size() == 15);
  CHECK(store.list_graphs().size() == 2);
  REQUIRE_THROWS_WITH(store.add_graph(s.graph, s.pruned, s.scores, "bad slug"), Contains("slug"));
}

TEST_CASE("graph store errors name the file and the graph", "[circuits]") {
  saes::testing::TempDir dir;
  REQUIRE_THROWS_AS(GraphStore(dir / "missing.sqlite"), saes::IoError);
  {
    GraphStore store(dir / "graphs.sqlite", GraphStoreMode::kWrite);
    REQUIRE_THROWS_WITH(store.load_graph("nope"),
                        Contains("no graph \"nope\"") && Contains("graphs.sqlite"));
    const Stored s;
    store.add_graph(s.graph, s.pruned, s.scores, "there");
    REQUIRE_THROWS_WITH(store.load_graph("nope"), Contains("it holds there"));
  }
  {
    saes::io::SqliteDatabase other(dir / "other.sqlite", saes::io::SqliteMode::kCreate);
    other.exec("CREATE TABLE t (x INTEGER)");
  }
  REQUIRE_THROWS_WITH(GraphStore(dir / "other.sqlite"), Contains("not an saes graph store"));
  GraphStore read_only(dir / "graphs.sqlite");
  const Stored s;
  REQUIRE_THROWS_WITH(read_only.add_graph(s.graph, s.pruned, s.scores, "x"), Contains("read-only"));
}

TEST_CASE("graph store keeps QK traces and reads a version-1 store", "[circuits]") {
  saes::testing::TempDir dir;
  const auto path = dir / "graphs.sqlite";
  Stored s;
  saes::circuits::QkTrace t;  // node 3 (F l1 p2 i3) as if it were a traced attention feature
  t.node = 3;
  t.key_position = 1;
  t.score = 2.5;
  t.constant = 0.25;
  t.query_constant = 0.5;
  t.key_constant = 0.75;
  t.pairs = {{0, 11, 1.5}, {12, 11, -0.5}};
  t.query = {{0, 2.0}};
  t.key = {{11, 1.25}, {10, 0.5}};
  s.graph.qk_traces.push_back(t);
  {
    GraphStore store(path, GraphStoreMode::kWrite);
    store.add_graph(s.graph, s.pruned, s.scores, "qk");
  }
  const GraphStore store(path);
  const auto row = store.qk_trace("qk", saes::circuits::node_id(s.graph, 3));
  REQUIRE(row.has_value());
  CHECK(row->key_position == 1);
  CHECK(row->score == 2.5);
  CHECK(row->query_constant == 0.5);
  CHECK(row->key_constant == 0.75);
  REQUIRE(row->pairs.size() == 2);
  CHECK(row->pairs[0].query == saes::circuits::node_id(s.graph, 0));
  CHECK(row->pairs[0].key == saes::circuits::node_id(s.graph, 11));
  CHECK(row->pairs[1].value == -0.5);
  REQUIRE(row->query.size() == 1);
  CHECK(row->query[0].key.empty());
  REQUIRE(row->key.size() == 2);
  CHECK(row->key[1].key == saes::circuits::node_id(s.graph, 10));
  CHECK(!store.qk_trace("qk", saes::circuits::node_id(s.graph, 0)).has_value());

  // a store written before QK tracing (schema 1): read without traces, upgraded when written
  {
    saes::io::SqliteDatabase db(path, saes::io::SqliteMode::kReadWrite);
    db.exec("DROP TABLE graph_qk_traces; DROP TABLE graph_qk_terms; UPDATE meta SET value = '1' "
            "WHERE key = 'schema_version';");
  }
  {
    const GraphStore old(path);
    CHECK(old.load_graph("qk").nodes.size() > 0);
    CHECK(!old.qk_trace("qk", saes::circuits::node_id(s.graph, 3)).has_value());
  }
  {
    GraphStore upgraded(path, GraphStoreMode::kWrite);
    upgraded.add_graph(s.graph, s.pruned, s.scores, "qk2");
  }
  CHECK(GraphStore(path).qk_trace("qk2", saes::circuits::node_id(s.graph, 3)).has_value());
  {
    saes::io::SqliteDatabase db(path, saes::io::SqliteMode::kReadWrite);
    db.exec("UPDATE meta SET value = '9' WHERE key = 'schema_version';");
  }
  REQUIRE_THROWS_WITH(GraphStore(path), Contains("schema version 9, this saes reads versions 1"));
}
