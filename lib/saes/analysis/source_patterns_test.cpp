// Lorsa z-patterns of the sampled contexts (spec §7.2) against the dictionary's own z_pattern of
// each context: every stored entry equals A_g[q, k]·v_i[k] at a query where the feature fires,
// every entry at or above 1% of the activation is stored, and each query's entries sum to its
// activation within what the threshold drops; the database keeps them; the feature page shades
// the sources of the peak; the JSON export lists them.
#include "saes/analysis/source_patterns.h"

#include <cmath>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "saes/analysis/store.h"
#include "saes/analysis/viewer_pages.h"
#include "saes/dictionaries/lorsa.h"
#include "saes/dictionaries/sae.h"
#include "saes/io/atomic_file.h"
#include "support/temp_dir.h"

namespace sd = saes::dictionaries;
using namespace saes::analysis;

namespace {

constexpr std::int64_t kB = 3, kT = 9, kD = 8;

sd::LowRankSparseAttention tiny_lorsa() {
  sd::SparseDictionaryConfig cfg;
  cfg.sae_type = sd::SaeType::kLorsa;
  cfg.d_model = kD;
  cfg.expansion_factor = 2;  // 16 OV heads over 4 QK heads
  cfg.act_fn = sd::ActFn::kTopK;
  cfg.top_k = 3;
  cfg.hook_point_in = "blocks.0.ln1.hook_normalized";
  cfg.hook_point_out = "blocks.0.hook_attn_out";
  cfg.n_qk_heads = 4;
  cfg.d_qk_head = 4;
  cfg.rotary_dim = 4;
  cfg.n_ctx = kT;
  cfg.norm_activation = sd::NormActivation::kInference;
  sd::LowRankSparseAttention l(cfg);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(3);
  l.init_parameters({}, gen);
  for (auto& p : l.parameters()) {
    if (p.name == "W_Q" || p.name == "W_K") p.value.mul_(4.0);  // peaked patterns
  }
  return l;
}

}  // namespace

TEST_CASE("z-patterns of the sampled contexts equal the Lorsa's own z_pattern", "[analysis][lorsa]") {
  const auto lorsa = tiny_lorsa();
  const std::string hook = lorsa.config().hook_point_in;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(5);
  std::vector<at::Tensor> batches;
  for (int i = 0; i < 3; ++i) batches.push_back(at::randn({kB, kT, kD}, gen));
  AnalyzerOptions o;
  o.bands = {{"top_activations", 1.0, 3, 0}, {"crop", 0.9, 2, 4}};  // crop: max_length 4
  FeatureAnalyzer analyzer(lorsa.d_sae(), o);
  for (const auto& x : batches) {
    analyzer.add_batch(lorsa.encode(x), at::randint(0, 10, {kB, kT}, gen), at::Tensor());
  }
  std::vector<FeatureStats> features = analyzer.finish();
  std::size_t next = 0;
  const std::int64_t n = add_source_patterns(lorsa, features, [&]() -> std::optional<sd::HookActs> {
    if (next == batches.size()) return std::nullopt;
    return sd::HookActs{{hook, batches[next++]}};
  });
  CHECK(n > 20);
  std::int64_t entries = 0, cropped = 0;
  for (std::size_t i = 0; i < features.size(); ++i) {
    for (const auto& band : features[i].samples) {
      for (const SampledContext& c : band) {
        const std::int64_t ctx = c.provenance.context_index;
        const at::Tensor x = batches[static_cast<std::size_t>(ctx / kB)].narrow(0, ctx % kB, 1);
        const at::Tensor z = lorsa.z_pattern(x, static_cast<std::int64_t>(i))[0];  // [T, T]
        std::map<std::pair<int, int>, float> stored;
        for (std::size_t e = 0; e < c.source_q.size(); ++e) {
          stored[{c.source_q[e], c.source_k[e]}] = c.source_values[e];
          const double want = z[c.offset + c.source_q[e]][c.offset + c.source_k[e]].item<double>();
          CHECK(c.source_values[e] == Approx(want).margin(1e-6));
        }
        entries += static_cast<std::int64_t>(stored.size());
        cropped += c.offset > 0 ? 1 : 0;
        for (std::size_t e = 0; e < c.positions.size(); ++e) {
          const int q = c.positions[e];
          const float f = c.values[e];
          double sum = 0;
          for (int k = 0; k < static_cast<int>(c.tokens.size()); ++k) {
            const double v = z[c.offset + q][c.offset + k].item<double>();
            const bool kept = std::abs(v) >= kSourcePatternThreshold * f;
            CHECK(stored.count({q, k}) == (kept && f > 0 ? 1u : 0u));
            sum += v;
          }
          // within the context crop, the contributions add up to f (all keys: z = f when firing)
          if (c.offset == 0) CHECK(sum == Approx(f).epsilon(1e-4));
        }
      }
    }
  }
  CHECK(entries > 50);
  CHECK(cropped > 0);

  saes::testing::TempDir dir;
  AnalysisRecord r;
  r.meta = {{"sae_name", "lorsa"}};
  r.bands = o.bands;
  r.n_contexts = analyzer.n_contexts();
  r.n_analyzed_tokens = analyzer.n_analyzed_tokens();
  r.features = features;
  for (int t = 0; t < 10; ++t) r.vocab.push_back("w" + std::to_string(t));
  write_analysis_db(dir / "z.sqlite", r);
  const AnalysisStore store(dir / "z.sqlite");
  std::int64_t feature = 0;
  while (features[static_cast<std::size_t>(feature)].samples[0].empty() ||
         features[static_cast<std::size_t>(feature)].samples[0][0].source_q.empty()) {
    ++feature;
  }
  const auto detail = store.feature(feature);
  REQUIRE(detail.has_value());
  bool found = false;
  for (const auto& sc : detail->contexts) {
    if (sc.band != "top_activations" || sc.rank != 0) continue;
    const SampledContext& want = features[static_cast<std::size_t>(feature)].samples[0][0];
    CHECK(sc.context.source_q == want.source_q);
    CHECK(sc.context.source_k == want.source_k);
    CHECK(sc.context.source_values == want.source_values);
    found = true;
  }
  CHECK(found);
  const auto page = handle_request(store, "/features/" + std::to_string(feature), {});
  CHECK(page.status == 200);
  CHECK(page.body.find("reads from (z-pattern at the peak") != std::string::npos);
  CHECK(page.body.find("class=\"toks src\"") != std::string::npos);
  CHECK(page.body.find("→ peak: ") != std::string::npos);
  CHECK(export_feature_json(store, dir / "json") == lorsa.d_sae());
  const auto j = nlohmann::json::parse(
      saes::io::read_file(dir / "json" / ("feature_" + std::to_string(feature) + ".json")));
  bool has_z = false;
  for (const auto& c : j["contexts"]) has_z = has_z || c.contains("z_pattern");
  CHECK(has_z);
}

TEST_CASE("an SAE has no z-patterns", "[analysis]") {
  sd::SparseDictionaryConfig cfg;
  cfg.d_model = 4;
  cfg.expansion_factor = 2;
  cfg.hook_point_in = cfg.hook_point_out = "blocks.0.hook_resid_pre";
  const sd::SparseAutoEncoder dict(cfg);
  CHECK_THROWS_WITH(dict.source_contributions(at::zeros({1, 3, 4}), at::zeros({1}, at::kLong)),
                    Catch::Contains("sae features read one token each"));
}
