// Viewer pages over a hand-made analysis database: routes and 404s (bad ids, path tricks), HTML
// escaping of every database text, sorting/search/paging of the dictionary page, the SVG
// histogram, shaded contexts with tooltips, the logit lens, a crosscoder's decoder-cosine heat map
// and the JSON API.
#include "saes/analysis/viewer_pages.h"

#include <cmath>
#include <set>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "saes/analysis/store.h"
#include "saes/io/sqlite.h"

#include "support/temp_dir.h"
#include "support/viewer_ids.h"

namespace {

using namespace saes::analysis;

constexpr const char* kEvil = "<script>alert('x')</script>";

/// Five features: feature i fires (i+1)·10 times with max (5-i) (so frequency and max_act sort in
/// opposite orders); feature 4 is dead. Token 7's text is a script tag.
AnalysisRecord make_record() {
  AnalysisRecord r;
  r.meta = {{"sae_name", std::string("sae ") + kEvil}, {"hook_point", "blocks.3.hook_resid_post"},
            {"logit_lens", "through ln_final & <unembed>"}};
  r.n_analyzed_tokens = 1000;
  r.n_contexts = 100;
  r.bands = {{"top_activations", 1.0, 3, 0}, {"subsample_0.5", 0.5, 2, 0}};
  for (std::int64_t i = 0; i < 5; ++i) {
    FeatureStats f;
    const bool dead = i == 4;
    f.act_times = dead ? 0 : (i + 1) * 10;
    f.max_act = dead ? 0 : 5.0 - static_cast<double>(i);
    f.mean_act = f.max_act / 2;
    f.histogram.assign(60, 0);
    if (!dead) f.histogram[static_cast<std::size_t>(30 + i)] = f.act_times;
    f.samples.resize(2);
    if (!dead) {
      SampledContext top;
      top.score = static_cast<float>(f.max_act);
      top.provenance = {i * 3, 0};
      top.tokens = {1, 2, 7, static_cast<std::int32_t>(10 + i)};
      top.positions = {2, 3};
      top.values = {static_cast<float>(f.max_act / 4), static_cast<float>(f.max_act)};
      f.samples[0].push_back(top);
      SampledContext low = top;
      low.score = top.score / 4;
      low.values = {low.score, low.score / 2};
      f.samples[1].push_back(low);
    }
    r.features.push_back(f);
  }
  r.decoder_cosine = NearestRow{{0.9F, 0.9F, 0.2F, 0.5F, 0.0F}, {1, 0, 3, 2, -1}};
  for (std::int64_t i = 0; i < 5; ++i) {
    r.logit_lens.push_back({{7, 3}, {2.5F, 1.5F}, {5}, {-2.0F}});
  }
  for (int t = 0; t < 16; ++t) r.vocab.push_back("tok" + std::to_string(t));
  r.vocab[7] = kEvil;
  r.vocab[12] = "needle";
  r.eval = {{"metrics/l0", 12.5}, {"metrics/explained_variance", 0.75}};
  return r;
}

struct Fixture {
  saes::testing::TempDir dir;
  AnalysisStore store;
  Fixture() : store(write(dir)) {}
  static std::filesystem::path write(const saes::testing::TempDir& d) {
    write_analysis_db(d / "a.sqlite", make_record());
    return d / "a.sqlite";
  }
  PageResponse get(std::string_view path, const QueryParams& params = {}) const {
    return handle_request(store, path, params);
  }
};

using saes::testing::listed_ids;

}  // namespace

TEST_CASE("html_escape escapes the five markup characters", "[analysis][viewer]") {
  CHECK(html_escape("a<b>&\"c'") == "a&lt;b&gt;&amp;&quot;c&#39;");
  CHECK(html_escape("plain ▁text") == "plain ▁text");
}

TEST_CASE("parse_feature_id accepts only plain decimals below d_sae", "[analysis][viewer]") {
  CHECK(parse_feature_id("0", 5) == 0);
  CHECK(parse_feature_id("4", 5) == 4);
  for (const char* bad : {"5", "-1", "+1", " 1", "1 ", "1a", "0x1", "", "1.0", "..", "%31",
                          "99999999999999999999", "1234567890123456789"}) {
    CAPTURE(bad);
    CHECK_FALSE(parse_feature_id(bad, 5).has_value());
  }
}

