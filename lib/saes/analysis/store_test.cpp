// Analysis database: the written record reads back unchanged; listing, sorting, search; bad ids,
// missing files and foreign databases; JSON export; a crosscoder's H×H decoder matrices (and
// version 3 files, which have none).
#include "saes/analysis/store.h"

#include <algorithm>
#include <fstream>

#include <ATen/ATen.h>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "saes/core/error.h"
#include "saes/io/atomic_file.h"
#include "saes/io/sqlite.h"

#include "support/temp_dir.h"

namespace {

using namespace saes::analysis;

AnalysisRecord make_record() {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(11);
  AnalyzerOptions o;
  o.bands = {{"non_activating", 0.3, 3, 0}, {"top_activations", 1.0, 4, 0}};
  constexpr std::int64_t d = 16;
  FeatureAnalyzer a(d, o);
  for (int i = 0; i < 4; ++i) {
    const at::Tensor f = at::relu(at::randn({5, 10, d}, gen) - 1.2);
    a.add_batch(f, at::randint(0, 20, {5, 10}, gen), at::Tensor());
  }
  AnalysisRecord r;
  r.meta = {{"sae_name", "test"}};
  r.n_analyzed_tokens = a.n_analyzed_tokens();
  r.n_contexts = a.n_contexts();
  r.bands = o.bands;
  r.features = a.finish();
  const at::Tensor wd = at::randn({d, 6}, gen);
  r.decoder_cosine = max_decoder_cosine(wd);
  const at::Tensor wu = at::randn({20, 6}, gen);
  r.logit_lens = logit_lens({wd}, [&](const at::Tensor& rows) { return rows.mm(wu.t()); }, 3);
  for (int t = 0; t < 20; ++t) r.vocab.push_back("tok" + std::to_string(t));
  r.eval = {{"metrics/l0", 12.5}};
  return r;
}

}  // namespace

TEST_CASE("analysis store round-trips every feature", "[analysis]") {
  saes::testing::TempDir dir;
  const AnalysisRecord r = make_record();
  const auto path = dir / "a.sqlite";
  write_analysis_db(path, r);
  CHECK_FALSE(std::filesystem::exists(dir / "a.sqlite.tmp"));
  const AnalysisStore store(path);
  CHECK(store.d_sae() == 16);
  CHECK(store.meta().at("sae_name") == "test");
  CHECK(store.n_analyzed_tokens() == r.n_analyzed_tokens);
  CHECK(store.eval_metrics().at("metrics/l0") == 12.5);
  CHECK(store.histogram_edges().size() == 61);
  CHECK(store.bands().size() == 2);
  CHECK(store.token_text(3) == "tok3");
  for (std::int64_t i = 0; i < 16; ++i) {
    const auto& f = r.features[static_cast<std::size_t>(i)];
    const auto d = store.feature(i);
    REQUIRE(d.has_value());
    CHECK(d->summary.act_times == f.act_times);
    CHECK(d->summary.max_act == f.max_act);
    CHECK(d->summary.mean_act == f.mean_act);
    CHECK(d->histogram == f.histogram);
    CHECK(d->summary.nearest_feature == r.decoder_cosine->index[static_cast<std::size_t>(i)]);
    // The peak token sits where the top_activations band's best context reaches max_act (the
    // non_activating band sorts first by name and must not be picked).
    const auto& top = f.samples[1];
    if (!top.empty() && !top.front().values.empty()) {
      const auto& c = top.front();
      const auto at_max = std::max_element(c.values.begin(), c.values.end()) - c.values.begin();
      CHECK(c.values[static_cast<std::size_t>(at_max)] == Approx(f.max_act));
      REQUIRE(d->summary.peak_token.has_value());
      CHECK(*d->summary.peak_token ==
            c.tokens[static_cast<std::size_t>(c.positions[static_cast<std::size_t>(at_max)])]);
    }
    std::size_t n = 0;
    for (std::size_t b = 0; b < r.bands.size(); ++b) {
      for (std::size_t k = 0; k < f.samples[b].size(); ++k, ++n) {
        REQUIRE(n < d->contexts.size());
        const auto& c = d->contexts[n];
        CHECK(c.band == r.bands[b].name);
        CHECK(c.rank == static_cast<std::int64_t>(k));
        CHECK(c.context.score == f.samples[b][k].score);
        CHECK(c.context.provenance == f.samples[b][k].provenance);
        CHECK(c.context.tokens == f.samples[b][k].tokens);
        CHECK(c.context.positions == f.samples[b][k].positions);
        CHECK(c.context.values == f.samples[b][k].values);
      }
    }
    CHECK(n == d->contexts.size());
    REQUIRE(d->top_logits.size() == 3);
    CHECK(d->top_logits[0].token == r.logit_lens[static_cast<std::size_t>(i)].top_tokens[0]);
    CHECK(d->bottom_logits.size() == 3);
  }
  CHECK_FALSE(store.feature(16).has_value());
  CHECK_FALSE(store.feature(-1).has_value());
}

