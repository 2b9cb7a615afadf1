// The live-inference pages over a fake inference (the real model runs in the CLI test): the text
// boxes, the shaded tokens and their top features, a feature page's shading of the text, the
// JSON, and the refusals (empty, too long, refused by the inference, no model).
#include "saes/analysis/viewer_live.h"

#include <string>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "saes/analysis/store.h"
#include "saes/core/error.h"

#include "support/temp_dir.h"

namespace {

using namespace saes::analysis;

AnalysisRecord record() {
  AnalysisRecord r;
  r.meta = {{"sae_name", "live"}};
  r.n_analyzed_tokens = 100;
  r.n_contexts = 10;
  r.bands = {{"top_activations", 1.0, 3, 0}};
  for (std::int64_t i = 0; i < 3; ++i) {
    FeatureStats f;
    f.act_times = 5;
    f.max_act = 4.0;
    f.mean_act = 2.0;
    f.histogram.assign(60, 0);
    f.samples.resize(1);
    r.features.push_back(f);
  }
  r.vocab = {"a", "b"};
  return r;
}

/// One token per word; word w gets feature (w mod 3) at 1 + w, feature 2 also at 0.5.
LiveTokens fake(std::string_view text, std::optional<std::int64_t> feature) {
  if (text.find("refuse") != std::string_view::npos) throw saes::DataError("text: 999 tokens, the limit is 256");
  if (text.find("broken") != std::string_view::npos) throw saes::IoError("the model x.bin is not found");
  LiveTokens out;
  std::size_t start = 0;
  for (std::size_t w = 0; start <= text.size(); ++w) {
    const std::size_t end = std::min(text.find(' ', start), text.size());
    out.tokens.emplace_back(text.substr(start, end - start));
    out.top.push_back({{static_cast<std::int64_t>(w % 3), 1.0F + static_cast<float>(w)}});
    if (w % 3 != 2) out.top.back().push_back({2, 0.5F});
    if (feature) out.feature.push_back(*feature == static_cast<std::int64_t>(w % 3) ? 1.0F + w : 0.0F);
    start = end + 1;
  }
  return out;
}

}  // namespace

TEST_CASE("live inference pages shade the user's text", "[analysis][viewer]") {
  saes::testing::TempDir dir;
  write_analysis_db(dir / "a.sqlite", record());
  const AnalysisStore store(dir / "a.sqlite");
  const LiveInference live = fake;

  const auto page = handle_live_request(store, &live, "/infer", {{"text", "the <cat> sat"}});
  REQUIRE(page.has_value());
  CHECK(page->status == 200);
  CHECK(page->body.find("3 tokens") != std::string::npos);
  CHECK(page->body.find("&lt;cat&gt;") != std::string::npos);   // escaped
  CHECK(page->body.find("<cat>") == std::string::npos);
  CHECK(page->body.find("title=\"sat: #2: 3, ") == std::string::npos);  // feature 2 alone there
  CHECK(page->body.find("class=\"t a20\" title=\"sat: #2: 3\"") != std::string::npos);
  CHECK(page->body.find("<a href=\"/features/1\">#1</a>") != std::string::npos);
  CHECK(page->body.find(">the <cat> sat</textarea>") == std::string::npos);
  CHECK(page->body.find(">the &lt;cat&gt; sat</textarea>") != std::string::npos);

  const auto api = handle_live_request(store, &live, "/api/infer", {{"text", "a b"}, {"feature", "1"}});
  REQUIRE(api.has_value());
  const auto j = nlohmann::json::parse(api->body);
  CHECK(j["tokens"] == nlohmann::json::array({"a", "b"}));
  CHECK(j["top"][1][0] == nlohmann::json::array({1, 2.0}));
  CHECK(j["feature"] == nlohmann::json::array({0.0, 2.0}));

  // a feature page shades the text for that feature, relative to its max activation (4)
  const auto feature = handle_live_request(store, &live, "/features/1", {{"text", "x y z"}});
  REQUIRE(feature.has_value());
  CHECK(feature->status == 200);
  CHECK(feature->body.find("JSON</a></div><section class=\"live\">") != std::string::npos);
  CHECK(feature->body.find("class=\"t a10\" title=\"y: 2\"") != std::string::npos);  // 2 / 4
  CHECK(feature->body.find("<span class=\"t\">x</span>") != std::string::npos);
  // and the pages without a text carry the text box
  CHECK(handle_live_request(store, &live, "/features/1", {})->body.find("<form class=\"live\"") !=
        std::string::npos);
  CHECK(handle_live_request(store, &live, "/", {})->body.find("action=\"/infer\"") !=
        std::string::npos);
  CHECK(handle_live_request(store, &live, "/infer", {})->status == 200);
  CHECK(!handle_live_request(store, &live, "/eval", {}).has_value());
  CHECK(!handle_live_request(store, &live, "/features/9", {}).has_value());  // the 404 stays

  // refusals: empty, too long, refused by the inference (400), cannot run (503), no model
  CHECK(handle_live_request(store, &live, "/infer", {{"text", ""}})->status == 400);
  const auto long_text = handle_live_request(store, &live, "/infer",
                                             {{"text", std::string(kMaxLiveTextBytes + 1, 'a')}});
  CHECK(long_text->status == 400);
  CHECK(long_text->body.find("2001 bytes, the limit is 2000") != std::string::npos);
  const auto refused = handle_live_request(store, &live, "/infer", {{"text", "refuse"}});
  CHECK(refused->status == 400);
  CHECK(refused->body.find("999 tokens, the limit is 256") != std::string::npos);
  CHECK(handle_live_request(store, &live, "/features/0", {{"text", "broken"}})->status == 503);
  CHECK(handle_live_request(store, &live, "/api/infer", {})->status == 400);
  CHECK(handle_live_request(store, &live, "/api/infer", {{"text", "a"}, {"feature", "7"}})->status ==
        400);
  const auto none = handle_live_request(store, nullptr, "/infer", {{"text", "a"}});
  CHECK(none->status == 503);
  CHECK(none->body.find("started without a model") != std::string::npos);
  CHECK(!handle_live_request(store, nullptr, "/", {}).has_value());
}
