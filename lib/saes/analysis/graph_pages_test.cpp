// The viewer's graph pages over a hand-made graph store (support/circuit_graphs.h): the list, the
// graph page's SVG (one shape per kept node, one line per link), the side panel with its strongest
// links and the feature-page link, 404s, HTML escaping, the JSON twins, and feature_link's rules.
#include "saes/analysis/graph_pages.h"

#include <filesystem>
#include <memory>

#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "saes/analysis/store.h"
#include "saes/analysis/viewer_pages.h"
#include "saes/circuits/graph_store.h"
#include "saes/circuits/pruning.h"

#include "support/circuit_graphs.h"
#include "support/temp_dir.h"

namespace {

using namespace saes::analysis;
using saes::circuits::GraphStore;
using saes::circuits::GraphStoreMode;
using saes::circuits::NodeKind;
using saes::circuits::NodeRow;

constexpr const char* kEvil = "<script>alert('x')</script>";

/// An analysis database of `n` features over `layers` layers analysed from `sae_path`.
std::filesystem::path write_db(const std::filesystem::path& path, const std::string& sae_path,
                               std::int64_t n, std::int64_t layers,
                               const std::string& clt_layer = "") {
  AnalysisRecord r;
  r.meta = {{"sae_name", "test"}, {"sae_path", sae_path}};
  if (!clt_layer.empty()) r.meta["clt_layer"] = clt_layer;
  r.n_analyzed_tokens = 100;
  r.bands = {{"top_activations", 1.0, 3, 0}};
  r.feature_layers = layers;
  for (std::int64_t i = 0; i < n; ++i) {
    FeatureStats f;
    f.histogram.assign(60, 0);
    f.samples.resize(1);
    r.features.push_back(f);
  }
  write_analysis_db(path, r);
  return path;
}

/// small_graph as "cat-sat" (kept: 1_3_2, 0_7_2, three embeddings, two logits; 8 links) and a
/// copy whose prompt and first token are a script tag as "evil". The analysis database analysed
/// "runs/plt/L1/", the layer-1 transcoder of small_graph, with 16 features.
struct Fixture {
  saes::testing::TempDir dir;
  AnalysisStore store;
  std::unique_ptr<GraphStore> graphs;
  Fixture() : store(write_db(dir / "a.sqlite", "runs/plt/L1/", 16, 1)) {
    {
      GraphStore w(GraphStore::path_beside(dir / "a.sqlite"), GraphStoreMode::kWrite);
      auto g = saes::testing::small_graph();
      w.add_graph(g, saes::circuits::prune(g), saes::circuits::graph_scores(g), "cat-sat");
      g.prompt = kEvil;
      g.token_strings[1] = kEvil;
      g.model_name = kEvil;
      w.add_graph(g, saes::circuits::prune(g), saes::circuits::graph_scores(g), "evil");
    }
    graphs = std::make_unique<GraphStore>(dir / "graphs.sqlite");
  }
  PageResponse get(std::string_view path, const QueryParams& params = {}) const {
    return handle_viewer_request(store, graphs.get(), path, params);
  }
};

std::size_t count(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto p = text.find(what); p != std::string::npos; p = text.find(what, p + 1)) ++n;
  return n;
}

NodeRow feature_node(std::int64_t layer, std::int64_t index, const std::string& dictionary) {
  NodeRow n;
  n.kind = NodeKind::kFeature;
  n.layer = layer;
  n.feature_index = index;
  n.dictionary = dictionary;
  return n;
}

}  // namespace

