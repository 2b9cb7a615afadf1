// Decoder geometry and logit lens against dense brute-force computations.
#include <catch2/catch.hpp>

#include <ATen/ATen.h>

#include "saes/analysis/geometry.h"
#include "saes/core/error.h"

TEST_CASE("max decoder cosine matches the dense similarity matrix in any chunking",
          "[analysis]") {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(7);
  at::Tensor w = at::randn({37, 8}, gen);
  w[5] = w[20] * 3.0;  // a duplicate direction
  const at::Tensor unit = w / w.norm(2, {1}, true);
  at::Tensor sim = unit.mm(unit.t());
  sim.fill_diagonal_(-2.0);
  const auto [ref_v, ref_i] = sim.max(1);
  for (std::int64_t chunk : {1, 5, 64}) {
    const auto r = saes::analysis::max_decoder_cosine(w, chunk);
    REQUIRE(r.cosine.size() == 37);
    for (std::int64_t i = 0; i < 37; ++i) {
      CHECK(r.cosine[static_cast<std::size_t>(i)] == Approx(ref_v[i].item<float>()).margin(1e-5));
      CHECK(r.index[static_cast<std::size_t>(i)] == ref_i[i].item<std::int64_t>());
    }
    CHECK(r.cosine[5] == Approx(1.0).margin(1e-5));
    CHECK(r.index[5] == 20);
  }
  CHECK(saes::analysis::max_decoder_cosine(at::ones({1, 4})).index[0] == -1);
}

TEST_CASE("logit lens lists the largest and smallest summed logits of each feature",
          "[analysis]") {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(8);
  const at::Tensor wd = at::randn({9, 6}, gen);
  const at::Tensor wd2 = at::randn({9, 6}, gen);
  const at::Tensor wu = at::randn({30, 6}, gen);
  // a nonlinear unembedding (normalize each row), so summing logits differs from summing rows
  const saes::analysis::ToLogits to_logits = [&](const at::Tensor& rows) {
    return (rows / rows.norm(2, {1}, true)).mm(wu.t());
  };
  for (const bool two : {false, true}) {
    INFO("terms " << (two ? 2 : 1));
    const std::vector<at::Tensor> terms = two ? std::vector<at::Tensor>{wd, wd2}
                                              : std::vector<at::Tensor>{wd};
    const auto lens = saes::analysis::logit_lens(terms, to_logits, 4, 2);
    const at::Tensor logits = two ? to_logits(wd) + to_logits(wd2) : to_logits(wd);
    REQUIRE(lens.size() == 9);
    for (std::int64_t i = 0; i < 9; ++i) {
      const auto& l = lens[static_cast<std::size_t>(i)];
      const auto [tv, ti] = logits[i].topk(4);
      const auto [bv, bi] = logits[i].topk(4, 0, false);
      for (std::int64_t k = 0; k < 4; ++k) {
        CHECK(l.top_tokens[static_cast<std::size_t>(k)] == ti[k].item<std::int64_t>());
        CHECK(l.bottom_tokens[static_cast<std::size_t>(k)] == bi[k].item<std::int64_t>());
        CHECK(l.top_values[static_cast<std::size_t>(k)] == Approx(tv[k].item<float>()));
        CHECK(l.bottom_values[static_cast<std::size_t>(k)] == Approx(bv[k].item<float>()));
      }
    }
  }
  CHECK_THROWS_AS(saes::analysis::logit_lens({wd, at::randn({9, 5})}, to_logits, 4),
                  saes::DataError);
  CHECK_THROWS_AS(saes::analysis::logit_lens({}, to_logits, 4), saes::DataError);
}
