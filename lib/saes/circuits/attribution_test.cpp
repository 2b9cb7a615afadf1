// Attribution on the real stories260K: the frozen forward replays the model, the replacement
// model (transcoders per layer, or a CLT, plus error nodes) gives the model's logits, and every
// target row is complete — its incoming edges plus the constants (biases, position 0) sum to the
// target's value — with edges only from upstream nodes.
#include "saes/circuits/attribution.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <catch2/catch.hpp>

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
    // direct effects only from upstream: no feature or error of the target's layer or later
    for (std::int64_t s = 0; s < g.n_nodes(); ++s) {
      const sc::Node& src = g.nodes[static_cast<std::size_t>(s)];
      const bool downstream =
          (src.kind == sc::NodeKind::kFeature || src.kind == sc::NodeKind::kError) &&
          ((n.kind == sc::NodeKind::kFeature && src.layer >= n.layer) || src.position > n.position);
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
                    Catch::Contains("both replace layer 1's MLP"));
}