TEST_CASE("activation_color goes from transparent to saturated", "[analysis][viewer]") {
  CHECK(activation_color(0, 2) == "rgba(255,140,0,0.00)");
  CHECK(activation_color(1, 2) == "rgba(255,140,0,0.50)");
  CHECK(activation_color(9, 2) == "rgba(255,140,0,1.00)");
  CHECK(activation_color(1, 0) == "rgba(255,140,0,0.00)");
}

TEST_CASE("histogram_svg draws one titled bar per bin", "[analysis][viewer]") {
  const std::string svg = histogram_svg({1, 0, 3}, {0.1, 1, 10, 100}, "act <x>");
  CHECK(svg.rfind("<svg class=\"hist\"", 0) == 0);
  CHECK(svg.find("</svg>") != std::string::npos);
  std::size_t bars = 0;
  for (auto p = svg.find("<rect"); p != std::string::npos; p = svg.find("<rect", p + 1)) ++bars;
  CHECK(bars == 3);
  CHECK(svg.find("<title>[10, 100): 3</title>") != std::string::npos);
  CHECK(svg.find("act &lt;x&gt;") != std::string::npos);
  CHECK(histogram_svg({0, 0}, {1, 2, 3}, "x").find("no activations") != std::string::npos);
}

TEST_CASE("viewer answers unknown routes, bad ids and path tricks with 404", "[analysis][viewer]") {
  const Fixture fx;
  for (const char* path :
       {"/nothing", "/features", "/features/", "/features/5", "/features/-1", "/features/1a",
        "/features/01x", "/features/../eval", "/features/%2e%2e", "/features/1/../2", "/./eval",
        "/eval/", "/../etc/passwd", "/features/99999999999999999999999", "/api/features/5",
        "/api/features/abc", "/api", "/style.css/", "//", "/features/1/"}) {
    CAPTURE(path);
    const auto r = fx.get(path);
    CHECK(r.status == 404);
    CHECK(r.body.find("<script>") == std::string::npos);
  }
  const auto r = fx.get("/features/<script>");
  CHECK(r.status == 404);
  CHECK(r.body.find("&lt;script&gt;") != std::string::npos);
}

TEST_CASE("viewer serves every page with its content type", "[analysis][viewer]") {
  const Fixture fx;
  CHECK(fx.get("/").status == 200);
  CHECK(fx.get("/eval").status == 200);
  CHECK(fx.get("/features/0").status == 200);
  CHECK(fx.get("/features/4").status == 200);
  const auto css = fx.get("/style.css");
  CHECK(css.status == 200);
  CHECK(css.content_type.rfind("text/css", 0) == 0);
  CHECK(fx.get("/api/features").content_type == "application/json");
  CHECK(fx.get("/api/features/2").content_type == "application/json");
  CHECK(fx.get("/api/eval").content_type == "application/json");
}

TEST_CASE("viewer escapes every text that comes from the database", "[analysis][viewer]") {
  const Fixture fx;
  for (const char* path : {"/", "/features/0", "/eval"}) {
    CAPTURE(path);
    const auto r = fx.get(path);
    CHECK(r.body.find("<script") == std::string::npos);
    CHECK(r.body.find("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;") != std::string::npos);
  }
  const auto search = fx.get("/", {{"q", "\"><script>"}});
  CHECK(search.status == 200);
  CHECK(search.body.find("<script") == std::string::npos);
  CHECK(search.body.find("value=\"&quot;&gt;&lt;script&gt;\"") != std::string::npos);
}

