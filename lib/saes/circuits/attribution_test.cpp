// Attribution on the real stories260K: the frozen forward replays the model, the replacement
// model (transcoders per layer, or a CLT, plus error nodes) gives the model's logits, and every
// target row is complete — its incoming edges plus the constants (biases, position 0) sum to the
// target's value — with edges only from upstream nodes.
#include "saes/circuits/attribution.h"
#include "saes/circuits/graph_json.h"
#include "saes/circuits/graph_store.h"
#include "saes/circuits/pruning.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "saes/core/error.h"
#include "saes/dictionaries/registry.h"
#include "saes/dictionaries/sparse_dictionary.h"
#include "saes/lm/hooks.h"
#include "saes/lm/llama2c_loader.h"
#include "saes/lm/llama2c_tokenizer.h"
#include "saes/lm/transformer.h"

#include "support/temp_dir.h"

namespace {

namespace sd = saes::dictionaries;
namespace sc = saes::circuits;

std::filesystem::path model_path() {
  return saes::testing::test_assets_dir() / "llama2c-stories260K" / "stories260K.bin";
}

/// "Once upon a time there was a little" in tok512 ids after BOS (the prompt the CLI traces).
std::vector<std::int64_t> prompt() {
  const saes::lm::Llama2cTokenizer tok(saes::testing::test_assets_dir() / "llama2c-stories260K" /
                                       "tok512.bin");
  std::vector<std::int64_t> ids = {1};
  for (const std::int64_t id : tok.encode("Once upon a time there was a little")) ids.push_back(id);
  return ids;
}

/// A random dictionary with the given hooks, folded (raw activations in and out).
std::unique_ptr<sd::SparseDictionary> random_dictionary(sd::SparseDictionaryConfig cfg,
                                                        std::uint64_t seed) {
  cfg.d_model = 64;
  cfg.act_fn = sd::ActFn::kTopK;
  cfg.top_k = 6;
  cfg.norm_activation = sd::NormActivation::kInference;
  auto dict = sd::make_dictionary(cfg);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  dict->init_parameters({0.3, 0.3, {}}, gen);
  for (auto& p : dict->parameters()) {  // nonzero biases: the constants must carry them
    if (p.name.rfind("b_", 0) == 0) p.value.normal_(0.0, 0.1, gen);
  }
  return dict;
}

void check_graph(const sc::ReplacementModel& rm, const sc::Graph& g) {
  const at::Tensor values = rm.target_values(g);
  const at::Tensor constants = rm.target_constants(g);
  const at::Tensor A = g.adjacency.to(at::kDouble);
  std::int64_t rows = 0;
  double worst = 0.0;
  for (std::int64_t t = 0; t < g.n_nodes(); ++t) {
    const sc::Node& n = g.nodes[static_cast<std::size_t>(t)];
    if (n.kind != sc::NodeKind::kLogit && n.kind != sc::NodeKind::kFeature) continue;
    ++rows;
    const double sum = A[t].sum().item<double>() + constants[t].item<double>();
    // float32 products summed over ~n_nodes·d_model terms: relative to the terms' magnitude
    const double scale = A[t].abs().sum().item<double>() + std::abs(constants[t].item<double>());
    const double rel = std::abs(sum - values[t].item<double>()) / std::max(scale, 1e-6);
    worst = std::max(worst, rel);
    // direct effects only from upstream: no feature or error of the target's sub-layer
    // (attention of layer l before its MLP) or later, nor of a later position
    const auto order = [](const sc::Node& x) { return 2 * x.layer + (x.attention ? 0 : 1); };
    for (std::int64_t s = 0; s < g.n_nodes(); ++s) {
      const sc::Node& src = g.nodes[static_cast<std::size_t>(s)];
      const bool downstream =
          (src.kind == sc::NodeKind::kFeature || src.kind == sc::NodeKind::kError) &&
          ((n.kind == sc::NodeKind::kFeature && order(src) >= order(n)) ||
           src.position > n.position);
      if (downstream && A[t][s].item<double>() != 0.0) {
        FAIL("edge " << s << " -> " << t << " from downstream");
      }
    }
  }
  INFO("worst relative completeness error " << worst << " over " << rows << " rows");
  CHECK(rows > g.count(sc::NodeKind::kLogit));
  CHECK(worst < 1e-4);
}

}  // namespace

