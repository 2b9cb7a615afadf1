// CrossCoder against plain formulas (float64): a = Σ_h (x_h W_E[h] + b_E[h]), f_h = a·mask(a·n_h),
// x̂_h = f_h W_D[h] + b_D[h], the loss averaged over heads and masked tokens, through autograd —
// for every activation × penalty × mask, with L_p. Also: masked batches (the original's
// mask-shape bug), the exact fold, checkpoint names/shapes, decoder geometry and bad configs.
#include "saes/dictionaries/crosscoder.h"

#include <cmath>
#include <map>

#include <ATen/ATen.h>
#include <catch2/catch.hpp>

#include "saes/core/error.h"
#include "saes/dictionaries/activation_functions.h"
#include "saes/dictionaries/registry.h"
#include "saes/io/safetensors.h"

#include "support/reference_losses.h"
#include "support/temp_dir.h"

namespace sd = saes::dictionaries;

namespace {

constexpr std::int64_t kD = 4, kH = 3, kS = 8;

sd::SparseDictionaryConfig cc_cfg(sd::ActFn act) {
  sd::SparseDictionaryConfig cfg;
  cfg.sae_type = sd::SaeType::kCrosscoder;
  cfg.d_model = kD;
  cfg.expansion_factor = 2.0;
  cfg.act_fn = act;
  cfg.top_k = 3;
  cfg.jumprelu_threshold_window = 0.6;
  cfg.hook_points = {"blocks.1.hook_resid_post", "blocks.2.hook_resid_post",
                     "blocks.3.hook_resid_post"};
  cfg.dtype = saes::DType::kFloat64;
  return cfg;
}

using Params = std::map<std::string, at::Tensor>;

at::Tensor reference_loss(const Params& P, const sd::SparseDictionaryConfig& cfg,
                          const at::Tensor& x /*[N,H,d]*/, const at::Tensor& mask,
                          const sd::LossSettings& ls) {
  const bool jump = cfg.act_fn == sd::ActFn::kJumpRelu;
  const at::Tensor n = at::linalg_vector_norm(P.at("W_D"), 2, {2});  // [H, S]
  at::Tensor a = P.at("b_E").sum(0);
  for (std::int64_t h = 0; h < kH; ++h) a = a + at::mm(x.select(1, h), P.at("W_E")[h]);
  const at::Tensor logt = jump ? P.at("activation_function.log_jumprelu_threshold") : at::Tensor();
  const std::int64_t N = x.size(0);
  const at::Tensor w = mask.defined()
                           ? (mask.to(at::kDouble) / mask.to(at::kDouble).sum()).unsqueeze(1)
                           : at::full({N, 1}, 1.0 / N, x.options());
  at::Tensor loss = at::zeros({}, x.options());
  for (std::int64_t h = 0; h < kH; ++h) {
    const at::Tensor s = a * n[h];
    at::Tensor f;
    if (cfg.act_fn == sd::ActFn::kRelu) {
      f = at::relu(a);
    } else {
      const at::Tensor A =
          sd::activation_mask(cfg.act_fn, s.detach(), jump ? logt.detach() : logt, ls.current_k)
              .to(at::kDouble);
      const at::Tensor sig =
          jump ? saes::testing::reference_jumprelu_ste(s, A, logt, cfg.jumprelu_threshold_window)
               : s * A;
      f = sig / n[h];
    }
    const at::Tensor xhat = at::mm(f, P.at("W_D")[h]) + P.at("b_D")[h];
    loss = loss + ((xhat - x.select(1, h)).pow(2).sum(1, true) * w).sum() / kH;
    loss = loss + saes::testing::reference_penalty(ls, f * n[h], w, ls.l1_coefficient / kH);
    if (jump && ls.lp_coefficient > 0) {
      loss = loss +
             ls.lp_coefficient / kH * ((at::relu(at::exp(logt) - a) * n[h]).sum(1, true) * w).sum();
    }
  }
  return loss;
}

sd::CrossCoder random_cc(const sd::SparseDictionaryConfig& cfg, std::uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  sd::CrossCoder m(cfg);
  m.init_parameters({0.7, 0.7, std::log(0.3)}, gen);
  for (auto& p : m.parameters()) {  // heads made different, biases non-zero
    if (p.name == "W_E" || p.name == "W_D")
      p.value.add_(at::randn(p.value.sizes(), gen, p.value.options()) * 0.3);
    if (p.name == "b_E" || p.name == "b_D") p.value.normal_(0, 0.2, gen);
    if (p.group == sd::ParamGroup::kJumpRelu) p.value.normal_(std::log(0.3), 0.3, gen);
  }
  return m;
}

sd::TrainBatch batch_of(const sd::SparseDictionaryConfig& cfg, const at::Tensor& x) {
  sd::TrainBatch b;
  for (std::int64_t h = 0; h < kH; ++h) b.acts[cfg.hook_points[h]] = x.select(1, h).contiguous();
  return b;
}

}  // namespace