TEST_CASE("dictionary page sorts, searches and pages", "[analysis][viewer]") {
  const Fixture fx;
  CHECK(listed_ids(fx.get("/").body) == std::vector<std::int64_t>{0, 1, 2, 3, 4});
  CHECK(listed_ids(fx.get("/", {{"sort", "frequency"}}).body) ==
        std::vector<std::int64_t>{3, 2, 1, 0, 4});
  CHECK(listed_ids(fx.get("/", {{"sort", "max_act"}, {"order", "asc"}}).body) ==
        std::vector<std::int64_t>{4, 3, 2, 1, 0});
  CHECK(listed_ids(fx.get("/", {{"sort", "cosine"}}).body).front() == 0);
  CHECK(listed_ids(fx.get("/", {{"q", "3"}}).body) == std::vector<std::int64_t>{3});
  CHECK(listed_ids(fx.get("/", {{"q", "needle"}}).body) == std::vector<std::int64_t>{2});
  CHECK(listed_ids(fx.get("/", {{"q", "nothing-matches"}}).body).empty());
  const auto page2 = fx.get("/", {{"per_page", "2"}, {"page", "2"}});
  CHECK(listed_ids(page2.body) == std::vector<std::int64_t>{2, 3});
  CHECK(page2.body.find("page 2 of 3") != std::string::npos);
  CHECK(page2.body.find("rel=\"prev\" href=\"/?sort=id&amp;order=asc&amp;page=1&amp;per_page=2\"") !=
        std::string::npos);
  CHECK(listed_ids(fx.get("/", {{"per_page", "2"}, {"page", "9"}}).body).empty());
  CHECK(fx.get("/").body.find("<svg class=\"hist\"") != std::string::npos);
  for (const QueryParams& bad : std::vector<QueryParams>{{{"sort", "name"}},
                                                         {{"order", "up"}},
                                                         {{"page", "0"}},
                                                         {{"page", "-1"}},
                                                         {{"per_page", "1001"}},
                                                         {{"per_page", "x"}},
                                                         {{"q", std::string(201, 'a')}}}) {
    CHECK(fx.get("/", bad).status == 400);
  }
}

TEST_CASE("dictionary page filters by frequency, max activation and layer", "[analysis][viewer]") {
  const Fixture fx;  // frequencies 0.01 .. 0.04 and max 5 .. 2 for features 0 .. 3; 4 is dead
  using Ids = std::vector<std::int64_t>;
  CHECK(listed_ids(fx.get("/", {{"min_freq", "0.02"}}).body) == Ids{1, 2, 3});
  CHECK(listed_ids(fx.get("/", {{"min_freq", "0.02"}, {"max_freq", "0.025"}}).body) == Ids{1});
  CHECK(listed_ids(fx.get("/", {{"max_freq", "0"}}).body) == Ids{4});
  CHECK(listed_ids(fx.get("/", {{"min_act", "3"}}).body) == Ids{0, 1, 2});
  CHECK(listed_ids(fx.get("/", {{"min_act", "3"}, {"max_act", "4.5"}}).body) == Ids{1, 2});
  CHECK(listed_ids(fx.get("/", {{"q", "needle"}, {"min_act", "3"}}).body) == Ids{2});
  CHECK(listed_ids(fx.get("/", {{"q", "needle"}, {"min_act", "4"}}).body).empty());
  CHECK(listed_ids(fx.get("/", {{"q", "2"}, {"min_act", "4"}}).body).empty());
  CHECK(listed_ids(fx.get("/", {{"min_act", ""}}).body) == Ids{0, 1, 2, 3, 4});  // empty: unset
  // the filters survive paging and sorting links, and the form shows them
  const std::string page = fx.get("/", {{"min_act", "3"}, {"per_page", "1"}}).body;
  CHECK(page.find("rel=\"next\" href=\"/?sort=id&amp;order=asc&amp;page=2&amp;per_page=1&amp;"
                  "min_act=3\"") != std::string::npos);
  CHECK(page.find("name=\"min_act\" value=\"3\"") != std::string::npos);
  CHECK(page.find("3 matching") != std::string::npos);
  CHECK(page.find("name=\"layer\"") == std::string::npos);  // one layer: no layer filter
  for (const QueryParams& bad : std::vector<QueryParams>{{{"min_freq", "abc"}},
                                                         {{"max_act", "inf"}},
                                                         {{"min_act", "1e999"}},
                                                         {{"max_freq", "0.1x"}},
                                                         {{"layer", "1"}},
                                                         {{"layer", "-0"}}}) {
    CHECK(fx.get("/", bad).status == 400);
  }
  CHECK(fx.get("/api/features", {{"min_act", "3"}}).body.find("\"total\":3") != std::string::npos);
}

