// The many-dictionary viewer over two hand-made analysis databases: URL names, the home page and
// its JSON, each database's pages under /d/<name>/ with their links, forms and redirects moved
// there, 404s, and the databases of a folder.
#include "saes/analysis/viewer_site.h"

#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "saes/analysis/annotations.h"
#include "saes/analysis/store.h"
#include "saes/io/sqlite.h"

#include "support/temp_dir.h"
#include "support/viewer_ids.h"

namespace {

using namespace saes::analysis;
namespace fs = std::filesystem;

/// Three features (one dead) of a dictionary named `name`, with eval metrics.
AnalysisRecord record(const std::string& name, double l0) {
  AnalysisRecord r;
  r.meta = {{"sae_name", name}, {"sae_series", "tiny-series"},
            {"hook_point", "blocks.1.hook_resid_post"},
            {"model_name", "stories260K"}, {"sae_type", "sae"}};
  r.n_analyzed_tokens = 100;
  r.n_contexts = 10;
  r.bands = {{"top_activations", 1.0, 3, 0}};
  for (std::int64_t i = 0; i < 3; ++i) {
    FeatureStats f;
    f.act_times = i == 2 ? 0 : 5 * (i + 1);
    f.max_act = i == 2 ? 0 : 1.0 + static_cast<double>(i);
    f.mean_act = f.max_act / 2;
    f.histogram.assign(60, 0);
    f.samples.resize(1);
    r.features.push_back(f);
  }
  r.vocab = {"t0", "t1", "t2", "t3"};
  r.eval = {{"l0", l0}, {"explained_variance", 0.5}};  // as saes-analyze's evaluation names them
  return r;
}

using saes::testing::listed_ids;

}  // namespace

TEST_CASE("site names come from sae_name, are URL-safe and unique", "[analysis][viewer]") {
  CHECK(site_names({"topk L3", "topk L3", "", ".hidden"},
                   {"a/x.sqlite", "b/y.sqlite", "c/default.sqlite", "d/z.sqlite"}) ==
        std::vector<std::string>{"topk-L3", "topk-L3-2", "default", "-hidden"});
  CHECK(site_names({"", ""}, {"/a/", "/b/"}) == std::vector<std::string>{"db", "db-2"});
}

