// Graph JSON: the fields and types the Neuronpedia schema requires, circuit-tracer's node ids and
// Cantor values, the front-end's traps (a numeric layer ≥ 1, "(p=" in logit clerps), links only
// between emitted nodes, the overwrite refusal, and the round trip through the reader.
#include "saes/circuits/graph_json.h"

#include <filesystem>
#include <set>
#include <string>

#include <ATen/ATen.h>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "saes/core/error.h"
#include "saes/io/atomic_file.h"

#include "support/circuit_graphs.h"
#include "support/temp_dir.h"

namespace {

using namespace saes::circuits;
using Catch::Matchers::Contains;
using json = nlohmann::json;

const JsonNode& find_node(const GraphJson& g, const std::string& id) {
  for (const JsonNode& n : g.nodes)
    if (n.node_id == id) return n;
  FAIL("no node " << id);
  return g.nodes.front();
}

bool has_node(const GraphJson& g, const std::string& id) {
  for (const JsonNode& n : g.nodes)
    if (n.node_id == id) return true;
  return false;
}

// The example of docs/circuits.md (circuit-tracer's format, a 2-layer model).
constexpr const char* kCircuitTracerExample = R"json({
  "metadata": {"slug": "tiny-example", "scan": "my-2layer-model", "transcoder_list": [],
    "prompt_tokens": ["<bos>", " cat"], "prompt": "<bos> cat", "node_threshold": 0.8, "schema_version": 1,
    "generation_settings": {"max_n_logits": 10, "desired_logit_prob": 0.95, "batch_size": 256, "max_feature_nodes": 7500},
    "pruning_settings": {"node_threshold": 0.8, "edge_threshold": 0.98}},
  "qParams": {"pinnedIds": [], "supernodes": [], "linkType": "both", "clickedId": "", "sg_pos": ""},
  "nodes": [
    {"node_id": "E_2_0", "feature": 0, "layer": "E", "ctx_idx": 0, "feature_type": "embedding", "token_prob": 0.0,
     "is_target_logit": false, "run_idx": 0, "reverse_ctx_idx": 0, "jsNodeId": "E_2-0", "clerp": "", "influence": 0.55, "activation": null},
    {"node_id": "1_45_1", "feature": 1126, "layer": 1, "ctx_idx": 1, "feature_type": "cross layer transcoder", "token_prob": 0.0,
     "is_target_logit": false, "run_idx": 0, "reverse_ctx_idx": 0, "jsNodeId": "1_45-0", "clerp": "", "influence": 0.12, "activation": 3.5},
    {"node_id": "3_9999_1", "feature": 9999, "layer": "3", "ctx_idx": 1, "feature_type": "logit", "token_prob": 0.62,
     "is_target_logit": true, "run_idx": 0, "reverse_ctx_idx": 0, "jsNodeId": "L_9999-1", "clerp": "Output \" dog\" (p=0.620)", "influence": null, "activation": null}
  ],
  "links": [{"source": "E_2_0", "target": "1_45_1", "weight": -0.3}, {"source": "1_45_1", "target": "3_9999_1", "weight": 3.1}]
})json";

}  // namespace

TEST_CASE("graph JSON has every field the schema requires, with the right types", "[circuits]") {
  const Graph g = saes::testing::small_graph();
  const json doc = json::parse(graph_json_text(make_graph_json(g, prune(g), "tiny-graph")));
  for (const char* key : {"metadata", "qParams", "nodes", "links"}) CHECK(doc.contains(key));
  const json& m = doc["metadata"];
  CHECK(m["slug"] == "tiny-graph");
  CHECK(m["scan"] == "tiny-2l");
  CHECK(m["prompt"] == "<s> cat sat");
  CHECK(m["prompt_tokens"] == json({"<s>", " cat", " sat"}));
  CHECK(m["schema_version"] == 1);
  CHECK(m["node_threshold"] == 0.8);
  CHECK(m["pruning_settings"]["edge_threshold"] == 0.98);
  CHECK(m["generation_settings"]["max_n_logits"].is_number_integer());
  CHECK(m["generation_settings"]["batch_size"] == 4);
  CHECK(m["info"]["generator"]["name"] == "saes");
  CHECK(m["info"]["generator"]["version"].is_string());
  CHECK(doc["qParams"]["pinnedIds"].is_array());
  CHECK(doc["qParams"]["linkType"] == "both");
  REQUIRE(doc["nodes"].size() == 7);
  for (const json& n : doc["nodes"]) {
    INFO(n.dump());
    CHECK(n["node_id"].is_string());
    CHECK(n["feature"].is_number_integer());
    CHECK(n["layer"].is_string());
    CHECK(n["ctx_idx"].is_number_integer());
    CHECK(n["feature_type"].is_string());
    CHECK(n["jsNodeId"].is_string());
    CHECK(n["clerp"].is_string());
    CHECK((n["influence"].is_number() || n["influence"].is_null()));
    CHECK((n["activation"].is_number() || n["activation"].is_null()));
    CHECK(n["token_prob"].is_number());
    CHECK(n["is_target_logit"].is_boolean());
    CHECK(n["run_idx"] == 0);
    CHECK(n["reverse_ctx_idx"] == 0);
  }
  for (const json& l : doc["links"]) {
    CHECK(l["source"].is_string());
    CHECK(l["target"].is_string());
    CHECK(l["weight"].is_number());
  }
}