TEST_CASE("a random alive feature is a redirect, and a feature's JSON downloads", "[analysis][viewer]") {
  const Fixture fx;
  std::set<std::string> seen;
  for (int i = 0; i < 40; ++i) {
    const PageResponse r = fx.get("/features/random");
    REQUIRE(r.status == 302);
    seen.insert(r.location);
  }
  CHECK(seen.count("/features/4") == 0);  // the dead feature is never drawn
  CHECK(seen.size() >= 2);                // 40 draws from 4 alive features
  for (const auto& l : seen) CHECK(l.rfind("/features/", 0) == 0);
  const PageResponse api = fx.get("/api/features/random");
  CHECK(api.status == 302);
  CHECK(api.location.rfind("/api/features/", 0) == 0);
  const std::string html = fx.get("/features/2").body;
  CHECK(html.find("href=\"/api/features/2\" download=\"sae &lt;script&gt;alert(&#39;x&#39;)&lt;/"
                  "script&gt;-feature-2.json\"") != std::string::npos);
  CHECK(html.find("href=\"/features/random\"") != std::string::npos);
  CHECK(fx.get("/").body.find("href=\"/features/random\"") != std::string::npos);
}

TEST_CASE("feature page shows histogram, shaded contexts by band and logit lens",
          "[analysis][viewer]") {
  const Fixture fx;
  const std::string html = fx.get("/features/1").body;
  CHECK(html.find("<h1>Feature 1</h1>") != std::string::npos);
  CHECK(html.find("<svg class=\"hist\"") != std::string::npos);
  CHECK(html.find("<title>") != std::string::npos);
  // Peak token 11 at activation 4 = max: fully shaded, tooltip with its value.
  CHECK(html.find("<span class=\"t a20 peak\" title=\"tok11: 4\">tok11</span>") !=
        std::string::npos);
  // tok 7 at 1 of max 4: level round(20·1/4) = 5; no inline style anywhere (the CSP has no
  // 'unsafe-inline'): the levels are stylesheet classes
  CHECK(html.find("<span class=\"t a5\" title=\"&lt;script&gt;") != std::string::npos);
  CHECK(html.find("style=") == std::string::npos);
  const std::string css = fx.get("/style.css").body;
  CHECK(css.find(".toks .a20{background:rgba(255,140,0,1.00)}") != std::string::npos);
  CHECK(css.find(".toks .a5{background:rgba(255,140,0,0.25)}") != std::string::npos);
  CHECK(activation_level(1.0, 4.0) == 5);
  CHECK(activation_level(9.0, 4.0) == 20);
  CHECK(activation_level(1.0, 0.0) == 0);
  CHECK(html.find("title=\"&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;: 1\"") !=
        std::string::npos);
  CHECK(html.find("<span class=\"t\">tok1</span>") != std::string::npos);
  const auto sub = html.find("subsample_0.5 — contexts peaking at ≤ 0.5·max");
  const auto top = html.find("top_activations — top activations");
  CHECK(sub != std::string::npos);
  CHECK(top != std::string::npos);
  CHECK(html.find("through ln_final &amp; &lt;unembed&gt;") != std::string::npos);
  CHECK(html.find("promoted tokens") != std::string::npos);
  CHECK(html.find("<td class=\"tok\"><code>tok3</code></td><td>1.5</td>") != std::string::npos);
  CHECK(html.find("<td class=\"tok\"><code>tok5</code></td><td>-2</td>") != std::string::npos);
  CHECK(html.find("href=\"/features/0\"") != std::string::npos);
  CHECK(html.find("href=\"/features/2\"") != std::string::npos);
  const std::string dead = fx.get("/features/4").body;
  CHECK(dead.find("no activations") != std::string::npos);
  CHECK(dead.find("no stored contexts") != std::string::npos);
}

TEST_CASE("eval page lists metrics and run metadata", "[analysis][viewer]") {
  const Fixture fx;
  const std::string html = fx.get("/eval").body;
  CHECK(html.find("<td class=\"tok\">metrics/l0</td><td>12.5</td>") != std::string::npos);
  CHECK(html.find("blocks.3.hook_resid_post") != std::string::npos);
}