TEST_CASE("the graph list links every stored graph with its scores", "[analysis][viewer]") {
  const Fixture fx;
  const auto r = fx.get("/graphs");
  REQUIRE(r.status == 200);
  CHECK(r.body.find("<a href=\"/graphs/cat-sat\">cat-sat</a>") != std::string::npos);
  CHECK(r.body.find("<a href=\"/graphs/evil\">evil</a>") != std::string::npos);
  CHECK(r.body.find("&lt;s&gt; cat sat") != std::string::npos);
  CHECK(r.body.find("<td>7 / 15</td><td>8</td>") != std::string::npos);
  const auto scores = saes::circuits::graph_scores(saes::testing::small_graph());
  CHECK(r.body.find(fmt::format("<td>{:.3f}</td><td>{:.3f}</td>", scores.replacement,
                                scores.completeness)) != std::string::npos);
  CHECK(r.body.find("<a href=\"/graphs\">Graphs</a>") != std::string::npos);  // the navigation
  const auto api = nlohmann::json::parse(fx.get("/api/graphs").body);
  CHECK(api["available"] == true);
  REQUIRE(api["graphs"].size() == 2);
  CHECK(api["graphs"][0]["id"] == "cat-sat");
  CHECK(api["graphs"][0]["n_links"] == 8);
}

TEST_CASE("without a graph store /graphs says so and graph pages are 404s", "[analysis][viewer]") {
  const Fixture fx;
  const auto get = [&](std::string_view path) {
    return handle_viewer_request(fx.store, nullptr, path, {});
  };
  const auto r = get("/graphs");
  CHECK(r.status == 200);
  CHECK(r.body.find("No graph store") != std::string::npos);
  CHECK(get("/graphs/cat-sat").status == 404);
  CHECK(get("/api/graphs/cat-sat").status == 404);
  CHECK(nlohmann::json::parse(get("/api/graphs").body)["available"] == false);
  CHECK(get("/features/0").status == 200);  // the feature pages still work
  CHECK_FALSE(handle_graph_request(fx.store, nullptr, "/features/0", {}).has_value());
}

TEST_CASE("the graph page draws one shape per kept node and one line per link",
          "[analysis][viewer]") {
  const Fixture fx;
  const auto r = fx.get("/graphs/cat-sat");
  REQUIRE(r.status == 200);
  const std::string& b = r.body;
  CHECK(count(b, "<svg id=\"graph-svg\" class=\"graph\"") == 1);
  CHECK(count(b, "class=\"node ") == 7);
  CHECK(count(b, "<circle class=\"node feature") == 2);
  CHECK(count(b, "<rect class=\"node embedding") == 3);
  CHECK(count(b, "<rect class=\"node logit") == 2);
  CHECK(count(b, "<line class=\"e ") == 8);
  // E_42_1 → 0_7_2 (−0.5), E_17_2 → 1_3_2 (−0.2), 1_3_2 → logit 200 (−1)
  CHECK(count(b, "<line class=\"e neg") == 3);
  CHECK(count(b, "stroke-width=\"4.00\"") == 1);  // the strongest link, 1_3_2 → logit 100 (2)
  // every node links to its panel and carries a tooltip
  CHECK(b.find("<a href=\"/graphs/cat-sat?node=1_3_2\" data-node=\"1_3_2\"><circle") !=
        std::string::npos);
  CHECK(b.find("<title>1_3_2 · feature · layer 1 · position 2 · index 3 · activation 0.5") !=
        std::string::npos);
  CHECK(b.find("<title>3_100_2 · logit · position 2 · &quot; on&quot; · p = 0.6</title>") !=
        std::string::npos);
  // the prompt tokens label the columns; the layer rows are labelled E, L0, L1, logits
  CHECK(b.find("> cat<title>position 1:  cat</title>") != std::string::npos);
  for (const char* row : {">E</text>", ">L0</text>", ">L1</text>", ">logits</text>"}) {
    CAPTURE(row);
    CHECK(count(b, row) == 1);
  }
  CHECK(b.find("<script src=\"/graph.js\"></script>") != std::string::npos);
  CHECK(b.find("Click a node") != std::string::npos);
  CHECK(b.find("style=") == std::string::npos);  // the CSP allows no inline style
  const auto js = fx.get("/graph.js");
  CHECK(js.status == 200);
  CHECK(js.content_type.rfind("text/javascript", 0) == 0);
  CHECK(js.body.find("DOMParser") != std::string::npos);
  CHECK(b.find("<link rel=\"stylesheet\" href=\"/graph.css\">") != std::string::npos);
  const auto css = fx.get("/graph.css");
  CHECK(css.status == 200);
  CHECK(css.content_type.rfind("text/css", 0) == 0);
  CHECK(css.body.find("svg.graph .e.pos") != std::string::npos);
}