TEST_CASE("graph JSON node ids, Cantor features and jsNodeIds follow circuit-tracer",
          "[circuits]") {
  const Graph g = saes::testing::small_graph();
  const GraphJson out = make_graph_json(g, prune(g, 1.0, 1.0), "ids");
  const JsonNode& f = find_node(out, "1_3_2");  // layer 1, index 3, position 2
  CHECK(f.feature == 13);                       // (1 + 3)(1 + 3 + 1)/2 + 3
  CHECK(f.layer == "1");
  CHECK(f.ctx_idx == 2);
  CHECK(f.js_node_id == "1_3-0");
  CHECK(f.feature_type == "cross layer transcoder");
  CHECK(f.activation == 0.5);
  CHECK(f.influence.value() == Approx(0.272887323).epsilon(1e-6));
  CHECK(find_node(out, "0_7_2").feature == cantor_pair(0, 7));
  CHECK(cantor_pair(0, 6200) == 19229300);  // the Neuronpedia fixture's node 0_6200_1
  CHECK(cantor_pair(1, 45) == 1126);
  const JsonNode& e = find_node(out, "0_-1_2");
  CHECK(e.feature == -1);
  CHECK(e.js_node_id == "0_-1-2");
  CHECK(e.feature_type == "mlp reconstruction error");
  CHECK_FALSE(e.activation.has_value());
  const JsonNode& emb = find_node(out, "E_42_1");  // token id 42 at position 1
  CHECK(emb.feature == 1);                         // the position
  CHECK(emb.layer == "E");
  CHECK(emb.js_node_id == "E_42-1");
  const JsonNode& top = find_node(out, "3_100_2");  // n_layers + 1 = 3
  CHECK(top.layer == "3");
  CHECK(top.feature == 100);
  CHECK(top.js_node_id == "L_100-2");
  CHECK(top.clerp == "Output \" on\" (p=0.600)");
  CHECK(top.token_prob == Approx(0.6));
  CHECK(top.is_target_logit);
  CHECK_FALSE(top.influence.has_value());
  CHECK_FALSE(find_node(out, "3_200_2").is_target_logit);
  CHECK(find_node(out, "3_200_2").clerp == "Output \" down\" (p=0.300)");
}

TEST_CASE("graph JSON links join emitted nodes with the raw signed weights", "[circuits]") {
  const Graph g = saes::testing::small_graph();
  PruneResult r = prune(g);
  r.node_mask[0] = true;  // kept, but no kept edge touches it: not emitted
  const GraphJson out = make_graph_json(g, r, "links");
  CHECK(out.links.size() == 8);
  CHECK_FALSE(has_node(out, "0_5_1"));
  CHECK(has_node(out, "E_1_0"));  // embeddings are emitted without links
  std::set<std::string> ids, touched;
  for (const JsonNode& n : out.nodes) ids.insert(n.node_id);
  CHECK(ids.size() == out.nodes.size());
  for (const JsonLink& l : out.links) {
    CHECK(ids.count(l.source) == 1);
    CHECK(ids.count(l.target) == 1);
    touched.insert(l.source);
    touched.insert(l.target);
    if (l.source == "E_17_2" && l.target == "1_3_2") CHECK(l.weight == Approx(-0.2));
    if (l.source == "1_3_2" && l.target == "3_200_2") CHECK(l.weight == Approx(-1.0));
  }
  for (const JsonNode& n : out.nodes)
    if (n.feature_type != "embedding" && n.feature_type != "logit") CHECK(touched.count(n.node_id));
}

TEST_CASE("graph JSON meets the Neuronpedia front-end's constraints", "[circuits]") {
  const Graph g = saes::testing::small_graph();
  SECTION("a numeric layer >= 1 and parsable logit clerps") {
    const GraphJson out = make_graph_json(g, prune(g), "fe");
    int max_layer = -1;
    for (const JsonNode& n : out.nodes) {
      if (n.feature_type == "logit") {
        // utils.ts: +clerp.split('(p=')[1].split(')')[0]
        const auto at = n.clerp.find("(p=");
        REQUIRE(at != std::string::npos);
        const std::string p = n.clerp.substr(at + 3, n.clerp.find(')', at) - at - 3);
        CHECK(std::stod(p) == Approx(n.token_prob).margin(5e-4));
      } else if (n.layer != "E") {
        max_layer = std::max(max_layer, std::stoi(n.layer));
      }
    }
    CHECK(max_layer >= 1);
  }
  SECTION("when pruning leaves only layer 0, the strongest upper node is added without links") {
    PruneResult r = prune(g);
    r.node_mask[3] = false;
    const GraphJson out = make_graph_json(g, r, "pad");
    REQUIRE(has_node(out, "1_3_2"));
    for (const JsonLink& l : out.links) CHECK((l.source != "1_3_2" && l.target != "1_3_2"));
  }
  SECTION("a token holding \"(p=\" cannot confuse the clerp parser") {
    Graph odd = g;
    odd.nodes[13].token_string = "x(p=2)";
    const GraphJson out = make_graph_json(odd, prune(odd), "odd");
    CHECK(find_node(out, "3_100_2").clerp == "Output \"x(p =2)\" (p=0.600)");
  }
  SECTION("a 1-layer graph cannot be shown and is refused") {
    const Graph one = saes::testing::one_layer_graph();
    REQUIRE_THROWS_AS(make_graph_json(one, prune(one), "one"), saes::UnsupportedError);
  }
}

