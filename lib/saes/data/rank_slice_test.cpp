// Tests of slice_for_rank: the ranks' slices tile the global batch in rank order (also when the
// rows do not divide), masks and tokens follow their rows, and mismatched tensors are rejected.
#include "saes/data/rank_slice.h"

#include <ATen/ATen.h>
#include <catch2/catch.hpp>

#include "saes/core/error.h"

namespace saes::data {
namespace {

ActivationBatch global_batch(std::int64_t rows) {
  ActivationBatch b;
  b.acts["h"] = at::arange(rows * 3, at::kFloat).reshape({rows, 3});
  b.tokens = at::arange(rows, at::kLong);
  b.n_tokens = rows;
  return b;
}

TEST_CASE("rank slices tile the global batch in rank order", "[data][distributed]") {
  const ActivationBatch g = global_batch(10);
  std::vector<at::Tensor> parts;
  std::int64_t tokens = 0;
  for (int r = 0; r < 3; ++r) {
    const ActivationBatch s = slice_for_rank(g, r, 3);
    CHECK(s.tokens.size(0) == s.acts.at("h").size(0));
    parts.push_back(s.acts.at("h"));
    tokens += s.n_tokens;
  }
  CHECK(parts[0].size(0) == 3);
  CHECK(parts[2].size(0) == 4);
  CHECK(tokens == 10);
  CHECK(at::equal(at::cat(parts), g.acts.at("h")));
}

TEST_CASE("a 2-D batch is sliced by sequences with its mask", "[data][distributed]") {
  ActivationBatch g;
  g.acts["h"] = at::randn({4, 5, 2});
  g.tokens = at::zeros({4, 5}, at::kLong);
  g.mask = at::arange(5).lt(3).unsqueeze(0).expand({4, 5}).contiguous();
  g.n_tokens = 20;
  const ActivationBatch s = slice_for_rank(g, 1, 2);
  CHECK(s.acts.at("h").sizes() == at::IntArrayRef({2, 5, 2}));
  CHECK(at::equal(s.acts.at("h"), g.acts.at("h").narrow(0, 2, 2)));
  CHECK(s.mask.sizes() == at::IntArrayRef({2, 5}));
  CHECK(s.n_tokens == 10);
}

TEST_CASE("slicing rejects a bad rank and tensors of different lengths", "[data][distributed]") {
  ActivationBatch g = global_batch(4);
  CHECK_THROWS_AS(slice_for_rank(g, 2, 2), ConfigError);
  g.mask = at::ones({3}, at::kBool);
  CHECK_THROWS_AS(slice_for_rank(g, 0, 2), DataError);
}

}  // namespace
}  // namespace saes::data