TEST_CASE("JSON API mirrors the list and feature pages", "[analysis][viewer]") {
  const Fixture fx;
  const auto list = nlohmann::json::parse(
      fx.get("/api/features", {{"sort", "frequency"}, {"per_page", "2"}}).body);
  CHECK(list["total"] == 5);
  REQUIRE(list["features"].size() == 2);
  CHECK(list["features"][0]["id"] == 3);
  CHECK(list["features"][0]["frequency"] == Approx(0.04));
  const auto f = nlohmann::json::parse(fx.get("/api/features/1").body);
  CHECK(f["id"] == 1);
  CHECK(f["max_act"] == 4.0);
  CHECK(f["histogram"].size() == 60);
  CHECK(f["histogram_edges"].size() == 61);
  REQUIRE(f["contexts"].size() == 2);
  CHECK(f["contexts"][1]["band"] == "top_activations");
  CHECK(f["contexts"][1]["acts"] == std::vector<float>{0, 0, 1, 4});
  CHECK(f["contexts"][1]["token_texts"][2] == kEvil);
  CHECK(f["logit_lens"]["top"][0]["text"] == kEvil);
  CHECK(f["peak_token_text"] == "tok11");
  const auto ev = nlohmann::json::parse(fx.get("/api/eval").body);
  CHECK(ev["metrics"]["metrics/l0"] == 12.5);
  CHECK(fx.get("/api/features", {{"sort", "bogus"}}).status == 400);
}

TEST_CASE("a multi-layer dictionary's feature page shows its layer and decoder norm per target",
          "[analysis][viewer]") {
  saes::testing::TempDir dir;
  AnalysisRecord r = make_record();  // 5 features, here one per layer
  r.feature_layers = 5;
  r.target_hooks = {"blocks.0.hook_mlp_out", "blocks.1.hook_mlp_out", "blocks.2.hook_mlp_out",
                    "blocks.3.hook_mlp_out", kEvil};
  for (std::int64_t i = 0; i < 5; ++i) {
    std::vector<double> norms(5, 0.0);
    for (std::int64_t t = i; t < 5; ++t) norms[static_cast<std::size_t>(t)] = 1.0 + 0.5 * t;
    r.target_decoder_norms.push_back(norms);
  }
  write_analysis_db(dir / "clt.sqlite", r);
  const AnalysisStore store(dir / "clt.sqlite");
  CHECK(store.feature_layers() == 5);
  CHECK(store.target_hooks() == r.target_hooks);
  const std::string html = handle_request(store, "/features/2", {}).body;
  CHECK(html.find("<dt>source layer</dt><dd>2 (feature 0 of the layer)</dd>") != std::string::npos);
  // the dictionary page filters by source layer
  CHECK(listed_ids(handle_request(store, "/", {{"layer", "2"}}).body) ==
        std::vector<std::int64_t>{2});
  CHECK(handle_request(store, "/", {}).body.find("<option value=\"4\">4</option>") !=
        std::string::npos);
  CHECK(handle_request(store, "/", {{"layer", "5"}}).status == 400);
  CHECK(html.find("Decoder norm per target layer") != std::string::npos);
  const std::string chart = html.substr(html.find("<svg class=\"bars\""));
  CHECK(chart.find("blocks.2.hook_mlp_out: 2</title>") != std::string::npos);
  CHECK(chart.find("blocks.3.hook_mlp_out: 2.5</title>") != std::string::npos);
  CHECK(chart.find("blocks.1.hook_mlp_out") == std::string::npos);  // layer 2 writes from 2 on
  CHECK(chart.find(kEvil) == std::string::npos);                    // escaped
  CHECK(chart.find("&lt;script&gt;") != std::string::npos);
  const auto j = nlohmann::json::parse(handle_request(store, "/api/features/2", {}).body);
  CHECK(j["layer"] == 2);
  CHECK(j["index_in_layer"] == 0);
  REQUIRE(j["target_decoder_norms"].size() == 5);
  CHECK(j["target_decoder_norms"][1]["decoder_norm"] == 0.0);
  CHECK(j["target_decoder_norms"][4]["decoder_norm"] == 3.0);
  CHECK(j["target_decoder_norms"][4]["hook"] == kEvil);
  // A one-layer record shows neither; a record whose norms do not match is refused.
  const Fixture fx;
  CHECK(fx.get("/features/2").body.find("source layer") == std::string::npos);
  CHECK(fx.get("/features/2").body.find("Decoder norm per target") == std::string::npos);
  AnalysisRecord bad = r;
  bad.target_decoder_norms.pop_back();
  CHECK_THROWS_WITH(write_analysis_db(dir / "bad.sqlite", bad),
                    Catch::Contains("target decoder norms"));
  bad = r;
  bad.feature_layers = 2;
  CHECK_THROWS_WITH(write_analysis_db(dir / "bad.sqlite", bad), Catch::Contains("2 layers"));
  CHECK_FALSE(std::filesystem::exists(dir / "bad.sqlite"));
}

