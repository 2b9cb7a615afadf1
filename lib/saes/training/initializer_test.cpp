// Initializer (spec §4): grids, seeded random init, transpose init and the grid search.
#include "saes/training/initializer.h"

#include <cmath>
#include <cstdio>

#include <ATen/ATen.h>
#include <catch2/catch.hpp>

#include "saes/core/error.h"
#include "saes/core/logging.h"
#include "saes/dictionaries/sae.h"

namespace sd = saes::dictionaries;
namespace st = saes::training;

namespace {
sd::SparseDictionaryConfig cfg_for(sd::ActFn act) {
  sd::SparseDictionaryConfig cfg;
  cfg.d_model = 16;
  cfg.expansion_factor = 4.0;
  cfg.act_fn = act;
  cfg.top_k = 4;
  cfg.hook_point_in = cfg.hook_point_out = "blocks.0.hook_resid_post";
  return cfg;
}
}  // namespace

TEST_CASE("norm grids are linspace(0.1, 5, 50) and linspace(v - 0.09, v + 0.1, 20)",
          "[dictionaries]") {
  const auto coarse = st::coarse_norm_grid();
  REQUIRE(coarse.size() == 50);
  CHECK(coarse.front() == Approx(0.1));
  CHECK(coarse[1] == Approx(0.2));
  CHECK(coarse.back() == Approx(5.0));
  const auto fine = st::fine_norm_grid(1.0);
  REQUIRE(fine.size() == 20);
  CHECK(fine.front() == Approx(0.91));
  CHECK(fine[1] == Approx(0.92));
  CHECK(fine.back() == Approx(1.1));
}

TEST_CASE("initializer is seeded, transposes W_D and needs a JumpReLU threshold value",
          "[dictionaries]") {
  st::InitializerConfig icfg;
  icfg.init_encoder_with_decoder_transpose_factor = 0.5;
  sd::SparseAutoEncoder a(cfg_for(sd::ActFn::kRelu)), b(cfg_for(sd::ActFn::kRelu));
  auto g1 = at::make_generator<at::CPUGeneratorImpl>(42);
  auto g2 = at::make_generator<at::CPUGeneratorImpl>(42);
  st::initialize_parameters(a, icfg, g1);
  st::initialize_parameters(b, icfg, g2);
  CHECK(at::equal(a.W_D(), b.W_D()));
  CHECK(at::equal(a.W_E(), a.W_D().t() * 0.5));
  CHECK(a.W_D().abs().max().item<double>() <= 1.0);
  sd::SparseAutoEncoder j(cfg_for(sd::ActFn::kJumpRelu));
  CHECK_THROWS_AS(st::initialize_parameters(j, icfg, g1), saes::ConfigError);
  icfg.init_log_jumprelu_threshold_value = std::log(0.1);
  st::initialize_parameters(j, icfg, g1);
  CHECK(j.log_jumprelu_threshold()[3].item<double>() == Approx(std::log(0.1)));
}

TEST_CASE("grid search picks a decoder norm no worse than the coarse grid and sets biases",
          "[dictionaries]") {
  st::InitializerConfig icfg;
  icfg.grid_search_init_norm = true;
  icfg.bias_init_method = st::BiasInitMethod::kGeometricMedian;
  icfg.init_encoder_bias_with_mean_hidden_pre = true;
  sd::SparseAutoEncoder sae(cfg_for(sd::ActFn::kTopK));
  auto gen = at::make_generator<at::CPUGeneratorImpl>(1);
  st::initialize_parameters(sae, icfg, gen);
  const at::Tensor x = at::randn({64, 16}, gen) * 3 + 1;
  sae.set_dataset_norm("blocks.0.hook_resid_post", sd::average_activation_norm({x}));
  saes::Logger logger(saes::LogLevel::kWarn, stderr);
  const double best =
      st::initialization_search(sae, icfg, {{"blocks.0.hook_resid_post", x}}, logger);
  CHECK(best > 0.0);
  CHECK(at::allclose(sae.decoder_norm(), at::full({64}, best), 1e-4, 1e-5));
  const at::Tensor xn = sae.normalize(x, "blocks.0.hook_resid_post");
  CHECK(at::allclose(sae.b_D(), xn.mean(0), 1e-4, 1e-5));
  CHECK(at::allclose(sae.b_E(), -(at::mm(xn, sae.W_E())).mean(0), 1e-3, 1e-4));
  const double chosen = sae.reconstruction_loss(xn, xn, 4);
  sae.set_decoder_to_fixed_norm(5.0, true);
  sae.init_encoder_with_decoder_transpose(1.0);
  CHECK(chosen <= sae.reconstruction_loss(xn, xn, 4) + 1e-6);
}
