// Activation functions, loss values against hand computations, checkpoints, folding and config
// validation of the SAE/transcoder (spec §2.1, §2.2, §3).
#include "saes/dictionaries/sae.h"

#include <cmath>

#include <ATen/ATen.h>
#include <catch2/catch.hpp>

#include "saes/core/error.h"
#include "saes/dictionaries/activation_functions.h"
#include "saes/dictionaries/registry.h"

#include "support/temp_dir.h"

namespace sd = saes::dictionaries;

namespace {

sd::SparseDictionaryConfig small_cfg(sd::ActFn act = sd::ActFn::kRelu) {
  sd::SparseDictionaryConfig cfg;
  cfg.d_model = 8;
  cfg.expansion_factor = 4.0;
  cfg.act_fn = act;
  cfg.top_k = 4;
  cfg.hook_point_in = "blocks.1.hook_resid_post";
  cfg.hook_point_out = "blocks.1.hook_resid_post";
  return cfg;
}

sd::SparseAutoEncoder random_sae(const sd::SparseDictionaryConfig& cfg, std::uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  sd::SparseAutoEncoder sae(cfg);
  sae.init_parameters({0.5, 0.5, std::log(0.2)}, gen);
  for (auto& p : sae.parameters()) {
    if (p.name == "b_E" || p.name == "b_D") p.value.normal_(0, 0.1, gen);
  }
  return sae;
}

}  // namespace

TEST_CASE("ReLU and JumpReLU keep exactly the entries above 0 and above theta", "[dictionaries]") {
  const at::Tensor s = at::tensor({-1.0, 0.05, 0.2, 3.0}).reshape({1, 4});
  const at::Tensor logt = at::log(at::tensor({0.1, 0.1, 0.3, 0.3}));
  CHECK(at::equal(sd::apply_activation(sd::ActFn::kRelu, s, {}, 0),
                  at::tensor({0.0, 0.05, 0.2, 3.0}).reshape({1, 4})));
  CHECK(at::equal(sd::apply_activation(sd::ActFn::kJumpRelu, s, logt, 0),
                  at::tensor({0.0, 0.0, 0.0, 3.0}).reshape({1, 4})));
}

TEST_CASE("TopK keeps exactly k nonzeros per row and BatchTopK k*rows in total", "[dictionaries]") {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(1);
  const at::Tensor s = at::randn({16, 64}, gen) + 3.0;  // all positive: exactly k survive
  const at::Tensor f = sd::apply_activation(sd::ActFn::kTopK, s, {}, 5);
  CHECK(at::equal((f != 0).sum(1), at::full({16}, 5, at::kLong)));
  // the kept entries are the row maxima
  CHECK(at::equal(std::get<0>(f.max(1)), std::get<0>(s.max(1))));
  const at::Tensor b = sd::apply_activation(sd::ActFn::kBatchTopK, s, {}, 5);
  CHECK((b != 0).sum().item<std::int64_t>() == 5 * 16);
  CHECK(b.min().item<double>() >= 0);
  const at::Tensor kept = b.masked_select(b != 0);
  CHECK(kept.min().item<double>() >= s.masked_select(b == 0).max().item<double>());
  // negative rows keep fewer than k (TopK applies ReLU first, spec §3.3)
  const at::Tensor neg = -at::ones({2, 6});
  CHECK((sd::apply_activation(sd::ActFn::kTopK, neg, {}, 3) != 0).sum().item<int>() == 0);
}

TEST_CASE("JumpReLU threshold gradient follows the rectangle STE formula", "[dictionaries]") {
  const double eps = 0.5;
  const at::Tensor logt = at::log(at::tensor({0.4, 1.0}, at::kDouble));
  const at::Tensor s = at::tensor({0.3, 0.9, 0.7, 1.3, -0.1, 1.2}, at::kDouble).reshape({3, 2});
  const at::Tensor g = at::tensor({1.0, 2.0, 3.0, 4.0, 5.0, 6.0}, at::kDouble).reshape({3, 2});
  const at::Tensor got = sd::jumprelu_log_threshold_grad(g, s, logt, eps);
  // feature 0 (θ=0.4, window (0.15,0.65)): rows with s=0.3 → g=1; s=0.7 no; s=-0.1 no (s≤0)
  // feature 1 (θ=1.0, window (0.75,1.25)): s=0.9 → 2; s=1.3 no; s=1.2 → 6
  const double t0 = 0.4, t1 = 1.0;
  CHECK(got[0].item<double>() == Approx(t0 * (-t0 / eps) * 1.0));
  CHECK(got[1].item<double>() == Approx(t1 * (-t1 / eps) * (2.0 + 6.0)));
}