TEST_CASE("schema version 1, 2 and 3 databases are still read", "[analysis][viewer]") {
  saes::testing::TempDir dir;
  write_analysis_db(dir / "v1.sqlite", make_record());
  {
    saes::io::SqliteDatabase db(dir / "v1.sqlite", saes::io::SqliteMode::kReadWrite);
    db.exec(
        "UPDATE meta SET value = '1' WHERE key = 'schema_version'; "
        "DELETE FROM meta WHERE key = 'feature_layers'; DROP TABLE target_norms; "
        "DROP TABLE z_patterns; DROP TABLE decoder_similarity;");
  }
  const AnalysisStore store(dir / "v1.sqlite");
  CHECK(store.feature_layers() == 1);
  CHECK(handle_request(store, "/features/1", {}).status == 200);
  {  // version 2 had no z_patterns table either
    saes::io::SqliteDatabase db(dir / "v1.sqlite", saes::io::SqliteMode::kReadWrite);
    db.exec("UPDATE meta SET value = '2' WHERE key = 'schema_version'");
  }
  CHECK(handle_request(AnalysisStore(dir / "v1.sqlite"), "/features/1", {}).status == 200);
  {  // version 3 had z_patterns but no decoder_similarity table
    saes::io::SqliteDatabase db(dir / "v1.sqlite", saes::io::SqliteMode::kReadWrite);
    db.exec(
        "UPDATE meta SET value = '3' WHERE key = 'schema_version'; CREATE TABLE z_patterns "
        "(feature INTEGER, band TEXT, rank INTEGER, q BLOB, k BLOB, value BLOB)");
  }
  CHECK(handle_request(AnalysisStore(dir / "v1.sqlite"), "/features/1", {}).status == 200);
  {
    saes::io::SqliteDatabase db(dir / "v1.sqlite", saes::io::SqliteMode::kReadWrite);
    db.exec("UPDATE meta SET value = '5' WHERE key = 'schema_version'");
  }
  CHECK_THROWS_WITH(AnalysisStore(dir / "v1.sqlite"), Catch::Contains("versions 1 to 4"));
}

TEST_CASE("cosine_color runs from blue through white to red", "[analysis][viewer]") {
  CHECK(cosine_color(-1) == "#2166ac");
  CHECK(cosine_color(0) == "#ffffff");
  CHECK(cosine_color(1) == "#b2182b");
  CHECK(cosine_color(7) == "#b2182b");  // clamped
  CHECK(cosine_color(0.5) == "#d98c95");
  CHECK(cosine_color(std::nan("")) == "#cccccc");
}