TEST_CASE("the frozen forward replays stories260K and stays linear in its inputs", "[circuits]") {
  SAES_REQUIRE_ASSETS();
  const auto model = saes::lm::load_llama2c(model_path());
  const at::Tensor tokens = at::tensor(prompt(), at::kLong).view({1, -1});
  saes::lm::HookSet hooks;
  hooks.capture("logits");
  const at::Tensor plain = model.forward(tokens, nullptr, hooks).at("logits");
  saes::lm::FrozenState frozen;
  const at::Tensor recorded =
      model.forward(tokens, nullptr, hooks, saes::lm::GradMode::kNoGrad, &frozen).at("logits");
  CHECK(frozen.values.count("blocks.0.attn.pattern") == 1);
  CHECK(frozen.values.count("ln_final.scale") == 1);
  frozen.record = false;
  const at::Tensor replayed =
      model.forward(tokens.expand({3, -1}), nullptr, hooks, saes::lm::GradMode::kNoGrad, &frozen)
          .at("logits");
  const double scale = plain.abs().max().item<double>();
  CHECK((recorded - plain).abs().max().item<double>() <= 1e-5 * scale);
  CHECK((replayed[2] - plain[0]).abs().max().item<double>() <= 1e-5 * scale);
  // another sequence length cannot use this state
  CHECK_THROWS_AS(
      model.forward(tokens.narrow(1, 0, 4), nullptr, hooks, saes::lm::GradMode::kNoGrad, &frozen),
      saes::DataError);
}

TEST_CASE("attribution with per-layer transcoders: logits equal, rows complete", "[circuits]") {
  SAES_REQUIRE_ASSETS();
  const auto model = saes::lm::load_llama2c(model_path());
  const std::vector<std::int64_t> kPrompt = prompt();
  std::vector<std::unique_ptr<sd::SparseDictionary>> owned;
  std::vector<sc::ReplacementDictionary> dicts;
  for (std::int64_t l = 0; l < model.spec().n_layers; ++l) {
    if (l == 2) continue;  // a layer without a transcoder: its MLP output is all error
    sd::SparseDictionaryConfig cfg;
    cfg.expansion_factor = 2;
    cfg.hook_point_in = "blocks." + std::to_string(l) + ".ln2.hook_normalized";
    cfg.hook_point_out = "blocks." + std::to_string(l) + ".hook_mlp_out";
    owned.push_back(random_dictionary(cfg, 10 + l));
    dicts.push_back({owned.back().get(), "tc" + std::to_string(l)});
  }
  const sc::ReplacementModel rm(model, kPrompt, dicts);
  const double scale = rm.logits().abs().max().item<double>();
  CHECK((rm.replacement_logits() - rm.logits()).abs().max().item<double>() <= 1e-5 * scale);

  sc::AttributionOptions opts;
  opts.batch_size = 7;  // several backward passes, one partial
  const sc::Graph g = rm.attribute(opts);
  CHECK(g.count(sc::NodeKind::kFeature) == 4 * 6 * static_cast<std::int64_t>(kPrompt.size() - 1));
  CHECK(g.count(sc::NodeKind::kError) == model.spec().n_layers * g.n_positions());
  CHECK(g.count(sc::NodeKind::kEmbedding) == g.n_positions());
  const auto n_logits = g.count(sc::NodeKind::kLogit);
  CHECK((n_logits >= 1 && n_logits <= 10));
  double mass = 0;
  for (const auto& n : g.nodes) mass += n.kind == sc::NodeKind::kLogit ? n.probability : 0.0;
  CHECK((mass >= 0.95 || n_logits == 10));
  check_graph(rm, g);

  SECTION("a feature budget computes the rows of the most influential features only") {
    opts.max_feature_nodes = 20;
    const sc::Graph small = rm.attribute(opts);
    std::int64_t with_rows = 0;
    for (std::int64_t t = 0; t < small.count(sc::NodeKind::kFeature); ++t) {
      with_rows += small.adjacency[t].abs().sum().item<double>() > 0 ? 1 : 0;
    }
    CHECK(with_rows <= 20);
    CHECK(with_rows >= 15);  // a few selected features may have no upstream edges at all
    CHECK(at::allclose(small.adjacency.narrow(0, small.n_nodes() - n_logits, n_logits),
                       g.adjacency.narrow(0, g.n_nodes() - n_logits, n_logits)));
    // re-ranking every 2 batches: the same budget, and the first batch picks as before (both
    // rank once through the logit rows)
    opts.update_interval = 2;
    const sc::Graph sparse = rm.attribute(opts);
    std::int64_t sparse_rows = 0;
    for (std::int64_t t = 0; t < sparse.count(sc::NodeKind::kFeature); ++t) {
      const bool has = sparse.adjacency[t].abs().sum().item<double>() > 0;
      sparse_rows += has ? 1 : 0;
    }
    CHECK(sparse_rows <= 20);
    CHECK(sparse_rows >= 15);
    CHECK(sparse.backward_passes == small.backward_passes);
    opts.update_interval = 0;
    CHECK_THROWS_WITH(rm.attribute(opts), Catch::Contains("update_interval: expected >= 1"));
    opts.update_interval = 1;
  }

  SECTION("a chosen feature as the target: its row first, pruning weighs it alone") {
    std::int64_t chosen = -1;  // the first layer-4 feature at the last position
    for (std::int64_t i = 0; i < g.count(sc::NodeKind::kFeature) && chosen < 0; ++i) {
      const sc::Node& n = g.nodes[static_cast<std::size_t>(i)];
      if (n.layer == 4 && n.position == g.n_positions() - 1) chosen = i;
    }
    REQUIRE(chosen >= 0);
    const sc::Node& c = g.nodes[static_cast<std::size_t>(chosen)];
    opts.max_feature_nodes = 10;
    opts.target_features = {{"", c.layer, -1, c.index}};
    const sc::Graph t = rm.attribute(opts);
    CHECK(t.nodes[static_cast<std::size_t>(chosen)].target);
    const at::Tensor w = t.target_weights();
    CHECK(w[chosen].item<double>() == 1.0);
    CHECK(w.sum().item<double>() == 1.0);
    CHECK(at::allclose(t.adjacency[chosen], g.adjacency[chosen]));
    const sc::PruneResult pruned = sc::prune(t, 0.8, 0.98);
    CHECK(pruned.node_mask[chosen].item<bool>());
    // the greedy budget ranks by influence on the chosen feature: only upstream features
    for (std::int64_t i = 0; i < t.count(sc::NodeKind::kFeature); ++i) {
      if (i == chosen || t.adjacency[i].abs().sum().item<double>() == 0) continue;
      const sc::Node& n = t.nodes[static_cast<std::size_t>(i)];
      CHECK(n.layer < c.layer);
    }
    opts.target_features = {{"tc1", c.layer, -1, c.index}};  // not in that dictionary
    CHECK_THROWS_WITH(rm.attribute(opts), Catch::Contains("is not active at position"));
    opts.target_features = {{"", c.layer, 99, c.index}};
    CHECK_THROWS_WITH(rm.attribute(opts), Catch::Contains("outside the prompt"));
  }
}