TEST_CASE("loss terms match a hand computation", "[dictionaries]") {
  sd::SparseDictionaryConfig cfg;
  cfg.d_model = 2;
  cfg.expansion_factor = 1.0;
  cfg.norm_activation = sd::NormActivation::kInference;
  cfg.use_decoder_bias = false;
  cfg.hook_point_in = cfg.hook_point_out = "h";
  sd::SparseAutoEncoder sae(cfg);
  for (auto& p : sae.parameters()) {
    if (p.name == "W_E") p.value.copy_(at::eye(2));
    if (p.name == "W_D") p.value.copy_(at::eye(2) * 2);  // n = 2
  }
  const at::Tensor x = at::tensor({1.0f, -1.0f, 0.5f, 2.0f}).reshape({2, 2});
  // f = [[1,0],[0.5,2]], x̂ = 2f, r = x̂ − x = [[1,1],[0.5,2]] ⇒ Σ_d r² = 2, 4.25
  sd::LossSettings ls;
  ls.l1_coefficient = 0.5;
  ls.tanh_stretch_coefficient = 1.0;
  ls.frequency_scale = 0.1;
  SECTION("reconstruction and power (p=1, decoder-norm weighted)") {
    ls.sparsity = sd::SparsityPenalty::kPower;
    const auto r = sae.forward_backward(sd::single_hook_batch(sae.config(), x, x), ls);
    CHECK(r.l_rec == Approx(3.125));
    CHECK(r.l_sparsity == Approx(0.5 * (2.0 + 5.0) / 2));  // u = f·n = [[2,0],[1,4]]
    CHECK(r.l0 == Approx(1.5));
    CHECK(r.loss == Approx(r.l_rec + r.l_sparsity));
  }
  SECTION("masked tokens drop out of the mean") {
    const auto r = sae.forward_backward(
        sd::single_hook_batch(sae.config(), x, x, at::tensor({0, 1}).to(at::kBool)), ls);
    CHECK(r.l_rec == Approx(4.25));
    CHECK(r.n_tokens == 1.0);
  }
  SECTION("tanh") {
    ls.sparsity = sd::SparsityPenalty::kTanh;
    const auto r = sae.forward_backward(sd::single_hook_batch(sae.config(), x, x), ls);
    CHECK(r.l_sparsity ==
          Approx(0.5 * (std::tanh(2.0) + std::tanh(1.0) + std::tanh(4.0)) / 2).epsilon(1e-6));
  }
  SECTION("tanh-quad is a batch-level scalar") {
    ls.sparsity = sd::SparsityPenalty::kTanhQuad;
    const auto r = sae.forward_backward(sd::single_hook_batch(sae.config(), x, x), ls);
    const double p0 = (std::tanh(2.0) + std::tanh(1.0)) / 2, p1 = std::tanh(4.0) / 2;
    CHECK(r.l_sparsity == Approx(0.5 * (p0 * (1 + p0 / 0.1) + p1 * (1 + p1 / 0.1))).epsilon(1e-6));
  }
}

TEST_CASE("save then load gives bitwise equal parameters, norms and fold state", "[dictionaries]") {
  saes::testing::TempDir dir;
  for (auto act : {sd::ActFn::kJumpRelu, sd::ActFn::kTopK}) {
    auto cfg = small_cfg(act);
    cfg.use_glu_encoder = act == sd::ActFn::kTopK;
    auto a = random_sae(cfg, 3);
    a.set_dataset_norm(cfg.hook_point_in, 12.5);
    a.save(dir / "sae.safetensors");
    sd::SparseAutoEncoder b(cfg);
    b.load(dir / "sae.safetensors");
    auto pa = a.parameters(), pb = b.parameters();
    REQUIRE(pa.size() == pb.size());
    for (std::size_t i = 0; i < pa.size(); ++i) CHECK(at::equal(pa[i].value, pb[i].value));
    CHECK(b.dataset_norm(cfg.hook_point_in) == 12.5);
    CHECK(!b.folded());
    a.fold_activation_scale();
    a.save(dir / "folded.safetensors");
    sd::SparseAutoEncoder c(cfg);  // config still says dataset-wise: metadata wins (spec §2.1 fix)
    c.load(dir / "folded.safetensors");
    CHECK(c.folded());
    CHECK(c.config().norm_activation == sd::NormActivation::kInference);
  }
}