TEST_CASE("a crosscoder's feature page draws the H×H decoder cosines as a heat map",
          "[analysis][viewer]") {
  saes::testing::TempDir dir;
  AnalysisRecord r = make_record();
  r.target_hooks = {"blocks.1.hook_resid_post", "blocks.2.hook_resid_post", kEvil};
  for (std::int64_t i = 0; i < 5; ++i) {  // feature i: cosine(a, b) = 1 - 0.25·|a − b| − 0.1·i
    r.target_decoder_norms.push_back({1.0, 2.0, 3.0});
    std::vector<double> cosines, inner;
    for (int a = 0; a < 3; ++a) {
      for (int b = 0; b < 3; ++b) {
        cosines.push_back(a == b ? 1.0 : 1.0 - 0.25 * std::abs(a - b) - 0.1 * i);
        inner.push_back(10.0 * a + b + 0.5);
      }
    }
    r.decoder_cosines.push_back(cosines);
    r.decoder_inner_products.push_back(inner);
  }
  r.decoder_cosines[2][0 * 3 + 2] = -0.9;  // one strongly anti-aligned pair
  write_analysis_db(dir / "cc.sqlite", r);
  const AnalysisStore store(dir / "cc.sqlite");
  const std::string html = handle_request(store, "/features/2", {}).body;
  REQUIRE(html.find("Decoder cosine between heads") != std::string::npos);
  const auto begin = html.find("<svg class=\"heat\"");
  REQUIRE(begin != std::string::npos);
  const std::string svg = html.substr(begin, html.find("</svg>", begin) - begin);
  std::size_t cells = 0;
  for (auto p = svg.find("<rect class=\"cell\""); p != std::string::npos;
       p = svg.find("<rect class=\"cell\"", p + 1)) {
    ++cells;
  }
  CHECK(cells == 9);
  // cell (0, 1): both hook names, the cosine and the inner product; filled on the scale
  CHECK(svg.find("fill=\"" + cosine_color(0.55) +
                 "\"><title>blocks.1.hook_resid_post × blocks.2.hook_resid_post: cosine 0.55, "
                 "inner product 1.5</title>") != std::string::npos);
  CHECK(svg.find("fill=\"" + cosine_color(-0.9) + "\"><title>blocks.1.hook_resid_post × " +
                 html_escape(kEvil) + ": cosine -0.9, inner product 2.5</title>") !=
        std::string::npos);
  CHECK(svg.find(html_escape(kEvil) +
                 " × blocks.2.hook_resid_post: cosine 0.55, inner product 21.5</title>") !=
        std::string::npos);
  CHECK(svg.find(">-0.90</text>") != std::string::npos);  // values printed in the cells
  CHECK(svg.find(">−1</text>") != std::string::npos);     // the legend's ends
  CHECK(svg.find(">1</text>") != std::string::npos);
  CHECK(svg.find(kEvil) == std::string::npos);  // head names are escaped
  CHECK(html.find("style=") == std::string::npos);
  CHECK(html.find("<svg class=\"bars\"") != std::string::npos);  // beside the norm bars
  const auto j = nlohmann::json::parse(handle_request(store, "/api/features/2", {}).body);
  REQUIRE(j["decoder_similarity"]["cosine"].size() == 3);
  CHECK(j["decoder_similarity"]["cosine"][0][2] == -0.9);
  CHECK(j["decoder_similarity"]["inner_product"][2][1] == 21.5);
  CHECK(j["decoder_similarity"]["hooks"][2] == kEvil);
  // Without matrices (an SAE, a CLT) there is no heat map.
  const Fixture fx;
  CHECK(fx.get("/features/2").body.find("<svg class=\"heat\"") == std::string::npos);
  CHECK(heatmap_svg({1.0}, {}, {"a"}, "t").find("no matrix") != std::string::npos);
}

TEST_CASE("feature page lists top activations, subsampling bands by proportion, then non-activating",
          "[analysis][viewer]") {
  saes::testing::TempDir dir;
  AnalysisRecord r = make_record();
  // stored by name: non_activating < subsampling_25% < subsampling_75% < top_activations
  r.bands = {{"non_activating", 0.3, 1, 0}, {"subsampling_25%", 0.25, 1, 0},
             {"subsampling_75%", 0.75, 1, 0}, {"top_activations", 1.0, 1, 0}};
  for (auto& f : r.features) {
    const auto one = f.samples[0];
    f.samples.assign(4, one);
  }
  write_analysis_db(dir / "bands.sqlite", r);
  const AnalysisStore store(dir / "bands.sqlite");
  const std::string body = handle_request(store, "/features/0", {}).body;
  const auto top = body.find("top_activations — top activations");
  const auto b75 = body.find("subsampling_75% — contexts");
  const auto b25 = body.find("subsampling_25% — contexts");
  const auto non = body.find("non_activating — contexts");
  REQUIRE(top != std::string::npos);
  REQUIRE(b75 != std::string::npos);
  REQUIRE(b25 != std::string::npos);
  REQUIRE(non != std::string::npos);
  CHECK(top < b75);
  CHECK(b75 < b25);
  CHECK(b25 < non);
}