TEST_CASE(
    "crosscoder manual backward (dense and sparse step) equals autograd of the plain formulas",
    "[dictionaries][crosscoder]") {
  const auto act =
      GENERATE(sd::ActFn::kRelu, sd::ActFn::kJumpRelu, sd::ActFn::kTopK, sd::ActFn::kBatchTopK);
  const auto penalty = GENERATE(sd::SparsityPenalty::kNone, sd::SparsityPenalty::kPower,
                                sd::SparsityPenalty::kTanh, sd::SparsityPenalty::kTanhQuad);
  const bool masked = GENERATE(false, true);
  const std::int64_t p = GENERATE(1, 2);
  const auto kernels = GENERATE(sd::SparseKernels::kOff, sd::SparseKernels::kOn);
  if (p == 2 && penalty != sd::SparsityPenalty::kPower) return;
  INFO("act " << static_cast<int>(act) << " penalty " << static_cast<int>(penalty) << " p " << p
              << " masked " << masked << " kernels " << static_cast<int>(kernels));
  auto cfg = cc_cfg(act);
  cfg.sparse_kernels = kernels;
  auto m = random_cc(cfg, 11);
  CHECK(m.uses_sparse_step(3) == (kernels == sd::SparseKernels::kOn && sd::is_topk_family(act)));
  const std::vector<double> norms = {1.7, 0.9, 2.5};
  for (std::int64_t h = 0; h < kH; ++h) m.set_dataset_norm(m.config().hook_points[h], norms[h]);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(3);
  const std::int64_t N = 9;
  const at::Tensor x = at::randn({N, kH, kD}, gen, at::kDouble);
  sd::TrainBatch batch = batch_of(m.config(), x);
  // a 1-D token mask: the original's crosscoder fails its mask-shape check here (spec §2.3)
  if (masked) batch.mask = at::tensor({1, 1, 0, 1, 1, 1, 0, 1, 1}).to(at::kBool);
  sd::LossSettings ls;
  ls.sparsity = penalty;
  ls.p = p;
  ls.l1_coefficient = 0.7;
  ls.tanh_stretch_coefficient = 1.5;
  ls.frequency_scale = 0.3;
  ls.lp_coefficient = act == sd::ActFn::kJumpRelu ? 0.2 : 0.0;
  const sd::StepResult res = m.forward_backward(batch, ls);

  Params P;
  for (auto& prm : m.parameters()) P[prm.name] = prm.value.detach().clone().requires_grad_(true);
  sd::LossSettings ref_ls = ls;
  ref_ls.current_k = m.config().top_k;
  const at::Tensor xn = m.prepare_input(batch.acts);
  const at::Tensor loss = reference_loss(P, m.config(), xn, batch.mask, ref_ls);
  loss.backward();
  CHECK(res.loss == Approx(loss.item<double>()).epsilon(1e-10));
  CHECK(res.l0 > 0);
  CHECK(res.reconstructed.sizes() == at::IntArrayRef({kH, N, kD}));
  {  // per-head metrics from encode/decode: Σ_d (x̂_h − y_h)² and active features, token means
    const at::Tensor f = m.encode(xn, m.config().top_k);
    const at::Tensor r = m.decode(f) - m.prepare_label(batch.acts);  // [H, N, d]
    const at::Tensor w =
        batch.mask.defined() ? batch.mask.to(at::kDouble) : at::ones({N}, at::kDouble);
    REQUIRE(res.metrics.size() == 2 * kH);
    for (std::int64_t h = 0; h < kH; ++h) {
      const std::string prefix = "crosscoder_metrics/" + m.config().hook_points[h];
      const double l_rec = ((r[h] * r[h]).sum(1) * w).sum().item<double>() / w.sum().item<double>();
      const double l0 = (f.select(1, h).gt(0).sum(1).to(at::kDouble) * w).sum().item<double>() /
                        w.sum().item<double>();
      CHECK(res.metrics.at(prefix + "/l_rec") == Approx(l_rec).epsilon(1e-10));
      CHECK(res.metrics.at(prefix + "/l0") == Approx(l0).epsilon(1e-12));
    }
  }
  for (auto& prm : m.parameters()) {
    INFO("parameter " << prm.name);
    const at::Tensor ref = P.at(prm.name).grad();
    REQUIRE(ref.defined());
    const double scale = ref.abs().max().item<double>() + 1e-12;
    CHECK((prm.grad - ref).abs().max().item<double>() / scale < 1e-9);
  }
}