TEST_CASE("attribution with a cross-layer transcoder: logits equal, rows complete", "[circuits]") {
  SAES_REQUIRE_ASSETS();
  const auto model = saes::lm::load_llama2c(model_path());
  const std::vector<std::int64_t> kPrompt = prompt();
  sd::SparseDictionaryConfig cfg;
  cfg.sae_type = sd::SaeType::kClt;
  cfg.expansion_factor = 1;
  for (std::int64_t l = 0; l < model.spec().n_layers; ++l) {
    cfg.hook_points_in.push_back("blocks." + std::to_string(l) + ".hook_resid_mid");
    cfg.hook_points_out.push_back("blocks." + std::to_string(l) + ".hook_mlp_out");
  }
  auto clt = random_dictionary(cfg, 3);
  const sc::ReplacementModel rm(model, kPrompt, {{clt.get(), "clt"}});
  const double scale = rm.logits().abs().max().item<double>();
  CHECK((rm.replacement_logits() - rm.logits()).abs().max().item<double>() <= 1e-5 * scale);
  sc::AttributionOptions opts;
  opts.batch_size = 16;
  check_graph(rm, rm.attribute(opts));
}

TEST_CASE("a replacement refuses dictionaries that do not replace MLP outputs", "[circuits]") {
  SAES_REQUIRE_ASSETS();
  const auto model = saes::lm::load_llama2c(model_path());
  const std::vector<std::int64_t> kPrompt = prompt();
  sd::SparseDictionaryConfig cfg;
  cfg.expansion_factor = 2;
  cfg.hook_point_in = "blocks.1.hook_resid_post";
  cfg.hook_point_out = "blocks.1.hook_resid_post";
  auto sae = random_dictionary(cfg, 1);
  CHECK_THROWS_WITH(sc::ReplacementModel(model, kPrompt, {{sae.get(), "sae"}}),
                    Catch::Contains("a replacement dictionary writes MLP outputs"));
  cfg.hook_point_in = "blocks.0.ln2.hook_normalized";
  cfg.hook_point_out = "blocks.1.hook_mlp_out";
  auto skew = random_dictionary(cfg, 2);
  CHECK_THROWS_WITH(sc::ReplacementModel(model, kPrompt, {{skew.get(), "skew"}}),
                    Catch::Contains("it must read that layer's MLP input"));
  cfg.hook_point_in = "blocks.1.ln2.hook_normalized";
  auto a = random_dictionary(cfg, 3), b = random_dictionary(cfg, 4);
  CHECK_THROWS_WITH(sc::ReplacementModel(model, kPrompt, {{a.get(), "a"}, {b.get(), "b"}}),
                    Catch::Contains("both write blocks.1.hook_mlp_out"));
}