TEST_CASE("a selected node's panel lists its strongest links and its feature page",
          "[analysis][viewer]") {
  const Fixture fx;
  const auto r = fx.get("/graphs/cat-sat", {{"node", "1_3_2"}});
  REQUIRE(r.status == 200);
  const std::string& b = r.body;
  CHECK(b.find("class=\"graph has-sel\"") != std::string::npos);
  CHECK(count(b, "class=\"node feature sel\"") == 1);
  CHECK(count(b, " hl\"") == 4);  // its two inputs and two outputs
  const auto panel = b.substr(b.find("<aside id=\"panel\""));
  CHECK(panel.find("<code>1_3_2</code>") != std::string::npos);
  CHECK(panel.find("<dt>activation</dt><dd>0.5</dd>") != std::string::npos);
  CHECK(panel.find("<a class=\"feature-link\" href=\"/features/3\">") != std::string::npos);
  const auto inputs = panel.find("Strongest inputs"), outputs = panel.find("Strongest outputs");
  REQUIRE(inputs < outputs);
  const auto first_in = panel.find("data-node=\"0_7_2\"", inputs);
  CHECK(first_in < panel.find("data-node=\"E_17_2\"", inputs));
  CHECK(first_in < outputs);
  CHECK(panel.find("+1.5", inputs) < outputs);
  CHECK(panel.find("data-node=\"3_100_2\"", outputs) != std::string::npos);
  CHECK(panel.find("<td class=\"neg\">-1</td>", outputs) != std::string::npos);

  // layer 0's transcoder is not the served dictionary: no link, and the panel says why
  const auto other = fx.get("/graphs/cat-sat", {{"node", "0_7_2"}});
  REQUIRE(other.status == 200);
  CHECK(other.body.find("class=\"feature-link\"") == std::string::npos);
  CHECK(other.body.find("No feature page: the node&#39;s dictionary runs/plt/L0 is not the served "
                        "runs/plt/L1/") != std::string::npos);

  const auto j = nlohmann::json::parse(fx.get("/api/graphs/cat-sat/nodes/1_3_2").body);
  CHECK(j["node"]["feature_id"] == 3);
  REQUIRE(j["incoming"].size() == 2);
  CHECK(j["incoming"][0]["source"] == "0_7_2");
  REQUIRE(j["outgoing"].size() == 2);
  CHECK(j["outgoing"][0]["target"] == "3_100_2");
  const auto g = nlohmann::json::parse(fx.get("/api/graphs/cat-sat").body);
  CHECK(g["nodes"].size() == 7);
  CHECK(g["links"].size() == 8);
  CHECK(g["prompt_tokens"][1] == " cat");
  CHECK(g["settings"]["pruning_settings"]["node_threshold"] == 0.8);
}

TEST_CASE("unknown graphs and nodes are 404 pages", "[analysis][viewer]") {
  const Fixture fx;
  for (const char* path :
       {"/graphs/nope", "/graphs/", "/graphs/cat-sat/", "/graphs/cat-sat/x", "/graphs/../eval",
        "/graphs/.hidden", "/graphs/cat sat", "/api/graphs/nope", "/api/graphs/cat-sat/nodes/",
        "/api/graphs/cat-sat/nodes/9_9_9", "/api/graphs/cat-sat/nodes/0_5_1",
        "/graphs/%3Cscript%3E", "/graphsx"}) {
    CAPTURE(path);
    CHECK(fx.get(path).status == 404);
  }
  CHECK(fx.get("/graphs/cat-sat", {{"node", "0_5_1"}}).status == 404);  // pruned away
  const auto bad = fx.get("/graphs/cat-sat", {{"node", kEvil}});
  CHECK(bad.status == 404);
  CHECK(bad.body.find("<script>") == std::string::npos);
  const auto evil_id = fx.get(std::string("/graphs/") + kEvil);
  CHECK(evil_id.status == 404);
  CHECK(evil_id.body.find("<script>") == std::string::npos);
  CHECK(evil_id.body.find("&lt;script&gt;") != std::string::npos);
}