TEST_CASE("crosscoder encode/decode, per-head gating and decoder geometry",
          "[dictionaries][crosscoder]") {
  auto m = random_cc(cc_cfg(sd::ActFn::kTopK), 5);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(6);
  const at::Tensor x = at::randn({7, kH, kD}, gen, at::kDouble);
  const at::Tensor f = m.encode(x);
  REQUIRE(f.sizes() == at::IntArrayRef({7, kH, kS}));
  at::Tensor a = m.b_E().sum(0);
  for (std::int64_t h = 0; h < kH; ++h) a = a + at::mm(x.select(1, h), m.W_E()[h]);
  CHECK(at::allclose(m.hidden_pre(x), a, 1e-12, 1e-12));
  const at::Tensor n = at::linalg_vector_norm(m.W_D(), 2, {2});
  bool heads_differ = false;
  for (std::int64_t h = 0; h < kH; ++h) {
    const at::Tensor s = a * n[h];
    const at::Tensor picked = std::get<1>(at::topk(s, 3, 1));
    const at::Tensor kept = at::zeros_like(s).scatter(1, picked, 1.0) * (s > 0);
    CHECK(at::allclose(f.select(1, h), a * kept, 1e-12, 1e-12));
    heads_differ = heads_differ || !at::equal(f.select(1, h).ne(0), f.select(1, 0).ne(0));
    CHECK(at::allclose(m.decode(f)[h], at::mm(f.select(1, h), m.W_D()[h]) + m.b_D()[h], 1e-12,
                       1e-12));
  }
  CHECK(heads_differ);  // per-head gating selects different features
  CHECK(at::equal(m.analysis_features(f), std::get<0>(f.max(1))));
  const at::Tensor ip = m.decoder_inner_products(), cs = m.decoder_similarities();
  REQUIRE(ip.sizes() == at::IntArrayRef({kS, kH, kH}));
  CHECK(ip[2][0][1].item<double>() == Approx(at::dot(m.W_D()[0][2], m.W_D()[1][2]).item<double>()));
  CHECK(cs[2][0][1].item<double>() ==
        Approx((at::dot(m.W_D()[0][2], m.W_D()[1][2]) / (n[0][2] * n[1][2])).item<double>()));
  CHECK(at::allclose(at::diagonal(cs, 0, 1, 2), at::ones({kS, kH}, at::kDouble), 1e-12, 1e-12));
  const sd::DecoderHeadSimilarities sims = m.decoder_head_similarities();  // what analysis stores
  CHECK(at::equal(sims.inner_products, ip));
  CHECK(at::equal(sims.cosines, cs));
  CHECK(at::allclose(m.target_decoder_norms(), n.t(), 1e-12, 1e-12));
  CHECK(at::equal(m.feature_directions(), m.W_D()[kH - 1]));
  // all heads start identical (spec §2.3)
  sd::CrossCoder fresh(cc_cfg(sd::ActFn::kTopK));
  auto g2 = at::make_generator<at::CPUGeneratorImpl>(1);
  fresh.init_parameters({0.5, 0.5, {}}, g2);
  CHECK(at::equal(fresh.W_D()[0], fresh.W_D()[2]));
  CHECK(at::equal(fresh.W_E()[1], fresh.W_E()[2]));
  fresh.set_decoder_to_fixed_norm(0.25, true);
  CHECK(at::allclose(fresh.decoder_norm(), at::full({kH, kS}, 0.25, at::kDouble), 1e-12, 1e-12));
}