TEST_CASE("load rejects shape mismatches and unexpected tensors", "[dictionaries]") {
  saes::testing::TempDir dir;
  auto a = random_sae(small_cfg(sd::ActFn::kJumpRelu), 1);
  a.save(dir / "j.safetensors");
  sd::SparseAutoEncoder relu(small_cfg());
  CHECK_THROWS_WITH(relu.load(dir / "j.safetensors"),
                    Catch::Contains("activation_function.log_jumprelu_threshold"));
  auto wide = small_cfg(sd::ActFn::kJumpRelu);
  wide.expansion_factor = 2.0;
  sd::SparseAutoEncoder w(wide);
  CHECK_THROWS_WITH(w.load(dir / "j.safetensors"),
                    Catch::Contains("W_E") && Catch::Contains("8x32"));
}

TEST_CASE("folding is idempotent and the folded model on raw inputs equals the unfolded one",
          "[dictionaries]") {
  for (auto act : {sd::ActFn::kRelu, sd::ActFn::kJumpRelu, sd::ActFn::kTopK}) {
    for (bool gating : {true, false}) {
      auto cfg = small_cfg(act);
      cfg.sparsity_include_decoder_norm = gating;
      cfg.hook_point_out = "blocks.1.hook_mlp_out";
      cfg.use_glu_encoder = act == sd::ActFn::kRelu;
      cfg.dtype = saes::DType::kFloat64;
      auto sae = random_sae(cfg, 5);
      sae.set_dataset_norm(cfg.hook_point_in, 3.0);
      sae.set_dataset_norm(cfg.hook_point_out, 0.5);
      auto gen = at::make_generator<at::CPUGeneratorImpl>(9);
      const at::Tensor x = at::randn({10, 8}, gen, at::kDouble) * 0.4;
      const double f_out = std::sqrt(8.0) / 0.5, f_in = std::sqrt(8.0) / 3.0;
      const at::Tensor f_ref = sae.encode(sae.normalize(x, cfg.hook_point_in));
      const at::Tensor raw_ref = sae.decode(f_ref) / f_out;
      std::vector<at::Tensor> before;
      for (auto& p : sae.parameters()) before.push_back(p.value.clone());
      sae.fold_activation_scale();
      sae.fold_activation_scale();  // no-op
      CHECK(sae.folded());
      const at::Tensor f = sae.encode(sae.normalize(x, cfg.hook_point_in));
      CHECK(at::allclose(f, f_ref / f_in, 1e-10, 1e-12));
      CHECK(at::allclose(sae.decode(f), raw_ref, 1e-10, 1e-12));
      sae.unfold_activation_scale();
      sae.unfold_activation_scale();
      auto params = sae.parameters();
      for (std::size_t i = 0; i < params.size(); ++i) {
        CHECK(at::allclose(params[i].value, before[i], 1e-12, 1e-14));
      }
    }
  }
}

TEST_CASE("bad configs and inputs are rejected with messages naming the field or shapes",
          "[dictionaries]") {
  auto cfg = small_cfg(sd::ActFn::kTopK);
  cfg.top_k = 33;
  CHECK_THROWS_WITH(sd::SparseAutoEncoder(cfg), Catch::Contains("top_k") && Catch::Contains("32"));
  cfg = small_cfg(sd::ActFn::kLayerTopK);
  CHECK_THROWS_AS(sd::SparseAutoEncoder(cfg), saes::ConfigError);
  cfg = small_cfg();
  cfg.sae_type = sd::SaeType::kCrosscoder;  // without hook_points
  CHECK_THROWS_WITH(sd::make_dictionary(cfg), Catch::Contains("hook_points"));
  auto sae = random_sae(small_cfg(), 1);
  sae.set_dataset_norm("blocks.1.hook_resid_post", 2.0);
  const at::Tensor x = at::randn({3, 7});
  CHECK_THROWS_WITH(sae.forward_backward(sd::single_hook_batch(sae.config(), x, x), {}),
                    Catch::Contains("[3, 7]") && Catch::Contains("d_model=8"));
  auto no_norm = random_sae(small_cfg(), 1);
  CHECK_THROWS_AS(
      no_norm.forward_backward(
          sd::single_hook_batch(no_norm.config(), at::randn({3, 8}), at::randn({3, 8})), {}),
      saes::ConfigError);
}

TEST_CASE("dataset norm is the mean token norm over batches", "[dictionaries]") {
  const at::Tensor a = at::tensor({3.0, 4.0, 0.0, 0.0}).reshape({2, 2});
  const at::Tensor b = at::tensor({0.0, 1.0}).reshape({1, 2});
  CHECK(sd::average_activation_norm({a, b}) == Approx((5.0 + 0.0 + 1.0) / 3));
}