TEST_CASE("analysis store lists, sorts and searches features", "[analysis]") {
  saes::testing::TempDir dir;
  const AnalysisRecord r = make_record();
  write_analysis_db(dir / "a.sqlite", r);
  const AnalysisStore store(dir / "a.sqlite");
  FeatureQuery q;
  q.order = FeatureOrder::kMaxAct;
  q.descending = true;
  q.limit = 5;
  const auto page = store.list_features(q);
  REQUIRE(page.size() == 5);
  for (std::size_t k = 1; k < page.size(); ++k) CHECK(page[k - 1].max_act >= page[k].max_act);
  CHECK(store.count_features(q) == 16);
  q.search = "7";
  const auto one = store.list_features(q);
  REQUIRE(one.size() == 1);
  CHECK(one[0].id == 7);
  const auto peak = page[0].peak_token;
  REQUIRE(peak.has_value());
  q.search = "tok" + std::to_string(*peak);
  q.limit = 100;
  bool found = false;
  for (const auto& f : store.list_features(q)) found = found || f.id == page[0].id;
  CHECK(found);
  CHECK_FALSE(store.log10_frequencies().empty());
}

TEST_CASE("analysis store rejects missing files and foreign databases", "[analysis]") {
  saes::testing::TempDir dir;
  CHECK_THROWS_AS(AnalysisStore(dir / "missing" / "a.sqlite"), saes::IoError);
  {
    saes::io::SqliteDatabase db(dir / "other.sqlite", saes::io::SqliteMode::kCreate);
    db.exec("CREATE TABLE x (i INTEGER)");
  }
  CHECK_THROWS_AS(AnalysisStore(dir / "other.sqlite"), saes::DataError);
  CHECK_THROWS_AS(write_analysis_db(dir / "no" / "dir" / "a.sqlite", make_record()), saes::IoError);
}

TEST_CASE("export writes one JSON per feature with token texts and activations", "[analysis]") {
  saes::testing::TempDir dir;
  const AnalysisRecord r = make_record();
  write_analysis_db(dir / "a.sqlite", r);
  const AnalysisStore store(dir / "a.sqlite");
  CHECK(export_feature_json(store, dir / "json") == 16);
  const auto j = nlohmann::json::parse(saes::io::read_file(dir / "json" / "feature_3.json"));
  CHECK(j["feature"] == 3);
  CHECK(j["max_act"].get<double>() == r.features[3].max_act);
  REQUIRE_FALSE(j["contexts"].empty());
  const auto& c = j["contexts"][0];
  CHECK(c["tokens"].size() == c["acts"].size());
  CHECK(c["token_texts"][0].get<std::string>().rfind("tok", 0) == 0);
  CHECK(j["logits"]["top_positive"].size() == 3);
  CHECK(std::filesystem::exists(dir / "json" / "index.json"));
}