TEST_CASE("crosscoder fold is exact; checkpoints keep the original's names",
          "[dictionaries][crosscoder]") {
  for (const auto act : {sd::ActFn::kRelu, sd::ActFn::kTopK, sd::ActFn::kBatchTopK}) {
    INFO("act " << static_cast<int>(act));
    auto m = random_cc(cc_cfg(act), 9);
    const std::vector<double> norms = {3.5, 0.6, 1.2};
    for (std::int64_t h = 0; h < kH; ++h) m.set_dataset_norm(m.config().hook_points[h], norms[h]);
    auto gen = at::make_generator<at::CPUGeneratorImpl>(13);
    const at::Tensor raw = at::randn({12, kH, kD}, gen, at::kDouble) * 2.0;
    const sd::TrainBatch b = batch_of(m.config(), raw);
    const at::Tensor xn = m.prepare_input(b.acts);
    const at::Tensor f = m.encode(xn);
    at::Tensor want = m.decode(f);
    for (std::int64_t h = 0; h < kH; ++h) {
      want[h].div_(m.dataset_scale(m.config().hook_points[h]));
    }
    m.fold_activation_scale();
    const at::Tensor x_raw = m.prepare_input(b.acts);  // inference: the raw stack
    CHECK(at::allclose(x_raw, raw, 0, 0));
    const at::Tensor f_raw = m.encode(x_raw);
    CHECK(at::equal(f_raw.ne(0), f.ne(0)));
    CHECK(at::allclose(m.decode(f_raw), want, 1e-10, 1e-12));
  }
  // JumpReLU: shared thresholds fold with one scale; distinct scales are refused
  auto jr = random_cc(cc_cfg(sd::ActFn::kJumpRelu), 2);
  for (const auto& h : jr.config().hook_points) jr.set_dataset_norm(h, 2.0);
  auto gx = at::make_generator<at::CPUGeneratorImpl>(21);
  const at::Tensor x = at::randn({10, kH, kD}, gx, at::kDouble);
  const at::Tensor xn = jr.prepare_input(batch_of(jr.config(), x).acts);
  const at::Tensor f = jr.encode(xn);
  const at::Tensor want = jr.decode(f) / jr.dataset_scale(jr.config().hook_points[0]);
  jr.fold_activation_scale();
  CHECK(at::allclose(jr.decode(jr.encode(x)), want, 1e-10, 1e-12));
  auto jr2 = random_cc(cc_cfg(sd::ActFn::kJumpRelu), 2);
  jr2.set_dataset_norm(jr2.config().hook_points[0], 2.0);
  jr2.set_dataset_norm(jr2.config().hook_points[1], 3.0);
  jr2.set_dataset_norm(jr2.config().hook_points[2], 2.0);
  CHECK_THROWS_AS(jr2.fold_activation_scale(), saes::UnsupportedError);

  auto cfg = cc_cfg(sd::ActFn::kJumpRelu);
  cfg.dtype = saes::DType::kFloat32;
  auto m = random_cc(cfg, 4);
  for (const auto& h : cfg.hook_points) m.set_dataset_norm(h, 1.5);
  saes::testing::TempDir dir;
  const auto path = dir.path() / "sae_weights.safetensors";
  m.save(path);
  const auto file = saes::io::SafetensorsFile::open(path);
  const std::map<std::string, std::vector<std::int64_t>> want_shapes = {
      {"W_E", {kH, kD, kS}},
      {"b_E", {kH, kS}},
      {"W_D", {kH, kS, kD}},
      {"b_D", {kH, kD}},
      {"activation_function.log_jumprelu_threshold", {kS}}};
  CHECK(file.names().size() == want_shapes.size() + kH);
  for (const auto& [name, shape] : want_shapes) {
    INFO(name);
    REQUIRE(file.contains(name));
    CHECK(file.tensor(name).sizes().vec() == shape);
  }
  for (const auto& h : cfg.hook_points)
    CHECK(file.contains("dataset_average_activation_norm." + h));
  auto back = sd::make_dictionary(cfg);
  back->load(path);
  auto pa = m.parameters();
  auto pb = back->parameters();
  for (std::size_t i = 0; i < pa.size(); ++i) CHECK(at::equal(pa[i].value, pb[i].value));
}

TEST_CASE("crosscoder refuses bad configs and Aux-K", "[dictionaries][crosscoder]") {
  auto cfg = cc_cfg(sd::ActFn::kTopK);
  cfg.sparsity_include_decoder_norm = false;
  CHECK_THROWS_WITH(sd::CrossCoder(cfg), Catch::Contains("sparsity_include_decoder_norm"));
  cfg = cc_cfg(sd::ActFn::kTopK);
  cfg.use_decoder_bias = false;
  CHECK_THROWS_WITH(sd::CrossCoder(cfg), Catch::Contains("use_decoder_bias"));
  cfg = cc_cfg(sd::ActFn::kTopK);
  cfg.hook_points.push_back(cfg.hook_points.front());
  CHECK_THROWS_WITH(sd::CrossCoder(cfg), Catch::Contains("twice"));
  cfg = cc_cfg(sd::ActFn::kLayerTopK);
  CHECK_THROWS_WITH(sd::CrossCoder(cfg), Catch::Contains("clt"));
  auto m = random_cc(cc_cfg(sd::ActFn::kTopK), 1);
  for (const auto& h : m.config().hook_points) m.set_dataset_norm(h, 1.0);
  sd::LossSettings ls;
  ls.auxk_coefficient = 0.1;
  CHECK_THROWS_WITH(
      m.forward_backward(batch_of(m.config(), at::randn({4, kH, kD}, at::kDouble)), ls),
      Catch::Contains("auxk_coefficient"));
  sd::TrainBatch missing = batch_of(m.config(), at::randn({4, kH, kD}, at::kDouble));
  missing.acts.erase(m.config().hook_points[1]);
  CHECK_THROWS_WITH(m.forward_backward(missing, {}), Catch::Contains("blocks.2.hook_resid_post"));
}