TEST_CASE("graph JSON round-trips through the reader and refuses to overwrite", "[circuits]") {
  saes::testing::TempDir dir;
  const Graph g = saes::testing::small_graph();
  const GraphJson out = make_graph_json(g, prune(g, 1.0, 1.0), "round-trip");
  const auto path = dir / "graph.json";
  write_graph_json(path, out, false);
  const GraphJson back = read_graph_json(path);
  CHECK(back.metadata.slug == "round-trip");
  CHECK(back.metadata.prompt_tokens == out.metadata.prompt_tokens);
  CHECK(back.metadata.edge_threshold == 1.0);
  CHECK(back.metadata.batch_size == 4);
  CHECK(back.metadata.generator_name == "saes");
  CHECK(back.metadata.create_time_ms == out.metadata.create_time_ms);
  REQUIRE(back.nodes.size() == out.nodes.size());
  for (std::size_t i = 0; i < out.nodes.size(); ++i) {
    const JsonNode& a = out.nodes[i];
    const JsonNode& b = back.nodes[i];
    CHECK(b.node_id == a.node_id);
    CHECK(b.feature == a.feature);
    CHECK(b.layer == a.layer);
    CHECK(b.ctx_idx == a.ctx_idx);
    CHECK(b.feature_type == a.feature_type);
    CHECK(b.js_node_id == a.js_node_id);
    CHECK(b.clerp == a.clerp);
    CHECK(b.influence == a.influence);
    CHECK(b.activation == a.activation);
    CHECK(b.token_prob == a.token_prob);
    CHECK(b.is_target_logit == a.is_target_logit);
  }
  REQUIRE(back.links.size() == out.links.size());
  for (std::size_t i = 0; i < out.links.size(); ++i) {
    CHECK(back.links[i].source == out.links[i].source);
    CHECK(back.links[i].target == out.links[i].target);
    CHECK(back.links[i].weight == out.links[i].weight);  // exact: shortest round-trip doubles
  }

  REQUIRE_THROWS_AS(write_graph_json(path, out, false), saes::ConfigError);
  REQUIRE_THROWS_WITH(write_graph_json(path, out, false), Contains(path.string()));
  GraphJson other = out;
  other.metadata.slug = "replaced";
  write_graph_json(path, other, true);
  CHECK(read_graph_json(path).metadata.slug == "replaced");
  for (const auto& entry : std::filesystem::directory_iterator(dir.path()))
    CHECK(entry.path().filename() == "graph.json");  // no temp file left
}

TEST_CASE("graph JSON reader takes circuit-tracer's files and names bad keys", "[circuits]") {
  const GraphJson ct = parse_graph_json(kCircuitTracerExample, "example.json");
  CHECK(ct.metadata.scan == "my-2layer-model");
  CHECK(ct.metadata.max_feature_nodes == 7500);
  CHECK(ct.metadata.generator_name.empty());
  REQUIRE(ct.nodes.size() == 3);
  CHECK(ct.nodes[1].layer == "1");  // an integer layer reads as its decimal text
  CHECK(ct.nodes[1].feature == cantor_pair(1, 45));
  CHECK(ct.nodes[2].is_target_logit);
  CHECK(ct.links[0].weight == -0.3);

  json doc = json::parse(kCircuitTracerExample);
  doc.erase("qParams");
  REQUIRE_THROWS_WITH(parse_graph_json(doc.dump(), "x.json"),
                      Contains("x.json") && Contains("qParams"));
  doc = json::parse(kCircuitTracerExample);
  doc["nodes"][1].erase("jsNodeId");
  REQUIRE_THROWS_WITH(parse_graph_json(doc.dump(), "x.json"), Contains("nodes[1].jsNodeId"));
  doc = json::parse(kCircuitTracerExample);
  doc["links"][0]["weight"] = "heavy";
  REQUIRE_THROWS_AS(parse_graph_json(doc.dump(), "x.json"), saes::DataError);
  REQUIRE_THROWS_AS(parse_graph_json("{not json", "x.json"), saes::DataError);
  REQUIRE_THROWS_AS(read_graph_json("/nonexistent/graph.json"), saes::IoError);
}

TEST_CASE("graph JSON refuses unsafe slugs", "[circuits]") {
  const Graph g = saes::testing::small_graph();
  const PruneResult r = prune(g);
  for (const char* slug : {"", "a/b", "two words", ".hidden"})
    REQUIRE_THROWS_WITH(make_graph_json(g, r, slug), Contains("slug"));
}