TEST_CASE("graph pages escape prompts, tokens and model names", "[analysis][viewer]") {
  const Fixture fx;
  for (const char* path : {"/graphs", "/graphs/evil"}) {
    CAPTURE(path);
    const auto r = fx.get(path);
    REQUIRE(r.status == 200);
    CHECK(r.body.find(kEvil) == std::string::npos);
    CHECK(r.body.find("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;") != std::string::npos);
  }
  const auto panel = fx.get("/graphs/evil", {{"node", "E_42_1"}});
  REQUIRE(panel.status == 200);
  CHECK(panel.body.find(kEvil) == std::string::npos);
}

TEST_CASE("feature_link maps a node of the served dictionary to its feature id",
          "[analysis][viewer]") {
  const saes::testing::TempDir dir;
  SECTION("a per-layer transcoder: the index") {
    const AnalysisStore s(write_db(dir / "t.sqlite", "runs/./plt/L1", 16, 1));
    CHECK(feature_link(s, feature_node(1, 3, "runs/plt/L1")).feature_id == 3);
    CHECK(feature_link(s, feature_node(1, 3, "runs/plt/L1/sae_weights.safetensors")).feature_id ==
          3);
    CHECK_FALSE(feature_link(s, feature_node(1, 16, "runs/plt/L1")).feature_id);
    CHECK_FALSE(feature_link(s, feature_node(1, 3, "runs/plt/L10")).feature_id);
    CHECK_FALSE(feature_link(s, feature_node(1, 3, "")).feature_id);
  }
  SECTION("a CLT: layer-major ids") {
    const AnalysisStore s(write_db(dir / "c.sqlite", "ctclt", 30, 3));
    CHECK(feature_link(s, feature_node(0, 4, "ctclt")).feature_id == 4);
    CHECK(feature_link(s, feature_node(2, 4, "ctclt/")).feature_id == 24);
    const auto out = feature_link(s, feature_node(3, 0, "ctclt"));
    CHECK_FALSE(out.feature_id);
    CHECK(out.reason.find("outside") != std::string::npos);
    CHECK_FALSE(feature_link(s, feature_node(1, 10, "ctclt")).feature_id);
  }
  SECTION("one layer of a CLT (analyzer.clt_layer): that layer's features only") {
    const AnalysisStore s(write_db(dir / "l.sqlite", "ctclt", 10, 1, "2"));
    CHECK(feature_link(s, feature_node(2, 7, "ctclt")).feature_id == 7);
    CHECK(feature_link(s, feature_node(1, 7, "ctclt")).reason.find("layer 2") != std::string::npos);
  }
  SECTION("the same folder on disk under another name") {
    std::filesystem::create_directories(dir / "runs" / "clt");
    std::filesystem::create_directory_symlink(dir / "runs" / "clt", dir / "link");
    const AnalysisStore s(write_db(dir / "d.sqlite", (dir / "runs" / "clt").string(), 10, 1));
    CHECK(feature_link(s, feature_node(0, 1, (dir / "link").string())).feature_id == 1);
    CHECK(feature_link(s, feature_node(0, 1, (dir / "runs").string() + "/./clt/")).feature_id == 1);
    CHECK_FALSE(feature_link(s, feature_node(0, 1, (dir / "runs").string())).feature_id);
  }
  SECTION("not a feature") {
    const AnalysisStore s(write_db(dir / "e.sqlite", "x", 4, 1));
    NodeRow err;
    err.kind = NodeKind::kError;
    err.layer = 0;
    CHECK_FALSE(feature_link(s, err).feature_id);
  }
}