namespace {

/// A random Lorsa replacing layer `layer`'s attention (RoPE on, 4 QK heads of 8 dims).
std::unique_ptr<sd::SparseDictionary> random_lorsa(std::int64_t layer, const std::string& in,
                                                   std::uint64_t seed) {
  sd::SparseDictionaryConfig cfg;
  cfg.sae_type = sd::SaeType::kLorsa;
  cfg.expansion_factor = 1;  // 64 OV heads, 16 per QK head
  cfg.hook_point_in = "blocks." + std::to_string(layer) + "." + in;
  cfg.hook_point_out = "blocks." + std::to_string(layer) + ".hook_attn_out";
  cfg.n_qk_heads = 4;
  cfg.d_qk_head = 8;
  cfg.rotary_dim = 8;
  cfg.rotary_base = 10000.0;
  cfg.n_ctx = 32;
  return random_dictionary(cfg, seed);
}

}  // namespace

TEST_CASE("attribution with Lorsa attention and transcoders: logits equal, rows complete, QK",
          "[circuits]") {
  SAES_REQUIRE_ASSETS();
  const auto model = saes::lm::load_llama2c(model_path());
  const std::vector<std::int64_t> kPrompt = prompt();
  const auto T = static_cast<std::int64_t>(kPrompt.size());
  std::vector<std::unique_ptr<sd::SparseDictionary>> owned;
  std::vector<sc::ReplacementDictionary> dicts;
  for (std::int64_t l = 0; l < model.spec().n_layers; ++l) {
    sd::SparseDictionaryConfig cfg;
    cfg.expansion_factor = 2;
    cfg.hook_point_in = "blocks." + std::to_string(l) + ".ln2.hook_normalized";
    cfg.hook_point_out = "blocks." + std::to_string(l) + ".hook_mlp_out";
    owned.push_back(random_dictionary(cfg, 20 + l));
    dicts.push_back({owned.back().get(), "tc" + std::to_string(l)});
  }
  // attention replaced in layers 3 (listed first) and 1, read from ln1 and from resid_pre
  owned.push_back(random_lorsa(3, "hook_resid_pre", 7));
  dicts.push_back({owned.back().get(), "lorsa3"});
  owned.push_back(random_lorsa(1, "ln1.hook_normalized", 8));
  dicts.push_back({owned.back().get(), "lorsa1"});
  const sc::ReplacementModel rm(model, kPrompt, dicts);
  const double scale = rm.logits().abs().max().item<double>();
  CHECK((rm.replacement_logits() - rm.logits()).abs().max().item<double>() <= 1e-5 * scale);

  sc::AttributionOptions opts;
  opts.batch_size = 24;
  sc::Graph g = rm.attribute(opts);
  CHECK(g.interleaved);
  CHECK(g.count(sc::NodeKind::kError) == (model.spec().n_layers + 2) * T);
  std::int64_t attention_features = 0, attention_errors = 0;
  for (const auto& n : g.nodes) {
    if (!n.attention) continue;
    CHECK((n.layer == 1 || n.layer == 3));
    if (n.kind == sc::NodeKind::kError) ++attention_errors;
    if (n.kind != sc::NodeKind::kFeature) continue;
    ++attention_features;
    // the frozen pattern row: causal, sums to 1
    REQUIRE(n.pattern.size() == static_cast<std::size_t>(T));
    double sum = 0;
    for (std::int64_t k = 0; k < T; ++k) {
      if (k > n.position) CHECK(n.pattern[static_cast<std::size_t>(k)] == 0.0);
      sum += n.pattern[static_cast<std::size_t>(k)];
    }
    CHECK(std::abs(sum - 1.0) < 1e-5);
  }
  CHECK(attention_features == 2 * 6 * (T - 1));  // TopK 6 at every position but BOS
  CHECK(attention_errors == 2 * T);
  // error nodes: MLP errors layer-major first, then the attention errors of layers 1 and 3
  const std::int64_t first_error = g.count(sc::NodeKind::kFeature);
  CHECK(!g.nodes[static_cast<std::size_t>(first_error + model.spec().n_layers * T - 1)].attention);
  CHECK(g.nodes[static_cast<std::size_t>(first_error + model.spec().n_layers * T)].layer == 1);
  CHECK(g.nodes[static_cast<std::size_t>(first_error + (model.spec().n_layers + 1) * T)].layer ==
        3);
  check_graph(rm, g);

  SECTION("attention_score_side reproduces the Lorsa's own pattern") {
    const auto& lorsa = *owned.back();  // layer 1, reads ln1.hook_normalized
    saes::lm::HookSet hooks;
    hooks.capture("blocks.1.ln1.hook_normalized");
    const at::Tensor x =
        model.forward(at::tensor(kPrompt, at::kLong).view({1, -1}), nullptr, hooks)
            .at("blocks.1.ln1.hook_normalized")
            .to(at::kDouble)[0];
    const at::Tensor all = at::arange(lorsa.d_sae(), at::kLong);
    for (const std::int64_t q : {std::int64_t{3}, T - 1}) {
      const at::Tensor A = lorsa.token_mixing(x.unsqueeze(0).to(at::kFloat), q, all);
      for (const std::int64_t feature : {std::int64_t{5}, std::int64_t{40}}) {
        const auto qs = lorsa.attention_score_side(feature, q, true);
        const at::Tensor Q = at::mv(qs.map.to(at::kDouble), x[q]) + qs.bias.to(at::kDouble);
        std::vector<double> scores;
        for (std::int64_t k = 0; k <= q; ++k) {
          const auto ks = lorsa.attention_score_side(feature, k, false);
          const at::Tensor K = at::mv(ks.map.to(at::kDouble), x[k]) + ks.bias.to(at::kDouble);
          scores.push_back(at::dot(Q, K).item<double>());
        }
        const at::Tensor p = at::softmax(at::tensor(scores, at::kDouble), 0);
        for (std::int64_t k = 0; k <= q; ++k) {
          CHECK(std::abs(p[k].item<double>() - A[feature][k].item<double>()) < 1e-5);
        }
      }
    }
  }

  SECTION("QK tracing: the score at the attended key decomposes over the nodes") {
    const sc::PruneResult pruned = sc::prune(g, 0.8, 0.98);
    const std::vector<std::int64_t> traced = sc::qk_tracing_nodes(g, pruned, 0.5);
    REQUIRE(!traced.empty());
    const std::int64_t N = g.n_nodes();
    rm.trace_qk(g, traced, N * N, 16);  // every pair and marginal listed
    REQUIRE(g.qk_traces.size() == traced.size());
    for (const sc::QkTrace& t : g.qk_traces) {
      const sc::Node& node = g.nodes[static_cast<std::size_t>(t.node)];
      CHECK(node.attention);
      // the attended key is the pattern row's argmax
      const auto& row = node.pattern;
      CHECK(t.key_position ==
            std::max_element(row.begin(), row.end()) - row.begin());
      CHECK(static_cast<std::int64_t>(t.query.size()) == N);
      double q_sum = 0, pair_sum = 0;
      for (const auto& m : t.query) q_sum += m.value;
      for (const auto& p : t.pairs) pair_sum += p.value;
      // no contributions from nodes at or after the attention's sub-layer or later positions
      std::int64_t late_nonzero = 0;
      for (const auto& m : t.query) {
        const sc::Node& src = g.nodes[static_cast<std::size_t>(m.node)];
        const bool late = (src.kind == sc::NodeKind::kFeature ||
                           src.kind == sc::NodeKind::kError) &&
                          (2 * src.layer + (src.attention ? 0 : 1) >= 2 * node.layer ||
                           src.position > node.position);
        late_nonzero += late && m.value != 0.0 ? 1 : 0;
      }
      CHECK(late_nonzero == 0);
      // the listing is sorted, largest first
      CHECK(std::is_sorted(t.pairs.begin(), t.pairs.end(),
                           [](const auto& a, const auto& b) { return a.value > b.value; }));
      double k_sum = 0, q_abs = 0, k_abs = 0;
      for (const auto& m : t.key) k_sum += m.value;
      for (const auto& m : t.query) q_abs += std::abs(m.value);
      for (const auto& m : t.key) k_abs += std::abs(m.value);
      INFO("score " << t.score << " Σq " << q_sum << " Σk " << k_sum << " Σpairs " << pair_sum
                    << " constants " << t.query_constant << " " << t.key_constant << " "
                    << t.constant);
      // completeness of each side: the nodes' marginals plus what only the constants give
      // (a separate frozen forward) are the score; float32 rows summed over N·d_model terms
      const double tol_q = 1e-4 * (q_abs + std::abs(t.query_constant) + std::abs(t.score));
      const double tol_k = 1e-4 * (k_abs + std::abs(t.key_constant) + std::abs(t.score));
      CHECK(std::abs(q_sum + t.query_constant - t.score) <= tol_q);
      CHECK(std::abs(k_sum + t.key_constant - t.score) <= tol_k);
      // the pairs and the constant-side terms make up the same score
      CHECK(static_cast<std::int64_t>(t.pairs.size()) == N * N);
      CHECK(std::abs(t.score) > 0);
    }

    // the JSON: interleaved layers, lorsa types and patterns, QK results naming written nodes
    g.token_strings.assign(static_cast<std::size_t>(T), "t");
    const sc::GraphJson doc = sc::make_graph_json(g, pruned, "lorsa-graph");
    const auto json = nlohmann::json::parse(sc::graph_json_text(doc));
    std::set<std::string> ids;
    for (const auto& n : json["nodes"]) ids.insert(n["node_id"].get<std::string>());
    std::int64_t lorsa_nodes = 0, with_qk = 0;
    for (const auto& n : json["nodes"]) {
      const std::string type = n["feature_type"].get<std::string>();
      const std::string layer = n["layer"].get<std::string>();
      if (type == "lorsa") {
        ++lorsa_nodes;
        CHECK((layer == "2" || layer == "6"));  // attention of layers 1, 3
        CHECK(n["lorsa_pattern"].size() == static_cast<std::size_t>(T));
      } else if (type == "lorsa error") {
        CHECK((layer == "2" || layer == "6"));
      } else if (type == "cross layer transcoder" || type == "mlp reconstruction error") {
        CHECK(std::stoi(layer) % 2 == 1);  // MLP of layer l: 2l + 1
      } else if (type == "logit") {
        CHECK(layer == std::to_string(2 * model.spec().n_layers));
      }
      if (!n.contains("qk_tracing_results")) continue;
      ++with_qk;
      const auto& q = n["qk_tracing_results"];
      std::int64_t unknown = 0;
      for (const auto& p : q["pair_wise_contributors"]) {
        unknown += ids.count(p[0].get<std::string>()) == 1 ? 0 : 1;
        unknown += ids.count(p[1].get<std::string>()) == 1 ? 0 : 1;
      }
      for (const auto& m : q["top_q_marginal_contributors"])
        unknown += ids.count(m[0].get<std::string>()) == 1 ? 0 : 1;
      CHECK(unknown == 0);
    }
    CHECK(lorsa_nodes > 0);
    CHECK(with_qk == static_cast<std::int64_t>(traced.size()));

    // the store keeps which nodes are attention nodes
    saes::testing::TempDir dir;
    {
      sc::GraphStore store(dir / "graphs.sqlite", sc::GraphStoreMode::kWrite);
      store.add_graph(g, pruned, sc::graph_scores(g), "lorsa-graph");
    }
    const sc::GraphView view = sc::GraphStore(dir / "graphs.sqlite").load_graph("lorsa-graph", false);
    std::int64_t stored_attention = 0;
    for (const auto& n : view.nodes) stored_attention += n.attention ? 1 : 0;
    std::int64_t graph_attention = 0;
    for (const auto& n : g.nodes) graph_attention += n.attention ? 1 : 0;
    CHECK(stored_attention == graph_attention);
  }
}