TEST_CASE("analysis store round-trips a crosscoder's H×H decoder matrices; version 3 files load",
          "[analysis]") {
  saes::testing::TempDir dir;
  AnalysisRecord r = make_record();
  r.target_hooks = {"blocks.1.hook_resid_post", "blocks.2.hook_resid_post",
                    "blocks.3.hook_resid_post"};
  for (int i = 0; i < 16; ++i) {  // entry (a, b) of feature i encodes i, a and b
    r.target_decoder_norms.push_back({1.0 + i, 2.0 + i, 3.0 + i});
    std::vector<double> cosines, inner;
    for (int a = 0; a < 3; ++a) {
      for (int b = 0; b < 3; ++b) {
        cosines.push_back(a == b ? 1.0 : -0.5 + 0.01 * i + 0.1 * a + 0.2 * b);
        inner.push_back(100.0 * i + 10.0 * a + b + 0.25);
      }
    }
    r.decoder_cosines.push_back(cosines);
    r.decoder_inner_products.push_back(inner);
  }
  write_analysis_db(dir / "cc.sqlite", r);
  {
    saes::io::SqliteDatabase db(dir / "cc.sqlite", saes::io::SqliteMode::kReadOnly);
    auto st = db.prepare("SELECT count(*), count(DISTINCT feature) FROM decoder_similarity");
    REQUIRE(st.step());
    CHECK(st.column_int(0) == 16 * 9);
    CHECK(st.column_int(1) == 16);
    auto one = db.prepare(
        "SELECT cosine, inner_product FROM decoder_similarity WHERE feature = 5 AND head_a = 2 "
        "AND head_b = 1");
    REQUIRE(one.step());
    CHECK(one.column_double(0) == r.decoder_cosines[5][2 * 3 + 1]);
    CHECK(one.column_double(1) == 521.25);
  }
  {
    const AnalysisStore store(dir / "cc.sqlite");
    CHECK(store.target_hooks() == r.target_hooks);
    for (std::int64_t i = 0; i < 16; ++i) {
      const auto d = store.feature(i);
      REQUIRE(d.has_value());
      CHECK(d->decoder_cosines == r.decoder_cosines[static_cast<std::size_t>(i)]);
      CHECK(d->decoder_inner_products == r.decoder_inner_products[static_cast<std::size_t>(i)]);
      CHECK(d->target_decoder_norms == r.target_decoder_norms[static_cast<std::size_t>(i)]);
    }
    REQUIRE(export_feature_json(store, dir / "json") == 16);
    const auto j = nlohmann::json::parse(saes::io::read_file(dir / "json" / "feature_3.json"));
    REQUIRE(j["decoder_similarity"]["cosine"].size() == 3);
    CHECK(j["decoder_similarity"]["cosine"][0][2].get<double>() == r.decoder_cosines[3][2]);
    CHECK(j["decoder_similarity"]["inner_product"][2][0].get<double>() == 320.25);
    CHECK(j["target_hooks"][2] == "blocks.3.hook_resid_post");
  }
  // A version 3 database (written before the table existed) opens, without the matrices.
  {
    saes::io::SqliteDatabase db(dir / "cc.sqlite", saes::io::SqliteMode::kReadWrite);
    db.exec(
        "UPDATE meta SET value = '3' WHERE key = 'schema_version'; "
        "DROP TABLE decoder_similarity;");
  }
  const AnalysisStore old(dir / "cc.sqlite");
  const auto d = old.feature(5);
  REQUIRE(d.has_value());
  CHECK(d->decoder_cosines.empty());
  CHECK(d->decoder_inner_products.empty());
  CHECK(d->target_decoder_norms == r.target_decoder_norms[5]);
  REQUIRE(export_feature_json(old, dir / "json_v3") == 16);
  const auto j = nlohmann::json::parse(saes::io::read_file(dir / "json_v3" / "feature_5.json"));
  CHECK_FALSE(j.contains("decoder_similarity"));
  CHECK(j["target_decoder_norms"].size() == 3);
}

TEST_CASE("analysis store refuses decoder matrices that do not fit the target hooks",
          "[analysis]") {
  saes::testing::TempDir dir;
  AnalysisRecord r = make_record();
  r.target_hooks = {"a", "b"};
  r.target_decoder_norms.assign(16, {1.0, 1.0});
  r.decoder_cosines.assign(16, {1.0, 0.5, 0.5, 1.0});
  r.decoder_inner_products.assign(16, {1.0, 0.5, 0.5, 1.0});
  AnalysisRecord bad = r;
  bad.decoder_cosines[7].pop_back();
  CHECK_THROWS_WITH(write_analysis_db(dir / "bad.sqlite", bad),
                    Catch::Contains("decoder similarity matrices must hold 2×2 values"));
  bad = r;
  bad.decoder_inner_products.clear();  // cosines without inner products
  CHECK_THROWS_AS(write_analysis_db(dir / "bad.sqlite", bad), saes::DataError);
  bad = r;
  bad.target_hooks.clear();
  bad.target_decoder_norms.clear();  // matrices without target hooks
  CHECK_THROWS_AS(write_analysis_db(dir / "bad.sqlite", bad), saes::DataError);
  CHECK_FALSE(std::filesystem::exists(dir / "bad.sqlite"));
  write_analysis_db(dir / "good.sqlite", r);
  CHECK(AnalysisStore(dir / "good.sqlite").feature(0)->decoder_cosines.size() == 4);
}
