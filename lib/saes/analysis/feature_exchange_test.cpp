// FeatureStats encoding: an exact round trip of every field, and one-line errors for truncated
// or padded encodings.
#include "saes/analysis/feature_exchange.h"

#include <catch2/catch.hpp>

#include "saes/core/error.h"

namespace saes::analysis {
namespace {

std::vector<FeatureStats> sample_features() {
  FeatureStats a;
  a.act_times = 12;
  a.max_act = 3.25;
  a.mean_act = 1.0 / 3.0;
  a.histogram = {0, 4, 8};
  SampledContext c;
  c.score = 2.5f;
  c.provenance = {41, 1};
  c.offset = 7;
  c.tokens = {5, 6, 7};
  c.positions = {0, 2};
  c.values = {0.5f, 2.5f};
  a.samples = {{c, c}, {}};
  FeatureStats never;  // a dead feature: no histogram entries, empty bands
  never.samples = {{}, {}};
  return {a, never};
}

}  // namespace

TEST_CASE("feature statistics survive encoding exactly", "[analysis]") {
  const std::vector<FeatureStats> in = sample_features();
  const std::vector<FeatureStats> out = decode_feature_stats(encode_feature_stats(in));
  REQUIRE(out.size() == 2);
  CHECK(out[0].act_times == 12);
  CHECK(out[0].max_act == 3.25);
  CHECK(out[0].mean_act == 1.0 / 3.0);
  CHECK(out[0].histogram == in[0].histogram);
  REQUIRE(out[0].samples.size() == 2);
  REQUIRE(out[0].samples[0].size() == 2);
  const SampledContext& c = out[0].samples[0][1];
  CHECK(c.score == 2.5f);
  CHECK(c.provenance == Provenance{41, 1});
  CHECK(c.offset == 7);
  CHECK(c.tokens == std::vector<std::int32_t>{5, 6, 7});
  CHECK(c.positions == std::vector<std::int32_t>{0, 2});
  CHECK(c.values == std::vector<float>{0.5f, 2.5f});
  CHECK(out[0].samples[1].empty());
  CHECK(out[1].act_times == 0);
  CHECK(out[1].samples.size() == 2);
  CHECK(decode_feature_stats(encode_feature_stats({})).empty());
}

TEST_CASE("a truncated or padded feature encoding is a DataError", "[analysis]") {
  const std::string bytes = encode_feature_stats(sample_features());
  for (std::size_t cut : {std::size_t{3}, bytes.size() / 2, bytes.size() - 1}) {
    CHECK_THROWS_AS(decode_feature_stats(std::string_view(bytes).substr(0, cut)), DataError);
  }
  CHECK_THROWS_WITH(decode_feature_stats(bytes + "x"), Catch::Contains("trailing"));
}

}  // namespace saes::analysis