TEST_CASE("one viewer serves many dictionaries under /d/<name>/", "[analysis][viewer]") {
  saes::testing::TempDir dir;
  fs::create_directories(dir / "runs" / "b");
  write_analysis_db(dir / "runs" / "a.sqlite", record("alpha", 12.0));
  write_analysis_db(dir / "runs" / "b" / "default.sqlite", record("beta <b>", 7.5));
  {  // neither a graph store nor another SQLite file is an analysis database
    saes::io::SqliteDatabase other(dir / "runs" / "notes.sqlite", saes::io::SqliteMode::kCreate);
    other.exec("CREATE TABLE t (x INTEGER)");
  }
  const auto found = analysis_databases_in(dir / "runs");
  REQUIRE(found == std::vector<fs::path>{dir / "runs" / "a.sqlite",
                                         dir / "runs" / "b" / "default.sqlite"});
  CHECK_THROWS_WITH(analysis_databases_in(dir / "nothere"), Catch::Contains("not a folder"));
  const AnalysisStore a(found[0]), b(found[1]);
  const auto names = site_names({"alpha", "beta <b>"}, found);
  const std::vector<SiteEntry> site = {{names[0], found[0], &a, nullptr},
                                       {names[1], found[1], &b, nullptr}};

  const PageResponse home = handle_site_request(site, "/", {});
  CHECK(home.status == 200);
  CHECK(home.body.find("<a href=\"/d/alpha/\">alpha</a>") != std::string::npos);
  CHECK(home.body.find("<a href=\"/d/beta--b-/\">beta--b-</a>") != std::string::npos);
  CHECK(home.body.find("<td>12</td>") != std::string::npos);      // L0
  CHECK(home.body.find("<td>0.3333</td>") != std::string::npos);  // dead fraction: 1 of 3
  CHECK(home.body.find("href=\"/eval\"") == std::string::npos);   // no single-dictionary nav
  const auto api = nlohmann::json::parse(handle_site_request(site, "/api/dictionaries", {}).body);
  REQUIRE(api["dictionaries"].size() == 2);
  CHECK(api["dictionaries"][1]["url"] == "/d/beta--b-/");
  CHECK(api["dictionaries"][1]["l0"] == 7.5);
  CHECK(api["dictionaries"][0]["sae_type"] == "sae");
  CHECK(api["dictionaries"][0]["series"] == "tiny-series");
  CHECK(home.body.find("<td>tiny-series</td>") != std::string::npos);

  // a dictionary's pages: its links, forms and stylesheet under the prefix, and a way home
  const PageResponse list = handle_site_request(site, "/d/alpha/", {{"sort", "frequency"}});
  CHECK(list.status == 200);
  CHECK(list.body.find("href=\"/d/alpha/features/1\"") != std::string::npos);
  CHECK(list.body.find("action=\"/d/alpha/\"") != std::string::npos);
  CHECK(list.body.find("href=\"/d/alpha/style.css\"") != std::string::npos);
  CHECK(list.body.find("<nav><a href=\"/\">All dictionaries</a>") != std::string::npos);
  CHECK(list.body.find("href=\"/features/") == std::string::npos);
  CHECK(handle_site_request(site, "/d/beta--b-/features/1", {}).status == 200);
  CHECK(handle_site_request(site, "/d/alpha/style.css", {}).status == 200);
  CHECK(handle_site_request(site, "/style.css", {}).status == 200);
  const PageResponse random = handle_site_request(site, "/d/alpha/features/random", {});
  CHECK(random.status == 302);
  CHECK(random.location.rfind("/d/alpha/features/", 0) == 0);
  const auto api_feature = handle_site_request(site, "/d/beta--b-/api/features/0", {});
  CHECK(nlohmann::json::parse(api_feature.body)["id"] == 0);
  for (const char* bad : {"/features/0", "/d/", "/d/alpha", "/d/nope/", "/d/alpha/features/9",
                          "/eval", "/d/alpha/../beta--b-/"}) {
    CHECK(handle_site_request(site, bad, {}).status == 404);
  }
  // one database: its own routes at /, as before
  const std::vector<SiteEntry> one = {site[0]};
  CHECK(handle_site_request(one, "/features/0", {}).status == 200);
  CHECK(handle_site_request(one, "/", {}).body.find("href=\"/features/0\"") != std::string::npos);
}

TEST_CASE("annotations: labels, notes and bookmarks in their own file, edited by a form",
          "[analysis][viewer]") {
  saes::testing::TempDir dir;
  write_analysis_db(dir / "a.sqlite", record("alpha", 12.0));
  write_analysis_db(dir / "b.sqlite", record("beta", 3.0));
  const AnalysisStore a(dir / "a.sqlite"), b(dir / "b.sqlite");
  {
    saes::io::SqliteDatabase other(dir / "other.sqlite", saes::io::SqliteMode::kCreate);
    other.exec("CREATE TABLE t (x INTEGER)");
  }
  CHECK_THROWS_WITH(AnnotationStore(dir / "other.sqlite"),
                    Catch::Contains("not an saes annotations file"));
  AnnotationStore notes(dir / "notes.sqlite");
  std::vector<SiteEntry> one = {{"alpha", dir / "a.sqlite", &a, nullptr}};
  one[0].annotations = &notes;

  // the form posts, the page shows it, the table lists it, the search finds it
  const PageResponse saved = handle_site_post(
      one, "/features/1/annotation", {{"label", "Dragons <3"}, {"notes", "fires on fire"},
                                      {"bookmarked", "1"}});
  CHECK(saved.status == 303);
  CHECK(saved.location == "/features/1");
  const auto stored = notes.get("alpha", 1);
  REQUIRE(stored.has_value());
  CHECK(stored->label == "Dragons <3");
  CHECK(stored->bookmarked);
  CHECK(!stored->updated.empty());
  const std::string page = handle_site_request(one, "/features/1", {}).body;
  CHECK(page.find("action=\"/features/1/annotation\"") != std::string::npos);
  CHECK(page.find("value=\"Dragons &lt;3\"") != std::string::npos);
  CHECK(page.find("name=\"bookmarked\" value=\"1\" checked") != std::string::npos);
  const std::string table = handle_site_request(one, "/", {}).body;
  CHECK(table.find("<th class=\"label\">label</th>") != std::string::npos);
  CHECK(table.find("title=\"fires on fire\"><span class=\"star\" title=\"bookmarked\">★</span> "
                   "Dragons &lt;3</td>") != std::string::npos);
  CHECK(listed_ids(handle_site_request(one, "/", {{"q", "dragons"}}).body) ==
        std::vector<std::int64_t>{1});
  CHECK(listed_ids(handle_site_request(one, "/", {{"q", "FIRE"}}).body) ==
        std::vector<std::int64_t>{1});
  CHECK(listed_ids(handle_site_request(one, "/", {{"bookmarked", "1"}}).body) ==
        std::vector<std::int64_t>{1});
  handle_site_post(one, "/features/0/annotation", {{"label", "plain"}});
  CHECK(listed_ids(handle_site_request(one, "/", {{"bookmarked", "1"}}).body) ==
        std::vector<std::int64_t>{1});
  CHECK(listed_ids(handle_site_request(one, "/", {}).body).size() == 3);
  CHECK(handle_site_request(one, "/", {{"bookmarked", "yes"}}).status == 400);
  const auto api = nlohmann::json::parse(handle_site_request(one, "/api/features", {}).body);
  CHECK(api["features"][0]["label"] == "plain");
  CHECK(api["features"][1]["bookmarked"] == true);

  // clearing everything removes it; limits, unknown features and forms are refused
  handle_site_post(one, "/features/0/annotation", {});
  CHECK(!notes.get("alpha", 0).has_value());
  CHECK(handle_site_post(one, "/features/1/annotation",
                         {{"label", std::string(kMaxLabelBytes + 1, 'x')}})
            .status == 400);
  CHECK(notes.get("alpha", 1)->label == "Dragons <3");  // a refused post changes nothing
  CHECK(handle_site_post(one, "/features/9/annotation", {}).status == 404);
  CHECK(handle_site_post(one, "/features/1", {}).status == 404);
  CHECK(handle_site_post(one, "/features//annotation", {}).status == 404);

  // many dictionaries: each its own annotations, under its prefix
  std::vector<SiteEntry> two = {{"alpha", dir / "a.sqlite", &a, nullptr},
                                {"beta", dir / "b.sqlite", &b, nullptr}};
  two[0].annotations = two[1].annotations = &notes;
  const PageResponse beta = handle_site_post(two, "/d/beta/features/2/annotation",
                                             {{"label", "beta two"}});
  CHECK(beta.status == 303);
  CHECK(beta.location == "/d/beta/features/2");
  CHECK(notes.get("beta", 2)->label == "beta two");
  CHECK(!notes.get("alpha", 2).has_value());
  CHECK(handle_site_request(two, "/d/beta/features/2", {})
            .body.find("action=\"/d/beta/features/2/annotation\"") != std::string::npos);
  CHECK(handle_site_post(two, "/features/2/annotation", {}).status == 404);

  // without an annotations file: no form, and a post is refused
  const std::vector<SiteEntry> bare = {{"alpha", dir / "a.sqlite", &a, nullptr}};
  CHECK(handle_site_request(bare, "/features/1", {}).body.find("annotation") == std::string::npos);
  CHECK(handle_site_post(bare, "/features/1/annotation", {}).status == 403);
  // the analysis database was never written
  CHECK(AnalysisStore(dir / "a.sqlite").meta().count("annotations") == 0);
}
